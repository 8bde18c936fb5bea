package testrig

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shared is a test server found or started once per test process and shared
// by all its tests.
type shared[E any] struct {
	once    sync.Once
	env     E
	unavail string // why there is no server, when err is nil
	err     error
}

// get returns the server that find returns on the first call. It fails t if
// find failed and calls Unavailable if find found none.
func (s *shared[E]) get(t testing.TB, what string, find func() (env E, unavailable string, err error)) E {
	t.Helper()
	s.once.Do(func() { s.env, s.unavail, s.err = find() })
	if s.err != nil {
		t.Fatalf("%s: %v", what, s.err)
	}
	if s.unavail != "" {
		Unavailable(t, "%s", s.unavail)
	}
	return s.env
}

// watchdogs holds the write ends of the watchdog pipes of the servers started
// by startServer, open until the test process exits.
var watchdogs struct {
	sync.Mutex
	w []*os.File
}

// watchdogScript runs "$@" in the background until its own stdin (a pipe
// from the test process) reaches EOF, then stops it and removes directory $1.
// This ties the server's lifetime to the test process without a TestMain,
// even when the test process is killed.
const watchdogScript = `
dir=$1
shift
"$@" </dev/null >"$dir/log" 2>&1 &
pid=$!
read -r _
kill "$pid"
wait "$pid"
rm -rf "$dir"
`

// startServer starts the command argv, with env added to its environment and
// a new temporary directory as its working directory, and waits up to timeout until GET url answers
// 200. The server is stopped and the directory removed when the test process
// exits, however it exits, or at once if the server does not come up.
func startServer(name, url string, timeout time.Duration, env []string, argv ...string) error {
	dir, err := os.MkdirTemp("", "walsnap-"+name+"-")
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("%s: %w", name, err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", watchdogScript, "sh", dir}, argv...)...)
	cmd.Dir = dir
	cmd.Stdin = r
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a terminal's ^C reaches the test process only,
	// whose exit then stops the server through the watchdog.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		os.RemoveAll(dir)
		return fmt.Errorf("start %s watchdog: %w", name, err)
	}
	go func() { _ = cmd.Wait() }() // reaps the watchdog; its status is of no use
	if err := waitOK(url, nil, timeout); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		w.Close() // stops the server and removes dir
		return fmt.Errorf("%s %s: %w; log:\n%s", name, argv[0], err, log)
	}
	watchdogs.Lock()
	watchdogs.w = append(watchdogs.w, w)
	watchdogs.Unlock()
	return nil
}

// waitOK polls url until it answers 200, the server exits (exited closed;
// nil: not watched) or timeout passes.
func waitOK(url string, exited <-chan struct{}, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: no 200 after %s: %w", url, timeout, err)
		}
		select {
		case <-exited: // nil: a server that is not watched
			return errors.New("the server exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
