package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

// Fetcher restores WAL files from a repository.
type Fetcher struct {
	Repo        *repo.Repo
	Codec       compress.Codec // the codec whose key is tried first
	Prefetch    int            // segments to keep prefetched ahead (0 = off)
	Concurrency int            // prefetch downloads at once
	SpoolDir    string         // "" = <pg_wal>/.walsnap
	Log         *slog.Logger
	// StartPrefetch starts a background prefetch of the segments after
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
func (f *Fetcher) Fetch(ctx context.Context, name, dest string) error {
	start := time.Now()
	kind, err := wal.Classify(name)
	if err != nil {
		return err
	}
	walDir := filepath.Dir(dest)
	pdir := filepath.Join(spoolDir(f.SpoolDir, walDir), "prefetch")
	id, err := loadIdentity(ctx, f.Repo, spoolDir(f.SpoolDir, walDir))
	if err != nil && !errors.Is(err, repo.ErrNoIdentity) {
		return fileError(name, err)
	}
	var seg wal.Segment
	if kind == wal.KindSegment && id.SegmentSize != 0 {
		fn, err := wal.ParseFileName(name, id.SegmentSize)
		if err != nil {
			return err
		}
		seg = fn.Segment
		sweepPassed(pdir, seg, id.SegmentSize)
		if f.takePrefetched(ctx, pdir, name, dest, id) {
			f.Log.Info("restored (prefetched)", "file", name, "ms", time.Since(start).Milliseconds())
			f.maybePrefetch(pdir, seg, id.SegmentSize)
			return nil
		}
	}
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return fileError(name, err)
	}
	tmp, err := os.CreateTemp(pdir, name+".fetch-*")
	if err != nil {
		return fileError(name, err)
	}
	lock, err := fsutil.LockFileWait(tmp)
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fileError(name, err)
	}
	obj, err := f.download(ctx, name, tmp, id)
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = fsutil.MoveDurable(tmp.Name(), dest)
	}
	lock.Unlock()
	if err != nil {
		os.Remove(tmp.Name())
		return fileError(name, err)
	}
	f.Log.Info("restored", "file", name, "bytes_in", obj.RawSize, "ms", time.Since(start).Milliseconds())
	if seg != (wal.Segment{}) {
		f.maybePrefetch(pdir, seg, id.SegmentSize)
	}
	return nil
}

// download streams a WAL object into w, decompressing it and verifying
// its size, SHA-256 and (for segments) page header. On any mismatch it
// fails: w then holds garbage and must not be used.
func (f *Fetcher) download(ctx context.Context, name string, w io.Writer, id repo.Identity) (repo.WALObject, error) {
	head := &headBuffer{}
	obj, err := f.Repo.CopyWAL(ctx, name, f.Codec, io.MultiWriter(w, head))
	if errors.Is(err, storage.ErrNotExist) {
		return obj, ErrNotFound
	}
	if err != nil {
		return obj, err
	}
	n := obj.RawSize
	if k, _ := wal.Classify(name); k == wal.KindSegment || k == wal.KindPartial {
		segSize := id.SegmentSize
		if segSize == 0 {
			segSize = uint64(n)
		}
		if uint64(n) != segSize {
			return obj, fmt.Errorf("%s: %d bytes, not the segment size %d", obj.Key, n, segSize)
		}
		fn, err := wal.ParseFileName(name, segSize)
		if err != nil {
			return obj, err
		}
		if _, err := wal.CheckSegmentHeader(fn.Segment, segSize, head.b, id.SystemID); err != nil {
			return obj, err
		}
	}
	return obj, nil
}

// headBuffer keeps the first LongHeaderSize bytes written to it.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	if need := wal.LongHeaderSize - len(h.b); need > 0 {
		h.b = append(h.b, p[:min(need, len(p))]...)
	}
	return len(p), nil
}

// takePrefetched moves a prefetched copy of name into dest. A file is in
// the prefetch directory under its final name only once it was fully
// downloaded, verified and fsynced; it is checked again here (size and page
// header) before PostgreSQL sees it. If a prefetcher is downloading name
// right now, takePrefetched waits for it rather than downloading twice.
func (f *Fetcher) takePrefetched(ctx context.Context, pdir, name, dest string, id repo.Identity) bool {
	path := filepath.Join(pdir, name)
	part := path + ".part"
	for fi, err := os.Stat(part); err == nil && (fsutil.IsLocked(part) || !olderThan(fi, orphanAge)); fi, err = os.Stat(part) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	fd, err := os.Open(path)
	if err != nil {
		return false
	}
	hdr := make([]byte, wal.LongHeaderSize)
	_, rerr := io.ReadFull(fd, hdr)
	fi, serr := fd.Stat()
	fd.Close()
	ok := rerr == nil && serr == nil && uint64(fi.Size()) == id.SegmentSize
	if ok {
		fn, err := wal.ParseFileName(name, id.SegmentSize)
		ok = err == nil
		if ok {
			_, err = wal.CheckSegmentHeader(fn.Segment, id.SegmentSize, hdr, id.SystemID)
			ok = err == nil
		}
	}
	if !ok {
		f.Log.Warn("discarding a prefetched file that fails its check", "file", name)
		os.Remove(path)
		return false
	}
	if err := fsutil.MoveDurable(path, dest); err != nil {
		f.Log.Warn("cannot move prefetched file into place", "file", name, "err", err)
		os.Remove(path)
		return false
	}
	return true
}

