package testrig

import (
	"os"
	"testing"
)

// ConfigDir returns a fresh directory for walsnap config files that walsnap
// accepts whether it runs as root (the tests) or as the postgres user
// (archive_command, restore_command): owned by the user running the tests,
// mode 0755, under WorkDir's base, whose parents all belong to root. A
// config inside WorkDir itself would be refused when walsnap runs as root:
// that directory belongs to postgres, who could replace the file, and
// walsnap trusts a config only if root or the user running it alone can
// change it (internal/config). Removed at test cleanup.
func ConfigDir(t testing.TB) string {
	t.Helper()
	cred, err := postgresCred()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	if cred == nil {
		return t.TempDir()
	}
	base, err := workBase()
	if err != nil {
		t.Fatalf("testrig.ConfigDir: %v", err)
	}
	dir, err := os.MkdirTemp(base, "config-")
	if err != nil {
		t.Fatalf("testrig.ConfigDir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testrig.ConfigDir: %v", err)
	}
	return dir
}
