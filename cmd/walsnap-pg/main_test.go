package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/testrig"
)

// TestHandOver: every call walsnap-pg does not answer runs the walsnap
// beside it with the same arguments (here: a stand-in that prints them);
// without one, it fails with the exit status that makes PostgreSQL retry
// (wal-push, 1) or stop recovery (wal-fetch, 255: never 1, which would
// end recovery as if the archive had ended).
func TestHandOver(t *testing.T) {
	fe := testrig.WalsnapPG(t)
	dir := t.TempDir()
	lone := filepath.Join(dir, "walsnap-pg")
	data, err := os.ReadFile(fe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(lone, args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"wal-push", "pg_wal/000000010000000000000001"}, 1},
		{[]string{"--config", "/nonexistent.yaml", "wal-fetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"}, 255},
		{[]string{"wal-fetch", "00000002.history", "pg_wal/RECOVERYXLOG"}, 255},
		{[]string{"backup"}, 1},
	} {
		code, _, stderr := run(c.args...)
		if code != c.code || !strings.Contains(stderr, "walsnap must be installed beside walsnap-pg") {
			t.Errorf("%q without walsnap: exit %d (want %d), stderr %q", c.args, code, c.code, stderr)
		}
	}
	stand := "#!/bin/sh\necho \"$0|$*\"\nexit 7\n"
	if err := os.WriteFile(filepath.Join(dir, "walsnap"), []byte(stand), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", "/etc/x.yaml", "wal-fetch", "--fetch-prefetch", "4", "000000010000000000000001", "pg_wal/RECOVERYXLOG"}
	code, stdout, _ := run(args...)
	if want := filepath.Join(dir, "walsnap") + "|" + strings.Join(args, " ") + "\n"; code != 7 || stdout != want {
		t.Fatalf("hand-over ran %q with exit %d, want %q and walsnap's exit status 7", stdout, code, want)
	}
}
