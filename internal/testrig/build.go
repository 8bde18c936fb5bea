package testrig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Walsnap returns the absolute path of the walsnap binary under test, built
// from ./cmd/walsnap (static: CGO_ENABLED=0), with walsnap-pg beside it
// (see WalsnapPG), once per test process into a
// directory the postgres user can read and execute (so
// archive_command/restore_command can run it).
// $WALSNAP_BIN overrides: that binary is used as is. A failed build is fatal.
func Walsnap(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = buildWalsnap() })
	if buildErr != nil {
		t.Fatalf("testrig.Walsnap: %v", buildErr)
	}
	return buildPath
}

func buildWalsnap() (string, error) {
	if bin := os.Getenv("WALSNAP_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if fi, err := os.Stat(abs); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("WALSNAP_BIN=%s is not an executable file (%v)", bin, err)
		}
		return abs, nil
	}
	base, err := workBase()
	if err != nil {
		return "", err
	}
	removeStaleBuilds(base)
	// One directory per test process (go test runs packages in parallel);
	// removeStaleBuilds deletes it once this process is gone.
	dir := filepath.Join(base, "bin-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	out := filepath.Join(dir, "walsnap")
	// Static and without build paths, as the Makefile builds it (make
	// build also strips it and sets the version).
	// walsnap-pg goes beside walsnap, as make install puts it.
	for _, pkg := range []string{"walsnap", "walsnap-pg"} {
		bin := filepath.Join(dir, pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "github.com/walsnap/walsnap/cmd/"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", pkg, err, b)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			return "", err
		}
	}
	return out, nil
}

// WalsnapPG returns the path of walsnap-pg, the front end built beside
// the walsnap binary under test (with $WALSNAP_BIN, the walsnap-pg in
// that binary's directory).
func WalsnapPG(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(Walsnap(t)), "walsnap-pg")
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("testrig.WalsnapPG: no walsnap-pg beside the walsnap under test (%v)", err)
	}
	return bin
}

// removeStaleBuilds deletes bin-<pid> directories of test processes that have
// exited.
func removeStaleBuilds(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, "bin-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "bin-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}
