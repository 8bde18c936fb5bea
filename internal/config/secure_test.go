package config

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// account is a local user for the ownership cases.
type account struct{ uid, gid int }

func lookupAccount(t *testing.T, name string) account {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no %s user: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{uid, gid}
}

// needRoot skips a case that chowns files: only root can.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chown needs root (CI runs the tests as root)")
	}
}

// runAs makes the config checks see uid as the user running walsnap.
func runAs(t *testing.T, uid int) {
	t.Helper()
	old := geteuid
	geteuid = func() int { return uid }
	t.Cleanup(func() { geteuid = old })
}

func mkdir(t *testing.T, path string, mode os.FileMode, owner *account) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask, with sticky
		t.Fatal(err)
	}
	if owner != nil {
		if err := os.Chown(path, owner.uid, owner.gid); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func writeOwned(t *testing.T, path, body string, mode os.FileMode, uid, gid int) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	return path
}

const okBody = "repo: file:///var/lib/walsnap\n"

// TestLoadFileOwner: the file must belong to root or to the user running
// walsnap. /etc/walsnap/walsnap.yaml as root:postgres 0640 serves postgres.
func TestLoadFileOwner(t *testing.T) {
	needRoot(t)
	pg, nobody := lookupAccount(t, "postgres"), lookupAccount(t, "nobody")
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		runAs    int
		uid, gid int
		mode     os.FileMode
		refused  string // "" when accepted; else the owner the message names
	}{
		{"root:postgres 0640 for postgres", pg.uid, 0, pg.gid, 0o640, ""},
		{"root:postgres 0640 for root", 0, 0, pg.gid, 0o640, ""},
		{"postgres 0600 for postgres", pg.uid, pg.uid, pg.gid, 0o600, ""},
		{"nobody 0644 for postgres", pg.uid, nobody.uid, nobody.gid, 0o644, "nobody (uid 65534)"},
		{"nobody 0600 for root", 0, nobody.uid, nobody.gid, 0o600, "nobody (uid 65534)"},
		{"postgres 0600 for root", 0, pg.uid, pg.gid, 0o600, "postgres (uid " + strconv.Itoa(pg.uid) + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runAs(t, tc.runAs)
			p := writeOwned(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")), okBody, tc.mode, tc.uid, tc.gid)
			c := Default()
			err := c.LoadFile(p)
			if tc.refused == "" {
				if err != nil || c.Repo.String() != "file:///var/lib/walsnap" {
					t.Fatalf("LoadFile = %v, repo %q; want accepted", err, c.Repo)
				}
				return
			}
			if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), "owned by "+tc.refused) {
				t.Fatalf("LoadFile = %v; want ErrInsecureFile naming owner %s", err, tc.refused)
			}
			if !c.Repo.IsZero() {
				t.Fatalf("a refused file set repo %q", c.Repo)
			}
		})
	}
	// The whole message, as an operator sees it.
	runAs(t, 0)
	p := writeOwned(t, filepath.Join(dir, "pg.yaml"), okBody, 0o600, pg.uid, pg.gid)
	c := Default()
	want := "config " + p + ": insecure config file: it is owned by postgres (uid " + strconv.Itoa(pg.uid) + "), " +
		"but walsnap running as root trusts only root; make root its owner (mode 0640 with group postgres serves the postgres user too)"
	if err := c.LoadFile(p); err == nil || err.Error() != want {
		t.Fatalf("LoadFile = %v\nwant        %s", err, want)
	}
}

