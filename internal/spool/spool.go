// Package spool says where walsnap keeps a cluster's local state: the
// push-ahead records and prefetched WAL of the archive commands, and the
// locks and sockets of backups. By default it is pg_wal/.walsnap, which
// only the cluster's owner (and root) can create anything in (DESIGN.md
// rule 11); spool_dir overrides it. Whatever root creates there is given
// to the owner of the directory it lives in, so that the server's own
// user can always use it afterwards.
package spool

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// DirName is the spool directory created inside pg_wal by default.
const DirName = ".walsnap"

// Dir returns the configured spool directory, or the default one in the
// WAL directory walDir.
func Dir(configured, walDir string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(walDir, DirName)
}

// Owner is the owner given to what walsnap creates in a spool: when
// walsnap runs as root, the owner of the pg_wal directory, so that a call
// made as root (an operator's wal-fetch, a restore) never leaves a file or
// directory that the postgres user's next call cannot use. The zero Owner
// (not root, or pg_wal is root's) changes nothing: files are whoever
// creates them.
//
// Files and directories get their owner before they get their name
// (created under a temporary name, chowned, then linked or renamed into
// place), so a concurrent call never sees one that is root's.
type Owner struct {
	uid, gid int
	valid    bool
}

var notOwned = Owner{}

// OwnerOf returns the Owner for the pg_wal directory walDir.
func OwnerOf(walDir string) Owner {
	if os.Geteuid() != 0 {
		return notOwned
	}
	fi, err := os.Stat(walDir) // pg_wal may be a symlink to another volume
	if err != nil {
		return notOwned
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return notOwned
	}
	return Owner{int(st.Uid), int(st.Gid), true}
}

func (o Owner) set() bool { return o.valid }

// MkdirAll makes dir, a directory in spool (or spool itself), and its
// missing parents (mode 0700). As root, each directory it creates is the
// owner's from the moment it has its name, and spool and dir, if they exist
// but are root's (left by an earlier version), are given to the owner.
func (o Owner) MkdirAll(spool, dir string) error {
	if !o.set() {
		return os.MkdirAll(dir, 0o700)
	}
	if err := o.mkdir(spool, true); err != nil || dir == spool {
		return err
	}
	return o.mkdir(dir, true)
}

func (o Owner) mkdir(dir string, adopt bool) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); adopt && ok && st.Uid == 0 {
			return os.Lchown(dir, o.uid, o.gid)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := o.mkdir(parent, false); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	if err := os.Lchown(tmp, o.uid, o.gid); err != nil {
		os.Remove(tmp)
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = os.Rename(tmp, dir) // no RENAME_NOREPLACE here: an empty twin is replaced
	}
	if err != nil {
		os.Remove(tmp)
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return nil // made meanwhile by a concurrent call
		}
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return nil
}

// CreateExcl creates path exclusively for writing (mode 0600), like
// O_CREATE|O_EXCL; an existing path fails with an error matching
// os.ErrExist. As root the file is created under a temporary name, given
// to the owner and then linked to path. The returned file's Name is not
// path then.
func (o Owner) CreateExcl(path string) (*os.File, error) {
	if !o.set() {
		return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	f, err := o.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	err = os.Link(f.Name(), path)
	os.Remove(f.Name())
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CreateTemp is os.CreateTemp, the file given to the owner at once (its
// random name is not used by anyone else meanwhile).
func (o Owner) CreateTemp(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil || !o.set() {
		return f, err
	}
	if err := f.Chown(o.uid, o.gid); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// EnsureFile creates path (empty) if it does not exist, e.g. a lock file
// that is then opened by name.
func (o Owner) EnsureFile(path string) error {
	if _, err := os.Lstat(path); err == nil || !o.set() {
		return nil
	}
	f, err := o.CreateExcl(path)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Chown gives path to the owner (for a file moved out of the spool into
// place, e.g. when the move had to copy).
func (o Owner) Chown(path string) {
	if o.set() {
		os.Lchown(path, o.uid, o.gid)
	}
}

// WriteRecord writes a small file atomically (temporary name, rename)
// without fsync: the records it is used for are caches whose loss only
// costs work.
func (o Owner) WriteRecord(path string, data []byte) error {
	f, err := o.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// EnsureRunDir makes the run directory of the cluster whose data
// directory is pgdata, where its local locks and sockets live (<spool>/run),
// and returns it with the owner that whatever is created there must get.
func EnsureRunDir(configured, pgdata string) (string, Owner, error) {
	walDir := filepath.Join(pgdata, "pg_wal")
	root := Dir(configured, walDir)
	run := filepath.Join(root, "run")
	o := OwnerOf(walDir)
	return run, o, o.MkdirAll(root, run)
}