// maybePrefetch starts a prefetcher unless the window ahead of seg is
// still at least half full or one is already running.
func (f *Fetcher) maybePrefetch(pdir string, seg wal.Segment, segSize uint64) {
	if f.Prefetch <= 0 || f.StartPrefetch == nil || fsutil.IsLocked(filepath.Join(pdir, ".lock")) {
		return
	}
	have := 0
	s := seg
	for range f.Prefetch {
		s = s.Next()
		if _, err := os.Stat(filepath.Join(pdir, s.Name(segSize))); err == nil {
			have++
		}
	}
	if have*2 > f.Prefetch {
		return
	}
	if err := f.StartPrefetch(seg.Name(segSize)); err != nil {
		f.Log.Warn("cannot start prefetch", "err", err)
	}
}

// RunPrefetch downloads the Prefetch segments after name into the prefetch
// directory under walDir's spool, Concurrency at a time, stopping at the
// first one the repository does not have. Only one prefetcher runs per
// spool; a second returns at once.
func (f *Fetcher) RunPrefetch(ctx context.Context, name, walDir string) error {
	spool := spoolDir(f.SpoolDir, walDir)
	pdir := filepath.Join(spool, "prefetch")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return err
	}
	lock, err := fsutil.TryLock(filepath.Join(pdir, ".lock"))
	if errors.Is(err, fsutil.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	id, err := loadIdentity(ctx, f.Repo, spool)
	if err != nil {
		return err
	}
	fn, err := wal.ParseFileName(name, id.SegmentSize)
	if err != nil || fn.Kind != wal.KindSegment {
		return fmt.Errorf("prefetch after %s: not a segment name", name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(1, f.Concurrency))
	var wg sync.WaitGroup
	seg := fn.Segment
	for range f.Prefetch {
		seg = seg.Next()
		next := seg.Name(id.SegmentSize)
		if _, err := os.Stat(filepath.Join(pdir, next)); err == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := f.prefetchOne(ctx, pdir, next, id)
			if errors.Is(err, ErrNotFound) {
				cancel() // the end of the archive: nothing after it either
			} else if err != nil && ctx.Err() == nil {
				f.Log.Warn("prefetch failed", "file", next, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

func (f *Fetcher) prefetchOne(ctx context.Context, pdir, name string, id repo.Identity) error {
	part := filepath.Join(pdir, name+".part")
	fd, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if fi, serr := os.Stat(part); errors.Is(err, os.ErrExist) && serr == nil && orphaned(pdir, filepath.Base(part), fi) {
		os.Remove(part) // left by a prefetcher that died
		fd, err = os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
	_, err = f.download(ctx, name, fd, id)
	if err == nil {
		err = fd.Sync()
	}
	if err == nil {
		err = os.Rename(part, filepath.Join(pdir, name))
	}
	if err != nil {
		os.Remove(part)
	}
	lock.Unlock()
	return err
}

// orphanAge is how old an unlocked in-progress file must be before it is
// taken for the leftover of a dead writer: a writer creates the file, then
// locks it microseconds later.
const orphanAge = 2 * time.Second

// orphaned reports whether an in-progress file was left by a dead writer.
func orphaned(pdir, name string, fi os.FileInfo) bool {
	return olderThan(fi, orphanAge) && !fsutil.IsLocked(filepath.Join(pdir, name))
}

// sweepPassed removes prefetched segments that recovery has gone past and
// in-progress files whose writer is gone.
func sweepPassed(pdir string, current wal.Segment, segSize uint64) {
	sweep(pdir, func(name string, fi os.FileInfo) bool {
		if inProgress(name) {
			return orphaned(pdir, name, fi)
		}
		fn, err := wal.ParseFileName(name, segSize)
		if err != nil {
			return false
		}
		return fn.Segment.No < current.No || olderThan(fi, 10*time.Minute)
	})
}

// sweepPrefetch removes prefetched files older than maxAge (recovery has
// ended or moved on) and in-progress files whose writer is gone.
func sweepPrefetch(pdir string, maxAge time.Duration) {
	sweep(pdir, func(name string, fi os.FileInfo) bool {
		if inProgress(name) {
			return orphaned(pdir, name, fi)
		}
		_, err := wal.Classify(name)
		return err == nil && olderThan(fi, maxAge)
	})
}

func inProgress(name string) bool {
	return strings.HasSuffix(name, ".part") || strings.Contains(name, ".fetch-")
}
