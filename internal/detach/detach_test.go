package detach

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// niceOf reads a thread's nice value from /proc (field 19 of stat).
func niceOf(t *testing.T, task string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(task, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestYield: after Yield every thread of the process has the nice value,
// those the runtime started before and those it starts after. It runs in
// a child process (Yield cannot be undone without privilege).
func TestYield(t *testing.T) {
	if os.Getenv("DETACH_YIELD_CHILD") == "1" {
		if err := Yield(7); err != nil {
			t.Fatal(err)
		}
		// New threads: goroutines locked to their OS threads, blocked.
		var wg sync.WaitGroup
		release := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				runtime.LockOSThread()
				wg.Done()
				<-release
			}()
		}
		wg.Wait()
		tasks, err := filepath.Glob("/proc/self/task/*")
		if err != nil || len(tasks) < 5 {
			t.Fatalf("threads: %v %v", tasks, err)
		}
		for _, task := range tasks {
			if n := niceOf(t, task); n != 7 {
				t.Errorf("thread %s: nice %d, want 7", filepath.Base(task), n)
			}
		}
		close(release)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestYield$", "-test.v")
	cmd.Env = append(os.Environ(), "DETACH_YIELD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestYield") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if n := niceOf(t, "/proc/thread-self"); n == 7 {
		t.Fatal("the test process itself was reniced")
	}
}
