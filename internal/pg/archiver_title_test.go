package pg

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestIsArchiverTitle(t *testing.T) {
	for title, want := range map[string]bool{
		"postgres: archiver last was 000000010000000000000002":        true,
		"postgres: main: archiver archiving 000000010000000000000003": true,
		"postgres: archiver ":                                true,
		"postgres: checkpointer ":                            false,
		"postgres: walsnap: postgres postgres [local] idle":  false,
		"/usr/lib/postgresql/15/bin/postgres\x00-D\x00/data": false,
		"sh\x00-c\x00archiver":                               false,
	} {
		if got := isArchiverTitle(title); got != want {
			t.Errorf("isArchiverTitle(%q) = %v", title, got)
		}
	}
}

// TestCalledByArchiver: a process that PostgreSQL's archiver runs through
// /bin/sh is its call; the test process itself is none.
func TestCalledByArchiver(t *testing.T) {
	if os.Getenv("PGTEST_CALLED_BY_ARCHIVER") == "1" {
		fmt.Printf("called-by-archiver=%v\n", CalledByArchiver())
		return
	}
	if CalledByArchiver() {
		t.Fatal("the test process counts as an archiver's call")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for title, want := range map[string]string{
		"postgres: main: archiver last was 000000010000000000000002": "called-by-archiver=true",
		"postgres: checkpointer":                                     "called-by-archiver=false",
	} {
		// The titled process runs the command as PostgreSQL does, through
		// a shell (which stays: more follows the command).
		cmd := exec.Command("/bin/sh", "-c", "'"+exe+"' -test.run='^TestCalledByArchiver$' -test.v; exit $?")
		cmd.Args[0] = title
		cmd.Env = append(os.Environ(), "PGTEST_CALLED_BY_ARCHIVER=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("under %q: %v\n%s", title, err, out)
		}
	}
}
