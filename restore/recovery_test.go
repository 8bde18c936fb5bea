package restore

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCommandLine: the restore_command survives /bin/sh word splitting
// exactly, whatever the paths and values hold.
func TestCommandLine(t *testing.T) {
	exe := "/opt/wal snap/it's/walsnap"
	flags := []string{"--repo=s3://bucket/a b", "--s3-endpoint=https://minio:9000", `--log-level=$(touch /tmp/x)`}
	line := CommandLine(exe, "/etc/walsnap/walsnap.yaml", flags)
	if !strings.HasSuffix(line, " wal-fetch %f %p") {
		t.Fatalf("line %q does not end with wal-fetch %%f %%p", line)
	}
	// Replace the command by printf to see the words the shell passes.
	out, err := exec.Command("/bin/sh", "-c", "set -- "+line+`; printf '%s\n' "$@"`).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{exe, "--config", "/etc/walsnap/walsnap.yaml"}, flags...)
	want = append(want, "wal-fetch", "%f", "%p")
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("the shell splits %q into %q, want %q", line, got, want)
	}
	if got := CommandLine("/usr/bin/walsnap", "", nil); got != "/usr/bin/walsnap wal-fetch %f %p" {
		t.Fatalf("plain line %q", got)
	}
}
