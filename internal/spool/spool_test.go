package spool

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// walkOwners reports every entry below root not owned by uid:gid.
func walkOwners(root string, uid, gid int) []string {
	var bad []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			bad = append(bad, p)
		}
		return nil
	})
	return bad
}

// TestOwnerNotRoot: as any other user, or when pg_wal is root's,
// nothing is chowned.
func TestOwnerNotRoot(t *testing.T) {
	dir := t.TempDir() // ours: root's when we are root
	for _, d := range []string{dir, filepath.Join(dir, "missing")} {
		if o := OwnerOf(d); o.set() {
			t.Errorf("OwnerOf(%s) = %+v, want none", d, o)
		}
	}
}

// TestMkdirConcurrent: concurrent creation of the same spool
// directories as root all succeed, and leave no temporary directories.
func TestMkdirConcurrent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	wal := t.TempDir()
	if err := os.Chown(wal, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	o := OwnerOf(wal)
	sdir := filepath.Join(wal, DirName)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		sub := []string{"prefetch", "pushed"}[i%2]
		wg.Go(func() { errs <- o.MkdirAll(sdir, filepath.Join(sdir, sub)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, d := range []string{wal, filepath.Join(wal, DirName)} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary directory left: %s", filepath.Join(d, e.Name()))
			}
		}
	}
	if bad := walkOwners(filepath.Join(wal, DirName), 4242, 4343); len(bad) > 0 {
		t.Errorf("not owned: %v", bad)
	}
}

// TestEnsureRunDir: the run directory is made in the cluster's spool,
// 0700, the owner of pg_wal's when made by root.
func TestEnsureRunDir(t *testing.T) {
	pgdata := t.TempDir()
	wal := filepath.Join(pgdata, "pg_wal")
	if err := os.Mkdir(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		os.Chown(wal, 4242, 4343)
	}
	run, o, err := EnsureRunDir("", pgdata)
	if err != nil {
		t.Fatal(err)
	}
	if run != filepath.Join(wal, DirName, "run") {
		t.Fatalf("run directory %s", run)
	}
	if err := o.EnsureFile(filepath.Join(run, "backup.lock")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(run)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("run directory: %v %v", fi.Mode(), err)
	}
	if root {
		if bad := walkOwners(filepath.Join(wal, DirName), 4242, 4343); len(bad) > 0 {
			t.Errorf("not the cluster owner's: %v", bad)
		}
	}
	configured := filepath.Join(t.TempDir(), "spool")
	if got, _, err := EnsureRunDir(configured, pgdata); err != nil || got != filepath.Join(configured, "run") {
		t.Errorf("run directory with spool_dir = %s, %v", got, err)
	}
}
