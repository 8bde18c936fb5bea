// Package fsutil holds the small filesystem primitives walsnap relies on to
// never hand out a partial file: fsync of directories, atomic writes and
// renames, and advisory locks.
package fsutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory so that renames and unlinks in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory: write, fsync, rename, fsync the directory. Readers see either
// the old file or the complete new one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic is WriteFileAtomic with the content produced by fill.
func WriteAtomic(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// Move renames src, a file whose bytes are already fsynced, to dst. When
// the two are on different filesystems it copies to a temporary file next
// to dst, fsyncs and renames it, then removes src. The new name itself is
// not fsynced: Move hands files to PostgreSQL's restore_command, and
// PostgreSQL makes durable what it keeps of a restored file (it fsyncs the
// file and pg_wal as it renames it to its segment name) and fetches
// anything else again after a crash (RECOVERYXLOG is removed before every
// call). A directory fsync per call cost up to 18 ms while the prefetcher
// fsyncs its downloads.
func Move(src, dst string) error {
	err := os.Rename(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		in, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("move %s: %w", src, err)
		}
		defer in.Close()
		if err := WriteAtomic(dst, 0o600, func(w io.Writer) error {
			_, err := io.Copy(w, in)
			return err
		}); err != nil {
			return err
		}
		return os.Remove(src)
	}
	if err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	return nil
}

// Lock is an advisory flock(2) lock on an open file.
type Lock struct{ f *os.File }

// ErrLocked is returned by TryLock when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// TryLock takes an exclusive lock on path (creating it) without waiting.
// The file is opened read-only (flock needs no write access), so a lock
// file created by one user can be used by another.
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// LockFileWait takes an exclusive lock on an open file, waiting while
// others hold it. Use it on a file this process just created exclusively:
// only momentary holders (IsLocked probes) can be in the way.
func LockFileWait(f *os.File) (*Lock, error) {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &Lock{f: f}, nil
}

// IsLocked reports whether another process holds a lock on path. A missing
// file is not locked.
func IsLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// WaitUnlocked waits until no process holds an exclusive lock on path (a
// writer finishing the file), or ctx ends. A missing file is not locked.
func WaitUnlocked(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		defer f.Close()
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if err == nil {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock releases the lock and closes the file.
func (l *Lock) Unlock() error {
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	return l.f.Close()
}
