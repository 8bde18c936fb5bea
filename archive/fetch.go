package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

// Fetcher restores WAL files from a repository.
type Fetcher struct {
	Repo        *repo.Repo
	Codec       compress.Codec // the codec whose key is tried first
	Prefetch    int            // segments to keep prefetched ahead (0 = off)
	Concurrency int            // prefetch downloads at once
	SpoolDir    string         // "" = <pg_wal>/.walsnap
	Timeout     time.Duration  // the prefetcher's bound per download (0: 5 minutes)
	Log         *slog.Logger
	// PrefetchIdle is how long the standing prefetcher stays while
	// PostgreSQL asks for nothing new (0: prefetchIdle).
	PrefetchIdle time.Duration
	// Settings is the callstamp of the settings this prefetcher runs
	// with, and LogHint how it logs; both go into its commit records, so
	// that walsnap-pg can serve a call with the same settings from them.
	Settings string
	LogHint  walrec.Log
	// Restamp, in the prefetcher, takes the settings stamp of the call
	// that started it again; when it differs from Settings, the
	// prefetcher leaves (nil: never).
	Restamp func() string
	// CallSettings is the settings stamp of a wal-fetch call: a record
	// with another makes the prefetcher that wrote it leave.
	CallSettings string
	// StartPrefetch starts the standing prefetcher (see RunPrefetch) after
	// name; it must not wait for it (PostgreSQL waits for wal-fetch to
	// exit). wal-fetch starts a detached walsnap process that calls
	// RunPrefetch. Nil disables prefetch.
	StartPrefetch func(name string) error
}

// ErrNotFound means the repository has no such WAL file: the only outcome
// for which restore_command may exit 1.
var ErrNotFound = errors.New("not found in the repository")

// Fetch writes the verified WAL file name to dest (as given by %p). It
// returns an error matching ErrNotFound only when the file is absent.
//
// dest's directory must exist: PostgreSQL always passes a path inside
// pg_wal, so a missing directory is a wrong call, and creating it would
// hide that.
func (f *Fetcher) Fetch(ctx context.Context, name, dest string) error {
	start := time.Now()
	kind, err := wal.Classify(name)
	if err != nil {
		return err
	}
	walDir := filepath.Dir(dest)
	if fi, err := os.Stat(walDir); err != nil || !fi.IsDir() {
		return fileError(name, fmt.Errorf("destination directory %s: not an existing directory", walDir))
	}
	sdir := spool.Dir(f.SpoolDir, walDir)
	pdir := filepath.Join(sdir, walrec.PrefetchDir)
	own := spool.OwnerOf(walDir)
	if kind == wal.KindSegment {
		if rec, ok := f.takePrefetched(ctx, pdir, name, dest); ok {
			own.Chown(dest)
			f.Log.Info("restored (prefetched)", "file", name, "ms", time.Since(start).Milliseconds())
			if fn, err := wal.ParseFileName(name, rec.SegmentSize); err == nil {
				sweepPassed(pdir, fn.Segment, rec.SegmentSize)
				f.followRecovery(own, sdir, pdir, name)
			}
			return nil
		}
	}
	// The identity is read from the repository on every call, never from
	// a local cache, while the object downloads.
	ident := identityOf(ctx, f.Repo)
	// The download goes to the top of the spool, not into the prefetch
	// directory: wal-push or the prefetcher remove that one when recovery
	// ends, which is when PostgreSQL still fetches the parent timeline's
	// history file.
	if err := own.MkdirAll(sdir, sdir); err != nil {
		return fileError(name, err)
	}
	tmp, err := own.CreateTemp(sdir, name+".fetch-*")
	if err != nil {
		return fileError(name, err)
	}
	lock, err := fsutil.LockFileWait(tmp)
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fileError(name, err)
	}
	obj, id, err := f.download(ctx, name, tmp, ident)
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = fsutil.Move(tmp.Name(), dest)
	}
	lock.Unlock()
	if err != nil {
		os.Remove(tmp.Name())
		return fileError(name, err)
	}
	own.Chown(dest) // in case the move had to copy
	f.Log.Info("restored", "file", name, "bytes_in", obj.RawSize, "ms", time.Since(start).Milliseconds())
	if kind == wal.KindSegment && id.SegmentSize != 0 {
		if fn, err := wal.ParseFileName(name, id.SegmentSize); err == nil {
			sweepPassed(pdir, fn.Segment, id.SegmentSize)
			f.followRecovery(own, sdir, pdir, name)
		}
	}
	return nil
}

