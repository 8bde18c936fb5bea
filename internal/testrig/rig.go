// Package testrig starts and reaches the real parts that walsnap's
// integration tests run against: PostgreSQL servers (as an unprivileged
// user), a MinIO S3 server and the walsnap binary itself.
//
// Outside .ci/run an integration test skips with a message naming what is
// missing. Under .ci/run (WALSNAP_RIG=1) a missing part fails the test
// instead, so a silently skipped integration test cannot pass CI.
package testrig

import (
	"os"
	"testing"
)

// Required reports whether the rig must be complete (set by .ci/run).
func Required() bool { return os.Getenv("WALSNAP_RIG") == "1" }

// Unavailable skips the test, or fails it when the rig is required.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("test rig incomplete under WALSNAP_RIG=1: "+format, args...)
	}
	t.Skipf("skipping integration test (run via .ci/run for the full rig): "+format, args...)
}
