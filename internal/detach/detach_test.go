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
// those the runtime started before and those it starts after, unless it
// was nicer already. It runs in child processes (Yield cannot be undone
// without privilege).
func TestYield(t *testing.T) {
	if want, err := strconv.Atoi(os.Getenv("DETACH_YIELD_WANT")); err == nil {
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
			if n := niceOf(t, task); n != want {
				t.Errorf("thread %s: nice %d, want %d", filepath.Base(task), n, want)
			}
		}
		close(release)
		return
	}
	// At nice 0 the process goes to 7; one an operator started at nice 15
	// stays there (Yield never raises a priority, root's neither).
	for _, tc := range []struct{ start, want int }{{0, 7}, {15, 15}} {
		cmd := exec.Command("nice", "-n", strconv.Itoa(tc.start), os.Args[0], "-test.run=^TestYield$", "-test.v")
		cmd.Env = append(os.Environ(), "DETACH_YIELD_WANT="+strconv.Itoa(tc.want))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestYield") {
			t.Fatalf("child started at nice %d: %v\n%s", tc.start, err, out)
		}
	}
	if n := niceOf(t, "/proc/thread-self"); n == 7 {
		t.Fatal("the test process itself was reniced")
	}
}