// identityOf starts reading the repository identity and returns a function
// that waits for it. A repository without one yields a zero Identity.
func identityOf(ctx context.Context, r *repo.Repo) func() (repo.Identity, error) {
	ch := make(chan struct{})
	var id repo.Identity
	var err error
	go func() {
		defer close(ch)
		id, err = r.Identity(ctx)
		if errors.Is(err, repo.ErrNoIdentity) {
			id, err = repo.Identity{}, nil
		}
	}()
	return func() (repo.Identity, error) {
		<-ch
		return id, err
	}
}

// download streams a WAL object into w, decompressing it and verifying
// its size, SHA-256 and (for segments) page header against the repository
// identity that ident returns. On any mismatch it fails: w then holds
// garbage and must not be used.
func (f *Fetcher) download(ctx context.Context, name string, w io.Writer, ident func() (repo.Identity, error)) (repo.WALObject, repo.Identity, error) {
	head := &headBuffer{}
	obj, err := f.Repo.CopyWAL(ctx, name, f.Codec, io.MultiWriter(w, head))
	id, iderr := ident()
	if errors.Is(err, repo.ErrNotExist) {
		return obj, id, ErrNotFound
	}
	if err != nil {
		return obj, id, err
	}
	if iderr != nil {
		return obj, id, iderr
	}
	n := obj.RawSize
	if k, _ := wal.Classify(name); k == wal.KindSegment || k == wal.KindPartial {
		if id.SystemID == 0 {
			return obj, id, fmt.Errorf("%s: the repository has WAL but no identity (walsnap.json): refusing to serve a segment that cannot be checked", obj.Key)
		}
		if uint64(n) != id.SegmentSize {
			return obj, id, fmt.Errorf("%s: %d bytes, not the segment size %d", obj.Key, n, id.SegmentSize)
		}
		fn, err := wal.ParseFileName(name, id.SegmentSize)
		if err != nil {
			return obj, id, err
		}
		if _, err := wal.CheckSegmentHeader(fn.Segment, id.SegmentSize, head.b, id.SystemID); err != nil {
			return obj, id, err
		}
	}
	return obj, id, nil
}

// headBuffer keeps the first LongHeaderSize bytes written to it.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	if need := wal.LongHeaderSize - len(h.b); need > 0 {
		h.b = append(h.b, p[:min(need, len(p))]...)
	}
	return len(p), nil
}

// takePrefetched moves a committed prefetched copy of name into dest after
// proving it holds the verified bytes (see walrec.CheckPrefetched), and
// returns its record. A file that fails any check is removed, logged and
// not served. If a prefetcher is writing name right now, takePrefetched
// waits for it rather than downloading twice.
func (f *Fetcher) takePrefetched(ctx context.Context, pdir, name, dest string) (walrec.Prefetched, bool) {
	path := filepath.Join(pdir, name)
	// The writer holds its lock from creating <name>.part until the record
	// is written, across the rename to <name>.
	if fsutil.WaitUnlocked(ctx, path+".part") != nil || fsutil.WaitUnlocked(ctx, path) != nil {
		return walrec.Prefetched{}, false
	}
	rec, _, err := walrec.ReadPrefetched(path+walrec.RecordSuffix, name)
	if errors.Is(err, os.ErrNotExist) {
		// No committed copy; a file without its record is a dead
		// writer's leftover.
		os.Remove(path)
		return rec, false
	}
	if err == nil {
		retireHelper(spool.OwnerOf(filepath.Dir(dest)), filepath.Join(pdir, walrec.PrefetcherRetire), rec.Settings, f.CallSettings)
		err = f.checkPrefetched(path, rec)
	}
	if err != nil {
		f.Log.Warn("discarding a prefetched file that fails its check", "file", name, "err", err)
		removePrefetched(path)
		return rec, false
	}
	if err := fsutil.Move(path, dest); err != nil {
		f.Log.Warn("cannot move prefetched file into place", "file", name, "err", err)
		removePrefetched(path)
		return rec, false
	}
	os.Remove(path + walrec.RecordSuffix)
	return rec, true
}