// TestLoadFileDirectories: every directory on the path must be owned by
// root or the user running walsnap and not writable by group or others,
// unless sticky (like /tmp).
func TestLoadFileDirectories(t *testing.T) {
	needRoot(t)
	pg, nobody := lookupAccount(t, "postgres"), lookupAccount(t, "nobody")
	base := t.TempDir()

	accept := func(t *testing.T, p string) {
		t.Helper()
		c := Default()
		if err := c.LoadFile(p); err != nil || c.Repo.IsZero() {
			t.Fatalf("LoadFile(%s) = %v; want accepted", p, err)
		}
	}
	refuse := func(t *testing.T, p, want string) {
		t.Helper()
		c := Default()
		err := c.LoadFile(p)
		if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), want) {
			t.Fatalf("LoadFile(%s) = %v; want ErrInsecureFile mentioning %q", p, err, want)
		}
	}

	t.Run("world-writable directory", func(t *testing.T) {
		d := mkdir(t, filepath.Join(base, "open"), 0o777, nil)
		p := writeOwned(t, filepath.Join(d, "w.yaml"), okBody, 0o600, 0, 0)
		refuse(t, p, "directory "+d+" on its path (mode -rwxrwxrwx) is writable by group or others")
		sub := mkdir(t, filepath.Join(d, "sub"), 0o755, nil) // below it, too
		refuse(t, writeOwned(t, filepath.Join(sub, "w.yaml"), okBody, 0o600, 0, 0), "directory "+d+" ")
	})
	t.Run("group-writable directory", func(t *testing.T) {
		d := mkdir(t, filepath.Join(base, "group"), 0o775, &account{0, pg.gid})
		refuse(t, writeOwned(t, filepath.Join(d, "w.yaml"), okBody, 0o640, 0, pg.gid), "is writable by group or others")
	})
	t.Run("sticky world-writable directory", func(t *testing.T) {
		d := mkdir(t, filepath.Join(base, "sticky"), 0o777|os.ModeSticky, nil)
		accept(t, writeOwned(t, filepath.Join(d, "w.yaml"), okBody, 0o600, 0, 0))
		// ... but only for a file owned properly,
		refuse(t, writeOwned(t, filepath.Join(d, "n.yaml"), okBody, 0o600, nobody.uid, nobody.gid), "owned by nobody")
		// through a directory owned properly,
		nd := mkdir(t, filepath.Join(d, "nobodys"), 0o755, &nobody)
		refuse(t, writeOwned(t, filepath.Join(nd, "w.yaml"), okBody, 0o600, 0, 0), "directory "+nd+" on its path is owned by nobody")
		// and not through someone else's symlink to a root-owned file.
		link := filepath.Join(d, "link.yaml")
		if err := os.Symlink(filepath.Join(d, "w.yaml"), link); err != nil {
			t.Fatal(err)
		}
		accept(t, link) // root's own symlink
		if err := os.Lchown(link, nobody.uid, nobody.gid); err != nil {
			t.Fatal(err)
		}
		refuse(t, link, "symlink "+link+" on its path is owned by nobody")
	})
	t.Run("directory of another user", func(t *testing.T) {
		d := mkdir(t, filepath.Join(base, "pgdir"), 0o755, &pg)
		p := writeOwned(t, filepath.Join(d, "w.yaml"), okBody, 0o644, 0, 0)
		refuse(t, p, "directory "+d+" on its path is owned by postgres") // root trusts only root
		runAs(t, pg.uid)
		accept(t, p) // postgres trusts its own directory
		nd := mkdir(t, filepath.Join(base, "nobodydir"), 0o755, &nobody)
		refuse(t, writeOwned(t, filepath.Join(nd, "w.yaml"), okBody, 0o644, 0, 0), "owned by nobody")
	})
	t.Run("symlinked directories are checked where they lead", func(t *testing.T) {
		runAs(t, 0)
		open := mkdir(t, filepath.Join(base, "open2"), 0o777, nil)
		writeOwned(t, filepath.Join(open, "w.yaml"), okBody, 0o600, 0, 0)
		safe := mkdir(t, filepath.Join(base, "safe"), 0o755, nil)
		if err := os.Symlink("../open2", filepath.Join(safe, "etc")); err != nil {
			t.Fatal(err)
		}
		refuse(t, filepath.Join(safe, "etc", "w.yaml"), "directory "+open+" on its path")
		good := mkdir(t, filepath.Join(base, "good"), 0o755, nil)
		writeOwned(t, filepath.Join(good, "w.yaml"), okBody, 0o600, 0, 0)
		if err := os.Symlink(good, filepath.Join(safe, "good")); err != nil {
			t.Fatal(err)
		}
		accept(t, filepath.Join(safe, "good", "w.yaml"))
		// ".." after a symlink goes up from where it leads, as in the kernel.
		other := mkdir(t, filepath.Join(good, "sub"), 0o755, nil)
		if err := os.Symlink(other, filepath.Join(safe, "sub")); err != nil {
			t.Fatal(err)
		}
		accept(t, safe+"/sub/../w.yaml") // good/w.yaml; there is no safe/w.yaml
		// A relative path is taken from the working directory.
		t.Chdir(safe)
		accept(t, "good/w.yaml")
		accept(t, "sub/../w.yaml")
	})
	t.Run("whole message", func(t *testing.T) {
		runAs(t, 0)
		d := mkdir(t, filepath.Join(base, "msg"), 0o757, nil)
		p := writeOwned(t, filepath.Join(d, "w.yaml"), okBody, 0o600, 0, 0)
		want := "config " + p + ": insecure config file: directory " + d + " on its path (mode -rwxr-xrwx) is writable by group or others, " +
			"who could replace the file; run chmod go-w on it"
		c := Default()
		if err := c.LoadFile(p); err == nil || err.Error() != want {
			t.Fatalf("LoadFile = %v\nwant        %s", err, want)
		}
	})
}

func TestLoadFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	c := Default()
	if err := c.LoadFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadFile(directory) = %v", err)
	}
	if err := c.LoadFile("/dev/null"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadFile(/dev/null) = %v", err)
	}
	if err := c.LoadFile(filepath.Join(dir, "missing", "walsnap.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadFile(missing dir) = %v", err)
	}
}
