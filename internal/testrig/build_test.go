package testrig

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWalsnapBinOverride(t *testing.T) {
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	t.Setenv("WALSNAP_BIN", bin)
	got, err := buildWalsnap()
	if err != nil || got != bin {
		t.Errorf("buildWalsnap with WALSNAP_BIN=%s: %q, %v", bin, got, err)
	}
	t.Setenv("WALSNAP_BIN", filepath.Join(t.TempDir(), "missing"))
	if _, err := buildWalsnap(); err == nil {
		t.Error("buildWalsnap accepted a missing WALSNAP_BIN")
	}
}

func TestWalsnapBuild(t *testing.T) {
	if os.Getenv("WALSNAP_BIN") == "" {
		mains, _ := filepath.Glob("../../cmd/walsnap/*.go")
		if len(mains) == 0 {
			t.Skip("cmd/walsnap has no Go files yet")
		}
	}
	buildOnce.Do(func() { buildPath, buildErr = buildWalsnap() })
	if buildErr != nil {
		for _, incomplete := range []string{"no required module provides package", "no Go files", "is not in std"} {
			if strings.Contains(buildErr.Error(), incomplete) {
				t.Skipf("tree not complete yet: %v", buildErr)
			}
		}
	}
	bin := Walsnap(t)
	if !filepath.IsAbs(bin) {
		t.Errorf("Walsnap() = %s, not absolute", bin)
	}
	if again := Walsnap(t); again != bin {
		t.Errorf("second Walsnap() = %s, want %s (built once)", again, bin)
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.Mode().Perm()&0o005 != 0o005 {
		t.Fatalf("%s: mode %v, err %v: want readable and executable by others", bin, fi.Mode(), err)
	}
	// The postgres user (archive_command) can run it.
	if cred, _ := postgresCred(); cred != nil {
		p := &PG{SockDir: WorkDir(t)}
		out, _ := p.Command(t.Context(), bin, "--help").CombinedOutput()
		if strings.Contains(string(out), "permission denied") {
			t.Errorf("postgres cannot run %s: %s", bin, out)
		}
	}
}
