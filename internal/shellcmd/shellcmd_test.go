package shellcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Run(context.Background(), `echo "$X"; echo oops >&2`, []string{"X=hello"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello\n" || errb.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	if err := Run(context.Background(), "exit 3", nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("exit 3: %v", err)
	}
}

// TestRunStopsGroupWithTraps: on cancellation the script's TERM trap runs
// (where a snapshot script thaws its filesystem) and its children die too.
func TestRunStopsGroupWithTraps(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "trapped")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Run(ctx, `trap 'touch `+mark+`; exit 1' TERM; sleep 30 & wait`, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("Run = %v, want stopped", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v to stop", time.Since(start))
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatal("the TERM trap did not run")
	}
}