// checkPrefetched proves that the file at path holds the bytes its record
// describes, for this repository.
func (f *Fetcher) checkPrefetched(path string, rec walrec.Prefetched) error {
	if rec.Repo != f.Repo.String() || !repo.IsKeyOf(rec.Key, rec.Name) {
		return fmt.Errorf("record is for %s %s, not this repository", rec.Repo, rec.Key)
	}
	fd, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fd.Close()
	return walrec.CheckPrefetched(fd, rec)
}

// removePrefetched removes a prefetched file and its record.
func removePrefetched(path string) {
	os.Remove(path)
	os.Remove(path + walrec.RecordSuffix)
}

// prefetched reports whether a committed prefetched copy of name exists.
func prefetched(pdir, name string) bool {
	_, err := os.Stat(filepath.Join(pdir, name+walrec.RecordSuffix))
	return err == nil
}

// followRecovery tells the standing prefetcher that PostgreSQL asked for
// name, and starts it unless it runs.
func (f *Fetcher) followRecovery(own spool.Owner, sdir, pdir, name string) {
	if f.Prefetch <= 0 || f.StartPrefetch == nil {
		return
	}
	if own.MkdirAll(sdir, pdir) != nil {
		return
	}
	// Not fsynced: the position only steers the prefetcher.
	own.WriteRecord(filepath.Join(pdir, walrec.WantFile), []byte(name))
	if fsutil.IsLocked(filepath.Join(pdir, walrec.PrefetcherLock)) {
		return
	}
	if err := f.StartPrefetch(name); err != nil {
		f.Log.Warn("cannot start prefetch", "err", err)
	}
}

// RunPrefetch is the standing prefetcher of walDir's spool: it keeps the
// segments after the one PostgreSQL asked for last (name at first, then
// what wal-fetch writes to the want file) downloaded, verified, fsynced
// and committed in the prefetch directory — Prefetch of them, Concurrency
// at a time, and never more than maxPrefetchBytes — and follows timeline
// switches the repository's history files describe. Only one prefetcher
// runs per spool; a second returns at once. It leaves when PostgreSQL has
// asked for nothing new for PrefetchIdle.
//
// Once recovery has ended (see recoveryEnded), prefetching is pointless:
// RunPrefetch then stops (it checks before it starts and every
// recoveryPoll while it runs) and removes the prefetch directory.
func (f *Fetcher) RunPrefetch(ctx context.Context, name, walDir string) error {
	sdir := spool.Dir(f.SpoolDir, walDir)
	pdir := filepath.Join(sdir, walrec.PrefetchDir)
	dataDir := dataDirOf(walDir)
	if recoveryEnded(dataDir) {
		removePrefetchSpool(sdir)
		return nil
	}
	sweepSpoolTop(sdir)
	own := spool.OwnerOf(walDir)
	if err := own.MkdirAll(sdir, pdir); err != nil {
		return err
	}
	lock, err := helperLock(own, filepath.Join(pdir, walrec.PrefetcherLock))
	if err != nil || lock == nil {
		return err
	}
	defer lock.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A stopped server needs no prefetch: leave at once, downloads and all.
	watchServer(ctx, cancel, dataDir)
	var ended atomic.Bool
	if dataDir != "" {
		watch(ctx, recoveryPoll, func() bool { return recoveryEnded(dataDir) }, func() {
			ended.Store(true)
			cancel()
		})
	}
	err = f.standBy(ctx, own, pdir, name)
	if ended.Load() || recoveryEnded(dataDir) {
		f.Log.Info("recovery has ended: prefetch stopped, prefetch directory removed")
		removePrefetchSpool(sdir)
		return nil
	}
	return err
}

