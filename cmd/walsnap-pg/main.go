// Command walsnap-pg is the small front end of walsnap for the two
// commands PostgreSQL runs once per WAL file:
//
//	archive_command = 'walsnap-pg wal-push %p'
//	restore_command = 'walsnap-pg wal-fetch %f %p'
//
// It takes exactly walsnap's command line. A call that a walsnap helper
// has already done the work for — a file the background archiver
// archived, a segment the standing prefetcher downloaded and verified — it
// answers from the helper's record in the spool, which costs little more
// than starting this small program; every other call, and every call it
// cannot prove it may answer, it hands to walsnap (the walsnap binary in
// its own directory, with the same arguments and environment), which does
// what it always does. It answers only when all of these hold:
//
//   - the command line is a wal-push or wal-fetch call and it runs as the
//     cluster's user (not root);
//   - the record is of this version, for this file name, owned by this
//     user and writable by no one else;
//   - the record carries the callstamp of this call's settings: the
//     helper runs with the settings this call would resolve (same command
//     line, environment, working directory and config file content), so
//     the record is for the repository this call would use;
//   - wal-push: the record is younger than walrec.Trust and the file's
//     stat is the one the archiver read and hashed;
//   - wal-fetch: the prefetcher runs (it follows the segment PostgreSQL
//     asks for) and walrec.CheckPrefetched proves the file holds the
//     verified bytes.
//
// Like walsnap, it first waits (up to two minutes) while a helper works on
// the file: the archiver uploading it, the prefetcher downloading it.
//
// It imports only walsnap's small spool packages, so that it starts in
// about a millisecond (walsnap itself, with the AWS SDK, takes about ten).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/callstamp"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

func main() {
	start := time.Now()
	cwd, err := os.Getwd()
	call, ok := callstamp.Parse(os.Args, os.Environ(), cwd)
	if err == nil && ok && call.Stamp != "" && os.Geteuid() != 0 {
		var line string
		var hint walrec.Log
		switch call.Command {
		case "wal-push":
			line, hint, ok = servePush(call)
		case "wal-fetch":
			line, hint, ok = serveFetch(call)
		}
		if ok {
			logServed(hint, call, line, time.Since(start))
			os.Exit(0)
		}
	}
	os.Exit(handOver(call.Command))
}

// handOver runs walsnap in this process's place with the same arguments
// and environment. It returns only when it cannot, with the exit status
// that makes PostgreSQL retry (wal-push) or stop recovery (wal-fetch: not
// 1, which would end it).
func handOver(command string) int {
	exe, err := os.Executable()
	if err == nil {
		path := filepath.Join(filepath.Dir(exe), "walsnap")
		err = syscall.Exec(path, append([]string{path}, os.Args[1:]...), os.Environ())
		err = fmt.Errorf("cannot run %s: %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "%s: %v (walsnap must be installed beside %[1]s)\n", callstamp.FrontEnd, err)
	if command == "wal-fetch" {
		return 255
	}
	return 1
}

// servePush answers a wal-push call from the background archiver's record
// of the file.
func servePush(call callstamp.Call) (string, walrec.Log, bool) {
	path := call.Files[0]
	name := filepath.Base(path)
	if _, err := wal.Classify(name); err != nil {
		return "", walrec.Log{}, false
	}
	walDir := filepath.Dir(path)
	sdir := spool.Dir("", walDir)
	recPath := walrec.PushedPath(sdir, name)
	// A running archiver takes the file the moment it is ready; then
	// wait while it uploads it, as walsnap would.
	walrec.AwaitPickup(spool.Owner{}, sdir, walDir, name)
	if waitUnlocked(recPath+walrec.BusySuffix) != nil {
		return "", walrec.Log{}, false
	}
	rec, fi, err := walrec.ReadPushed(recPath, name)
	if err != nil || !trusted(fi, rec.Settings, call.Stamp) || time.Since(fi.ModTime()) > walrec.Trust {
		return "", walrec.Log{}, false
	}
	if rec.Stat.Size != rec.Size || !walrec.Unchanged(path, rec.Stat) {
		return "", walrec.Log{}, false
	}
	// Used once, as walsnap uses it.
	if os.Remove(recPath) != nil {
		return "", walrec.Log{}, false
	}
	return "archived (by the background archiver)", rec.Log, true
}

// serveFetch answers a wal-fetch call with the standing prefetcher's copy
// of the segment.
func serveFetch(call callstamp.Call) (string, walrec.Log, bool) {
	name, dest := call.Files[0], call.Files[1]
	if kind, err := wal.Classify(name); err != nil || kind != wal.KindSegment {
		return "", walrec.Log{}, false
	}
	pdir := filepath.Join(spool.Dir("", filepath.Dir(dest)), walrec.PrefetchDir)
	path := filepath.Join(pdir, name)
	if !fsutil.IsLocked(filepath.Join(pdir, walrec.PrefetcherLock)) {
		return "", walrec.Log{}, false
	}
	// The prefetcher is downloading the file: wait for its commit, as
	// walsnap would (it holds the lock from <name>.part to the record).
	if waitUnlocked(path+".part") != nil || waitUnlocked(path) != nil {
		return "", walrec.Log{}, false
	}
	rec, fi, err := walrec.ReadPrefetched(path+walrec.RecordSuffix, name)
	if err != nil || !trusted(fi, rec.Settings, call.Stamp) {
		return "", walrec.Log{}, false
	}
	f, err := os.Open(path)
	if err != nil {
		return "", walrec.Log{}, false
	}
	err = walrec.CheckPrefetched(f, rec)
	f.Close()
	if err != nil {
		return "", walrec.Log{}, false // walsnap discards it and says why
	}
	if fsutil.Move(path, dest) != nil {
		return "", walrec.Log{}, false
	}
	os.Remove(path + walrec.RecordSuffix)
	// Not fsynced: the position only steers the prefetcher.
	if err := (spool.Owner{}).WriteRecord(filepath.Join(pdir, walrec.WantFile), []byte(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "walsnap-pg: %s: cannot tell the prefetcher: %v\n", name, err)
	}
	return "restored (prefetched)", rec.Log, true
}

// helperWait bounds how long a call waits for a helper that is working
// on its file before it hands the call to walsnap (which waits on).
const helperWait = 2 * time.Minute

// waitUnlocked waits, up to helperWait, until no one holds the lock on
// path (at once when path does not exist).
func waitUnlocked(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), helperWait)
	defer cancel()
	return fsutil.WaitUnlocked(ctx, path)
}

// trusted reports whether a record file fi written with the settings
// stamp recStamp may answer a call whose settings have the stamp stamp.
func trusted(fi os.FileInfo, recStamp, stamp string) bool {
	return recStamp != "" && recStamp == stamp && walrec.Private(fi)
}

// logServed logs a served call as walsnap logs it under PostgreSQL (no
// time: the server log has its own).
func logServed(hint walrec.Log, call callstamp.Call, msg string, took time.Duration) {
	if !hint.Info {
		return
	}
	opts := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if hint.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	slog.New(h).With("cmd", call.Command).Info(msg, "file", filepath.Base(call.Files[0]), "ms", took.Milliseconds(), "by", "walsnap-pg")
}
