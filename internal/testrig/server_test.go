package testrig

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSharedGetFindsOnce(t *testing.T) {
	var s shared[int]
	calls := 0
	find := func() (int, string, error) { calls++; return 42, "", nil }
	for range 3 {
		if got := s.get(t, "test", find); got != 42 {
			t.Errorf("get = %d, want 42", got)
		}
	}
	if calls != 1 {
		t.Errorf("find called %d times, want 1", calls)
	}
}

// envHelperAddr makes TestServerHelper serve HTTP on its value.
const envHelperAddr = "WALSNAP_TESTRIG_HELPER_ADDR"

// TestServerHelper is the server that TestStartServer starts: it answers
// every request with its working directory.
func TestServerHelper(t *testing.T) {
	addr := os.Getenv(envHelperAddr)
	if addr == "" {
		t.Skip("helper process for TestStartServer")
	}
	wd, _ := os.Getwd()
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, wd)
	}))
	t.Fatal(err)
}

func TestStartServer(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr + "/"
	err = startServer("selftest", url, 30*time.Second, []string{envHelperAddr + "=" + addr},
		os.Args[0], "-test.run=^TestServerHelper$")
	if err != nil {
		t.Fatal(err)
	}
	watchdogs.Lock()
	w := watchdogs.w[len(watchdogs.w)-1]
	watchdogs.w = watchdogs.w[:len(watchdogs.w)-1]
	watchdogs.Unlock()

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dir := string(wd)
	if !strings.Contains(dir, "walsnap-selftest-") {
		t.Fatalf("server runs in %q, want a walsnap-selftest- temporary directory", dir)
	}

	w.Close() // as when the test process exits
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, statErr := os.Stat(dir)
		resp, getErr := http.Get(url)
		if getErr == nil {
			resp.Body.Close()
		}
		if os.IsNotExist(statErr) && getErr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after closing the watchdog: stat %s: %v; GET %s: %v", dir, statErr, url, getErr)
		}
	}
}

func TestStartServerFails(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	err = startServer("selftest", "http://"+addr+"/", time.Second, nil, "/bin/sh", "-c", "echo boom; exit 1")
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("startServer of a failing command: error %v, want one with its log", err)
	}
}