// PrefetchNice is the nice value the standing prefetcher process runs at
// (see detach.Yield): recovery's own work — the startup process replaying,
// PostgreSQL's restore_command calls — runs first where they compete for
// a core; the downloads it needs next are ahead of it by fetch.prefetch
// segments and take the cycles replay leaves.
const PrefetchNice = 10

// Standing prefetcher timing.
const (
	// prefetchPoll is how often the prefetcher looks for a new position.
	prefetchPoll = 20 * time.Millisecond
	// prefetchRetry is how often it asks the repository again for the
	// segment after the end of the archive (a standby waiting for WAL).
	prefetchRetry = time.Second
	// prefetchIdle is how long it stays without a new position.
	prefetchIdle = 30 * time.Second
	// maxPrefetchBytes bounds the prefetched bytes, whatever the segment
	// size and fetch.prefetch.
	maxPrefetchBytes = 1 << 30
)

// standBy keeps the window after the wanted segment filled until ctx ends
// or PostgreSQL has asked for nothing new for PrefetchIdle.
func (f *Fetcher) standBy(ctx context.Context, own spool.Owner, pdir, name string) error {
	want, moved := name, time.Now()
	filled := "" // the position of the last fill
	var lastFill time.Time
	var view archiveView
	full := false
	checked := time.Now()
	for ctx.Err() == nil {
		if time.Since(checked) > settingsCheck {
			checked = time.Now()
			if staleSettings(f.Settings, f.Restamp, filepath.Join(pdir, walrec.PrefetcherRetire)) {
				f.Log.Info("prefetcher leaving: PostgreSQL's calls have other settings now (config file or command line)")
				return nil
			}
		}
		if w, err := os.ReadFile(filepath.Join(pdir, walrec.WantFile)); err == nil && len(w) > 0 && string(w) != want {
			want, moved = string(w), time.Now()
		}
		// A fill for each new position; where a fill left the window
		// short (the end of the archive, a failed download) another every
		// prefetchRetry, not every poll: a standby at the end of the
		// archive would ask the store for the next segment 50 times a
		// second.
		if want != filled || !full && time.Since(lastFill) > prefetchRetry {
			var err error
			full, err = f.fill(ctx, own, pdir, want, &view)
			filled, lastFill = want, time.Now()
			if err != nil && ctx.Err() == nil {
				f.Log.Warn("prefetch failed", "after", want, "err", err)
			}
		}
		// Idle only after a fill for the latest position: a prefetcher
		// started for a segment always fetches what follows it.
		if time.Since(moved) > cmp.Or(f.PrefetchIdle, prefetchIdle) {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(prefetchPoll):
		}
	}
	return nil
}

// archiveView is what the prefetcher knows of the repository: its
// identity, and the timelines that branched off the one recovery reads.
// It is read again when it is older than prefetchRetry or recovery reads
// another timeline, not for every segment: a download is verified against
// the identity it was read with, and branches a second late cost at most
// the download of a segment recovery will not ask for (a file is served
// only for its own name). Reading them for every segment was three of the
// four requests per prefetched segment.
type archiveView struct {
	id       repo.Identity
	tli      uint32
	branches []branch
	read     time.Time
}

// position parses want, the segment recovery asked for last, having read
// the view again if it is stale for it.
func (v *archiveView) position(ctx context.Context, f *Fetcher, want string) (wal.Segment, error) {
	fresh := !v.read.IsZero() && time.Since(v.read) < prefetchRetry
	if !fresh {
		id, err := f.Repo.Identity(ctx)
		if err != nil {
			return wal.Segment{}, err
		}
		v.id = id
	}
	fn, err := wal.ParseFileName(want, v.id.SegmentSize)
	if err != nil || fn.Kind != wal.KindSegment {
		return wal.Segment{}, fmt.Errorf("prefetch after %s: not a segment name", want)
	}
	if !fresh || fn.Segment.TLI != v.tli {
		v.tli, v.branches, v.read = fn.Segment.TLI, f.branches(ctx, fn.Segment.TLI, v.id.SegmentSize), time.Now()
	}
	return fn.Segment, nil
}

