package testrig

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MotoEnv locates the test EC2/EBS API (moto_server).
//
// The server is shared by every test of the process (and, through
// WALSNAP_TEST_MOTO_ENDPOINT, by every test process), so a test must
// create its own instances, volumes and snapshots and address only those,
// by id or by a tag unique to it. Tests must not reset the server
// (POST /moto-api/reset): that would wipe the resources of tests running
// in parallel.
type MotoEnv struct {
	Endpoint string // e.g. "http://127.0.0.1:5000"
	Region   string
}

// Environ returns the AWS_* variables that give the SDK's default
// credential chain dummy credentials (moto accepts any) and the region,
// for child processes.
func (e MotoEnv) Environ() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_SESSION_TOKEN=testing",
		"AWS_REGION=" + e.Region,
	}
}

// Setenv sets the variables of Environ in the test process for the
// duration of t (see testing.T.Setenv).
func (e MotoEnv) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// envMotoEndpoint names an already running moto server (e.g. set by .ci/run).
const envMotoEndpoint = "WALSNAP_TEST_MOTO_ENDPOINT"

// motoRegion is the region tests use; moto keeps one backend per region.
const motoRegion = "us-east-1"

var (
	motoOnce    sync.Once
	motoServer  MotoEnv
	motoErr     error
	motoUnavail string
	// motoWatchdogW is the write end of the pipe whose closing (when the
	// test process exits) stops the moto_server started here.
	motoWatchdogW *os.File
)

// Moto returns the test EC2/EBS API. It uses the server named by
// WALSNAP_TEST_MOTO_ENDPOINT when set; otherwise it starts moto_server
// from PATH, once per test process, on a free 127.0.0.1 port, stopped when
// the test process exits. Without either it calls Unavailable. See
// MotoEnv for how tests share the server.
func Moto(t testing.TB) MotoEnv {
	t.Helper()
	motoOnce.Do(func() { motoServer, motoUnavail, motoErr = findMoto() })
	if motoErr != nil {
		t.Fatalf("test moto server: %v", motoErr)
	}
	if motoUnavail != "" {
		Unavailable(t, "%s", motoUnavail)
	}
	return motoServer
}

// findMoto returns the server to use, or why there is none.
func findMoto() (env MotoEnv, unavailable string, err error) {
	if ep := os.Getenv(envMotoEndpoint); ep != "" {
		return MotoEnv{Endpoint: strings.TrimSuffix(ep, "/"), Region: motoRegion}, "", nil
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return env, fmt.Sprintf("no EC2 API: set %s or put moto_server (pip install 'moto[server]') on PATH", envMotoEndpoint), nil
	}
	env, err = startMoto(bin)
	return env, "", err
}

// motoWatchdogScript runs moto_server in the background until its own
// stdin (a pipe from the test process) reaches EOF, then stops it and
// removes its directory (see watchdogScript).
const motoWatchdogScript = `
"$1" -H 127.0.0.1 -p "$2" </dev/null >"$3/moto.log" 2>&1 &
pid=$!
read -r _
kill "$pid"
wait "$pid"
rm -rf "$3"
`

// startMoto starts bin on a free loopback port and waits until it answers.
func startMoto(bin string) (MotoEnv, error) {
	dir, err := os.MkdirTemp("", "walsnap-moto-")
	if err != nil {
		return MotoEnv{}, fmt.Errorf("moto: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return MotoEnv{}, fmt.Errorf("moto: %w", err)
	}
	_, port, _ := strings.Cut(addr, ":")
	r, w, err := os.Pipe()
	if err != nil {
		return MotoEnv{}, fmt.Errorf("moto: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", motoWatchdogScript, "sh", bin, port, dir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return MotoEnv{}, fmt.Errorf("start moto watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	env := MotoEnv{Endpoint: "http://" + addr, Region: motoRegion}
	if err := waitMoto(env.Endpoint, 60*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "moto.log"))
		w.Close()
		return MotoEnv{}, fmt.Errorf("moto_server %s on %s: %w; log:\n%s", bin, addr, err, log)
	}
	motoWatchdogW = w
	return env, nil
}

// waitMoto polls moto's dashboard until it answers 200.
func waitMoto(endpoint string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
