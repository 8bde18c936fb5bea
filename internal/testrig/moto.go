package testrig

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
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

var moto shared[MotoEnv]

// Moto returns the test EC2/EBS API. It uses the server named by
// WALSNAP_TEST_MOTO_ENDPOINT when set; otherwise it starts moto_server
// from PATH, once per test process, on a free 127.0.0.1 port, stopped when
// the test process exits. Without either it calls Unavailable. See
// MotoEnv for how tests share the server.
func Moto(t testing.TB) MotoEnv {
	t.Helper()
	return moto.get(t, "test moto server", findMoto)
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

// startMoto starts bin on a free loopback port and waits until it answers.
func startMoto(bin string) (MotoEnv, error) {
	addr, err := freeAddr()
	if err != nil {
		return MotoEnv{}, fmt.Errorf("moto: %w", err)
	}
	host, port, _ := strings.Cut(addr, ":")
	env := MotoEnv{Endpoint: "http://" + addr, Region: motoRegion}
	err = startServer("moto", env.Endpoint+"/moto-api/", 60*time.Second, nil, bin, "-H", host, "-p", port)
	if err != nil {
		return MotoEnv{}, err
	}
	return env, nil
}