// fill downloads the window of segments after want that is not there yet,
// and reports whether the window is full (false: the archive ended before
// it, or a download failed).
func (f *Fetcher) fill(ctx context.Context, own spool.Owner, pdir, want string, view *archiveView) (bool, error) {
	seg, err := view.position(ctx, f, want)
	if err != nil {
		return false, err
	}
	id, branches := view.id, view.branches
	// PostgreSQL has what it asked for; walsnap-pg does not sweep.
	sweepPassed(pdir, seg, id.SegmentSize)
	window := min(f.Prefetch, max(1, int(maxPrefetchBytes/id.SegmentSize)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, f.Concurrency))
	var wg sync.WaitGroup
	var endSeen, failed atomic.Bool
	for range window {
		seg = after(seg, branches)
		next := seg.Name(id.SegmentSize)
		if prefetched(pdir, next) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		// The end of the archive: nothing after it either. Downloads of
		// segments before it go on.
		if ctx.Err() != nil || endSeen.Load() {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := f.prefetchOne(ctx, own, pdir, next, id)
			switch {
			case errors.Is(err, ErrNotFound):
				endSeen.Store(true)
			case errors.Is(err, errSwept):
				// Recovery has gone past it: nothing to report.
			case err != nil && ctx.Err() == nil:
				failed.Store(true)
				f.Log.Warn("prefetch failed", "file", next, "err", err)
			}
		})
	}
	wg.Wait()
	return !endSeen.Load() && !failed.Load(), nil
}

// recoveryPoll is how often a running prefetcher checks whether recovery
// has ended.
var recoveryPoll = 500 * time.Millisecond

// branch is a timeline that branched off its parent: recovery to the
// latest timeline reads segments from it from its switch segment on.
type branch struct {
	tli, parent uint32
	switchNo    uint64
}

// branches reads the history files of the timelines after tli, while
// there are any.
func (f *Fetcher) branches(ctx context.Context, tli uint32, segSize uint64) []branch {
	var out []branch
	for t := tli + 1; ; t++ {
		data, err := f.Repo.ReadWAL(ctx, wal.HistoryFileName(t))
		if err != nil {
			return out
		}
		entries, err := wal.ParseHistory(data)
		if err != nil {
			return out
		}
		last := entries[len(entries)-1]
		out = append(out, branch{tli: t, parent: last.ParentTLI, switchNo: uint64(last.SwitchPoint) / segSize})
	}
}

// after returns the segment recovery reads after seg: the next one on
// seg's timeline, or, where a newer timeline branched off it at or before
// that point, the next one on the newest such timeline (PostgreSQL
// recovering to the latest timeline reads it from there).
func after(seg wal.Segment, branches []branch) wal.Segment {
	next := seg.Next()
	for _, b := range branches {
		if b.parent == next.TLI && b.switchNo <= next.No {
			next.TLI = b.tli
		}
	}
	return next
}

func (f *Fetcher) prefetchOne(ctx context.Context, own spool.Owner, pdir, name string, id repo.Identity) error {
	path := filepath.Join(pdir, name)
	part := path + ".part"
	fd, err := own.CreateExcl(part)
	if fi, serr := os.Stat(part); errors.Is(err, os.ErrExist) && serr == nil && orphaned(pdir, filepath.Base(part), fi) {
		os.Remove(part) // left by a prefetcher that died
		fd, err = own.CreateExcl(part)
	}
	if err != nil {
		return nil // someone else is on it
	}
	lock, err := fsutil.LockFileWait(fd)
	if err != nil {
		fd.Close()
		os.Remove(part)
		return err
	}
	defer lock.Unlock()
	// A stale copy or record of this name (an earlier recovery) goes first:
	// only what is verified now gets a record.
	removePrefetched(path)
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(f.Timeout, 5*time.Minute))
	defer cancel()
	h := walrec.NewCRC()
	known := func() (repo.Identity, error) { return id, nil }
	obj, _, err := f.download(ctx, name, io.MultiWriter(fd, h), known)
	if err == nil {
		err = fd.Sync()
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = fd.Stat() // after the rename, which changes ctime
	}
	settled := false
	if err == nil {
		settled, err = settleDownload(path, walrec.StatOf(fi), h.Sum32())
	}
	if err == nil {
		rec := walrec.Prefetched{Format: walrec.Format, Name: name, Repo: f.Repo.String(), Key: obj.Key,
			SystemID: id.SystemID, SegmentSize: id.SegmentSize, Size: obj.RawSize, SHA256: obj.SHA256,
			CRC32C: h.Sum32(), Stat: walrec.StatOf(fi), Settled: settled, Settings: f.Settings, Log: f.LogHint}
		// Not fsynced: a record lost in a crash only costs a download.
		err = own.WriteRecord(path+walrec.RecordSuffix, mustJSON(rec))
	}
	if err != nil {
		os.Remove(part)
		removePrefetched(path)
	}
	return err
}

