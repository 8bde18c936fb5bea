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
// owner of pg_wal (see spool.Owner), so that the postgres user's next call
// can use it.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/spool"
)

// SpoolDirName is the spool directory created inside pg_wal by default.
const SpoolDirName = spool.DirName

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

// watchServer cancels ctx when the PostgreSQL server that runs on dataDir
// as the helper starts has stopped (or was replaced by another postmaster),
// checking every serverPoll, until ctx ends. The background helpers leave
// with their server, uploads and downloads in flight included, so that a
// stopped server's volumes can be unmounted at once. A helper started
// where no server runs (dataDir unknown, a wal-fetch run by hand) has no
// server to leave with and keeps to its own end conditions.
func watchServer(ctx context.Context, cancel context.CancelFunc, dataDir string) (serverRuns bool) {
	if dataDir == "" {
		return false
	}
	server, running := pg.RunningPostmaster(dataDir)
	if !running {
		return false
	}
	watch(ctx, serverPoll, func() bool {
		pid, running := pg.RunningPostmaster(dataDir)
		return !running || pid != server
	}, cancel)
	return true
}

// wakeOn returns a channel that receives (without blocking the sender,
// coalesced) whenever a file is created in or moved into one of dirs,
// until ctx ends: the archiver takes a called or new .ready file at once
// instead of at its next poll. Nil (a channel that never receives: polling only) when the
// kernel's inotify cannot be had.
func wakeOn(ctx context.Context, dirs ...string) <-chan struct{} {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	for _, dir := range dirs {
		if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
			unix.Close(fd)
			return nil
		}
	}
	// Non-blocking, so the runtime's poller waits on it and Close ends a
	// pending Read.
	f := os.NewFile(uintptr(fd), "inotify")
	wake := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	return wake
}

// watch checks cond every interval until ctx ends, and calls then (once)
// when it holds.
func watch(ctx context.Context, every time.Duration, cond func() bool, then func()) {
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if cond() {
				then()
				return
			}
		}
	}()
}

// helperLock takes the lock file path of a background helper, created
// for the spool's owner. It returns nil (and no error) when another
// helper holds it.
func helperLock(own spool.Owner, path string) (*fsutil.Lock, error) {
	if err := own.EnsureFile(path); err != nil {
		return nil, err
	}
	lock, err := fsutil.TryLock(path)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, nil
	}
	return lock, err
}

// settingsCheck is how often a background helper checks that it still
// runs with the settings of PostgreSQL's calls.
const settingsCheck = time.Second

// staleSettings reports whether a helper that runs with the settings
// stamp settings should leave because the calls no longer have them: its
// call's inputs stamp differently now (a config file changed), or a call
// with other settings (a new command line) left its stamp in the helper's
// retire file. The retire file is used up.
func staleSettings(settings string, restamp func() string, retire string) bool {
	if settings == "" {
		return false
	}
	if b, err := os.ReadFile(retire); err == nil && string(b) == settings {
		os.Remove(retire)
		return true
	}
	return restamp != nil && restamp() != settings
}

// retireHelper asks the helper whose records carry the settings stamp
// helperSettings to leave, when a call whose settings stamp is
// callSettings found one of them: its records can no longer answer
// walsnap-pg.
func retireHelper(own spool.Owner, retire, helperSettings, callSettings string) {
	if helperSettings == "" || callSettings == "" || helperSettings == callSettings {
		return
	}
	own.WriteRecord(retire, []byte(helperSettings))
}

// serverPoll is how often a background helper checks that its server runs.
const serverPoll = 100 * time.Millisecond

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
