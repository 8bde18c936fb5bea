package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if b, _ := os.ReadFile(p); string(b) != "one" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", b, fi.Mode())
	}
	// A failing writer leaves the old file and no temporary behind.
	boom := errors.New("boom")
	err := WriteAtomic(p, 0o600, func(w io.Writer) error { w.Write([]byte("partial")); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("WriteAtomic error = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("old content replaced by a failed write: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary file left: %v", ents)
	}
}

func TestMove(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(src, []byte("x"), 0o600)
	if err := Move(src, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatal("source still there")
	}
	if b, _ := os.ReadFile(dst); string(b) != "x" {
		t.Fatal("destination wrong")
	}
	// Across filesystems (/dev/shm is tmpfs) it copies.
	if _, err := os.Stat("/dev/shm"); err == nil {
		shm, err := os.MkdirTemp("/dev/shm", "fsutil")
		if err == nil {
			defer os.RemoveAll(shm)
			src2 := filepath.Join(shm, "c")
			os.WriteFile(src2, []byte("y"), 0o600)
			if err := Move(src2, dst); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(dst); string(b) != "y" {
				t.Fatal("cross-filesystem move wrong")
			}
		}
	}
}

func TestLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	if IsLocked(p) {
		t.Fatal("missing file reported locked")
	}
	l, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in
	// this process conflicts like another process would.
	if _, err := TryLock(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock = %v, want ErrLocked", err)
	}
	if !IsLocked(p) {
		t.Fatal("held lock not seen")
	}
	l.Unlock()
	if IsLocked(p) {
		t.Fatal("released lock still seen")
	}
}