// settleDownload ties a downloaded file's stat st to its verified bytes:
// once the filesystem's clock has moved past st's ctime (walrec.Settle),
// it reads the file back, and only if the bytes still have the CRC-32C
// sum of those verified while downloading and the stat is still st does
// it report true: every later change of the file changes its stat, so an
// unchanged stat then proves the file (a serve needs no re-read). On a
// filesystem that keeps whole seconds it reports false, and each serve
// compares the bytes.
func settleDownload(path string, st walrec.Stat, sum uint32) (bool, error) {
	if !walrec.Settle(st) {
		return false, nil
	}
	fd, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, errSwept
	}
	if err != nil {
		return false, err
	}
	defer fd.Close()
	n, got, _, err := walrec.CRC(fd)
	if err != nil {
		return false, err
	}
	fi, err := fd.Stat()
	if err != nil {
		return false, err
	}
	if n != st.Size || got != sum || walrec.StatOf(fi) != st {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return false, errSwept
		}
		return false, errors.New("the downloaded file changed after it was verified")
	}
	return true, nil
}

// errSwept means a call's sweep removed a prefetched file before the
// prefetcher committed it: recovery had gone past it (not a failure).
var errSwept = errors.New("recovery has gone past it")

// orphanAge is how old an unlocked in-progress file must be before it is
// taken for the leftover of a dead writer: a writer creates the file, then
// locks it microseconds later.
const orphanAge = 2 * time.Second

// orphaned reports whether an in-progress file was left by a dead writer.
func orphaned(pdir, name string, fi os.FileInfo) bool {
	return olderThan(fi, orphanAge) && !fsutil.IsLocked(filepath.Join(pdir, name))
}

// sweepPassed removes prefetched segments that recovery has gone past, and
// what sweepPrefetch removes.
func sweepPassed(pdir string, current wal.Segment, segSize uint64) {
	sweepSpoolFiles(pdir, 10*time.Minute, func(name string) bool {
		fn, err := wal.ParseFileName(name, segSize)
		return err == nil && fn.Segment.No < current.No
	})
}

// sweepPrefetch removes prefetched files older than maxAge (recovery has
// ended or moved on), in-progress files whose writer is gone, and records
// without their file or files without their record.
func sweepPrefetch(pdir string, maxAge time.Duration) {
	sweepSpoolFiles(pdir, maxAge, func(string) bool { return false })
}

func sweepSpoolFiles(pdir string, maxAge time.Duration, passed func(name string) bool) {
	sweep(pdir, func(name string, fi os.FileInfo) bool {
		if inProgress(name) {
			return orphaned(pdir, name, fi)
		}
		if seg, ok := strings.CutSuffix(name, walrec.RecordSuffix); ok {
			_, err := os.Stat(filepath.Join(pdir, seg))
			return errorsIsNotExist(err) && olderThan(fi, orphanAge) || passed(seg) || olderThan(fi, maxAge)
		}
		if _, err := wal.Classify(name); err != nil {
			return false
		}
		if passed(name) || olderThan(fi, maxAge) {
			return true
		}
		// A committed file has a record; one without is left by a writer
		// that died between rename and record.
		return !prefetched(pdir, name) && orphaned(pdir, name, fi)
	})
}

func inProgress(name string) bool {
	return strings.HasSuffix(name, ".part") || strings.Contains(name, ".fetch-") || strings.Contains(name, ".tmp-")
}
