// Package archive implements wal-push (PostgreSQL's archive_command) and
// wal-fetch (restore_command) on a walsnap repository, with push-ahead of
// the archiver's backlog and prefetch during recovery.
//
// Bookkeeping lives in a walsnap-owned spool directory (default
// pg_wal/.walsnap) and is bounded: push-ahead records are removed when used
// or when their segment is gone, prefetched files when recovery has passed
// them or they grow old, and the whole prefetch directory once recovery has
// ended. PostgreSQL's archive_status is never touched.
//
// Run as root, walsnap gives everything it creates in the spool to the
// owner of pg_wal (see spoolOwner), so that the postgres user's next call
// can use it.
package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SpoolDirName is the spool directory created inside pg_wal by default.
const SpoolDirName = ".walsnap"

// spoolDir returns the configured spool directory or the default one next
// to the WAL file being handled.
func spoolDir(configured, walDir string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(walDir, SpoolDirName)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sweep removes files in dir for which drop returns true. Errors are
// ignored: sweeping is housekeeping and never fails a command.
func sweep(dir string, drop func(name string, fi os.FileInfo) bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.IsDir() {
			continue
		}
		if drop(e.Name(), fi) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func olderThan(fi os.FileInfo, d time.Duration) bool { return time.Since(fi.ModTime()) > d }

// errorsIsNotExist is errors.Is(err, os.ErrNotExist), named for brevity.
func errorsIsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// fileError prefixes an error with the WAL file name, once.
func fileError(name string, err error) error {
	if strings.HasPrefix(err.Error(), name+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// --- ownership ---

// spoolOwner is the owner given to what walsnap creates in a spool: when
// walsnap runs as root, the owner of the pg_wal directory, so that a call
// made as root (an operator's wal-fetch, a restore) never leaves a file or
// directory that the postgres user's next call cannot use. uid < 0 means
// "whoever we are" (not root, or pg_wal is root's).
//
// Files and directories get their owner before they get their name
// (created under a temporary name, chowned, then linked or renamed into
// place), so a concurrent call never sees one that is root's.
type spoolOwner struct{ uid, gid int }

var notOwned = spoolOwner{-1, -1}

// ownerOf returns the spoolOwner for the pg_wal directory walDir.
func ownerOf(walDir string) spoolOwner {
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
	return spoolOwner{int(st.Uid), int(st.Gid)}
}

func (o spoolOwner) set() bool { return o.uid >= 0 }

// mkdirAll makes dir, a directory in spool (or spool itself), and its
// missing parents (mode 0700). As root, each directory it creates is the
// owner's from the moment it has its name, and spool and dir, if they exist
// but are root's (left by an earlier version), are given to the owner.
func (o spoolOwner) mkdirAll(spool, dir string) error {
	if !o.set() {
		return os.MkdirAll(dir, 0o700)
	}
	if err := o.mkdir(spool, true); err != nil || dir == spool {
		return err
	}
	return o.mkdir(dir, true)
}

func (o spoolOwner) mkdir(dir string, adopt bool) error {
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

// createExcl creates path exclusively for writing (mode 0600), like
// O_CREATE|O_EXCL; an existing path fails with an error matching
// os.ErrExist. As root the file is created under a temporary name, given
// to the owner and then linked to path. The returned file's Name is not
// path then.
func (o spoolOwner) createExcl(path string) (*os.File, error) {
	if !o.set() {
		return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	f, err := o.createTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
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

// createTemp is os.CreateTemp, the file given to the owner at once (its
// random name is not used by anyone else meanwhile).
func (o spoolOwner) createTemp(dir, pattern string) (*os.File, error) {
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

// ensureFile creates path (empty) if it does not exist, e.g. a lock file
// that is then opened by name.
func (o spoolOwner) ensureFile(path string) error {
	if _, err := os.Lstat(path); err == nil || !o.set() {
		return nil
	}
	f, err := o.createExcl(path)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// chown gives path to the owner (for a file moved out of the spool into
// place, e.g. when the move had to copy).
func (o spoolOwner) chown(path string) {
	if o.set() {
		os.Lchown(path, o.uid, o.gid)
	}
}

// writeRecord writes a small file atomically (temporary name, rename)
// without fsync: the records it is used for are caches whose loss only
// costs work.
func (o spoolOwner) writeRecord(path string, data []byte) error {
	f, err := o.createTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
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

// --- the end of recovery ---

// dataDirOf returns the data directory whose pg_wal is walDir, or "" when
// it cannot be told. PostgreSQL runs archive_command and restore_command
// in the data directory with %p relative to it ("pg_wal/..."), and the
// prefetcher gets that path made absolute, so the directory holding walDir
// is the first candidate; the working directory and $PGDATA follow (walDir
// may have been given through a pg_wal symlink's target). A candidate
// counts only if it holds PG_VERSION and its pg_wal is walDir.
func dataDirOf(walDir string) string {
	wfi, err := os.Stat(walDir)
	if err != nil || !wfi.IsDir() {
		return ""
	}
	cands := []string{filepath.Dir(walDir), "."}
	if pgdata := os.Getenv("PGDATA"); pgdata != "" {
		cands = append(cands, pgdata)
	}
	for _, d := range cands {
		if fi, err := os.Lstat(filepath.Join(d, "PG_VERSION")); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d, "pg_wal")); err == nil && os.SameFile(fi, wfi) {
			return d
		}
	}
	return ""
}

// recoverySignals are the files whose presence in the data directory means
// the cluster is (or will start) in recovery: PostgreSQL removes
// recovery.signal and standby.signal when recovery ends (recovery.conf is
// renamed before version 12).
var recoverySignals = []string{"recovery.signal", "standby.signal", "recovery.conf"}

// recoveryEnded reports whether the cluster with data directory dataDir is
// provably not in recovery: dataDir is known and has no recovery signal
// file. Anything uncertain counts as recovery going on.
func recoveryEnded(dataDir string) bool {
	if dataDir == "" {
		return false
	}
	for _, s := range recoverySignals {
		if _, err := os.Lstat(filepath.Join(dataDir, s)); !errors.Is(err, os.ErrNotExist) {
			return false
		}
	}
	return true
}

// prefetchGone prefixes the name a prefetch directory is renamed to before
// it is removed.
const prefetchGone = "prefetch.removing-"

// removePrefetchSpool removes the prefetch directory of spool with all it
// holds (files, records, partial downloads, the lock), and what an
// interrupted earlier removal left. The directory is first renamed away,
// so no call ever works in a half-removed one: a prefetcher still running
// fails its next write there, and a wal-fetch starts a fresh directory.
func removePrefetchSpool(spool string) {
	ents, err := os.ReadDir(spool)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(spool, e.Name())
		switch {
		case e.Name() == "prefetch":
			gone := filepath.Join(spool, prefetchGone+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
			if os.Rename(p, gone) != nil {
				continue
			}
			p = gone
		case strings.HasPrefix(e.Name(), prefetchGone):
		default:
			continue
		}
		os.RemoveAll(p)
	}
}

// tidySpool keeps the top level of the spool clean (see sweepSpoolTop)
// and removes the prefetch directory if recovery of the cluster whose
// pg_wal is walDir has ended. It reports whether no prefetch directory is
// left. The common case costs one read of the small spool directory.
func tidySpool(walDir, spool string) bool {
	if !sweepSpoolTop(spool) {
		return true
	}
	if !recoveryEnded(dataDirOf(walDir)) {
		return false
	}
	removePrefetchSpool(spool)
	return true
}

// sweepSpoolTop removes from the top of the spool the downloads of
// wal-fetch calls that died (unlocked, see orphaned) and the directories
// that a call killed while creating one left under their temporary name.
// It reports whether a prefetch directory (or a half-removed one) is there.
func sweepSpoolTop(spool string) (havePrefetch bool) {
	ents, err := os.ReadDir(spool)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "prefetch") {
			havePrefetch = true
		}
		if !inProgress(n) {
			continue
		}
		fi, err := e.Info()
		switch {
		case err != nil:
		case fi.IsDir() && strings.HasPrefix(n, ".") && olderThan(fi, orphanAge):
			os.Remove(filepath.Join(spool, n)) // never published, so empty
		case fi.Mode().IsRegular() && orphaned(spool, n, fi):
			os.Remove(filepath.Join(spool, n))
		}
	}
	return havePrefetch
}
