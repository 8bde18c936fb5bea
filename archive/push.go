package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
)

// Pusher archives WAL files into a repository.
type Pusher struct {
	Repo        *repo.Repo
	Codec       compress.Codec
	Concurrency int    // uploads at once (>= 1)
	Ahead       int    // most .ready files pushed ahead per call (0 = off)
	SpoolDir    string // "" = <pg_wal>/.walsnap
	Log         *slog.Logger
}

// ErrConflict means the repository already holds a different file under
// the same name; it is never overwritten.
var ErrConflict = errors.New("already archived with different content")

// pushedRecord is what push-ahead leaves in the spool for a segment it
// uploaded before PostgreSQL asked: enough to verify, on PostgreSQL's own
// call, that the file is unchanged and the object is in this repository.
type pushedRecord struct {
	Repo   string   `json:"repo"`
	Key    string   `json:"key"`
	SHA256 string   `json:"sha256"`
	Size   int64    `json:"size"`
	Stat   fileStat `json:"stat"`
}

// fileStat identifies one version of a file: PostgreSQL never rewrites a
// segment once it is .ready, and any rewrite or replacement changes the
// inode or ctime, which no user can set. An unchanged stat therefore proves
// the bytes are the ones hashed when the record was written.
type fileStat struct {
	Dev, Ino, Size, MtimeNs, CtimeNs int64
}

func statOf(fi os.FileInfo) fileStat {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStat{}
	}
	return fileStat{Dev: int64(st.Dev), Ino: int64(st.Ino), Size: st.Size,
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}
}

type pushResult struct {
	name      string
	stat      fileStat
	key       string
	sha       string
	in, out   int
	existed   bool
	elapsed   time.Duration
	err       error
	pushedFor string        // "" for the requested file, else pushed ahead
	id        repo.Identity // the repository identity the file was checked against
}

// Push archives the WAL file at path (as given by %p: relative to PGDATA
// or absolute). It returns nil only when the repository holds the file's
// exact bytes.
func (p *Pusher) Push(ctx context.Context, path string) error {
	start := time.Now()
	name := filepath.Base(path)
	if _, err := wal.Classify(name); err != nil {
		return err
	}
	walDir := filepath.Dir(path)
	sdir := spool.Dir(p.SpoolDir, walDir)
	pushedDir := filepath.Join(sdir, "pushed")
	p.sweepSpool(walDir, sdir)

	if done, err := p.pushedAhead(ctx, pushedDir, path, name); err != nil {
		return err
	} else if done {
		p.Log.Info("archived (pushed ahead earlier)", "file", name, "ms", time.Since(start).Milliseconds())
		return nil
	}

	files := []string{path}
	if p.Ahead > 0 {
		for _, n := range readyFiles(walDir, name, p.Ahead, pushedDir) {
			files = append(files, filepath.Join(walDir, n))
		}
	}
	// The identity is read from the repository on every call (never from a
	// local cache, which could outlive it), while the file is read and
	// compressed.
	ident := identityOf(ctx, p.Repo)
	if len(files) == 1 {
		r := p.pushOne(ctx, path, ident)
		p.report(r)
		return r.err
	}
	id, err := ident()
	if err != nil {
		return fileError(name, err)
	}
	// The requested file goes first and alone when the repository has no
	// identity yet, so that exactly one process creates it.
	if id.SystemID == 0 {
		r := p.pushOne(ctx, path, ident)
		p.report(r)
		if r.err != nil {
			return r.err
		}
		p.recordAhead(walDir, pushedDir, p.pushAll(ctx, files[1:], r.id, name))
		return nil
	}
	results := p.pushAll(ctx, files, id, "")
	p.recordAhead(walDir, pushedDir, results[1:])
	return results[0].err
}

// pushAll uploads files concurrently and reports each. With aheadOf empty
// the first file is the one PostgreSQL asked for and the rest are pushed
// ahead of it; otherwise all are pushed ahead of aheadOf.
func (p *Pusher) pushAll(ctx context.Context, files []string, id repo.Identity, aheadOf string) []pushResult {
	results := make([]pushResult, len(files))
	sem := make(chan struct{}, max(1, p.Concurrency))
	var wg sync.WaitGroup
	for i, f := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = p.pushOne(ctx, f, func() (repo.Identity, error) { return id, nil })
			switch {
			case aheadOf != "":
				results[i].pushedFor = aheadOf
			case i > 0:
				results[i].pushedFor = filepath.Base(files[0])
			}
			p.report(results[i])
		})
	}
	wg.Wait()
	return results
}

func (p *Pusher) report(r pushResult) {
	attrs := []any{"file", r.name, "bytes_in", r.in, "bytes_out", r.out, "ms", r.elapsed.Milliseconds()}
	if r.pushedFor != "" {
		attrs = append(attrs, "ahead_of", r.pushedFor)
	}
	switch {
	case r.err != nil && r.pushedFor != "":
		// PostgreSQL will ask for this file itself and see the error then.
		p.Log.Warn("push-ahead failed", append(attrs, "err", r.err)...)
	case r.err != nil:
		// The caller returns the error; cmd prints it once.
	case r.existed:
		p.Log.Info("already archived", attrs...)
	default:
		p.Log.Info("archived", attrs...)
	}
}

// pushOne validates, compresses and uploads one file. ident returns the
// repository identity, zero when the repository has none yet (then this
// call creates it from the segment header).
func (p *Pusher) pushOne(ctx context.Context, path string, ident func() (repo.Identity, error)) (res pushResult) {
	start := time.Now()
	name := filepath.Base(path)
	res.name = name
	defer func() {
		res.elapsed = time.Since(start)
		if res.err != nil {
			res.err = fileError(name, res.err)
		}
	}()
	data, stat, err := readFile(path)
	if err != nil {
		res.err = err
		return res
	}
	res.in, res.stat = len(data), stat

	// Hash and compress while the identity arrives; nothing is uploaded
	// before the file is validated against it.
	var sum [32]byte
	var enc []byte
	var encErr error
	var wg sync.WaitGroup
	wg.Go(func() { sum = sha256.Sum256(data) })
	wg.Go(func() { enc, encErr = p.Codec.Encode(nil, data) })
	id, err := ident()
	if err == nil {
		err = p.validate(ctx, name, data, &id)
	}
	wg.Wait()
	res.id = id
	if err != nil {
		res.err = err
		return res
	}
	if encErr != nil {
		res.err = encErr
		return res
	}
	res.sha = hex.EncodeToString(sum[:])
	res.out = len(enc)
	res.key, err = p.Repo.PutWAL(ctx, name, p.Codec, enc, res.sha, len(data))
	if errors.Is(err, repo.ErrExists) {
		res.existed = true
		obj, herr := p.Repo.HeadWAL(ctx, res.key)
		switch {
		case herr != nil:
			res.err = fmt.Errorf("exists in the repository but cannot be checked: %w", herr)
		case obj.SHA256 != res.sha:
			res.err = fmt.Errorf("%w (repository sha256 %s, local %s); refusing to overwrite: find out why two different files carry this name before anything else", ErrConflict, obj.SHA256, res.sha)
		}
		return res
	}
	res.err = err
	return res
}

// readFile reads a whole file and the stat of the version it read.
func readFile(path string) ([]byte, fileStat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStat{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStat{}, err
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fileStat{}, fmt.Errorf("read: %w", err)
	}
	// A file that changed while being read has a new ctime now.
	after, err := f.Stat()
	if err != nil {
		return nil, fileStat{}, err
	}
	st := statOf(after)
	if st != statOf(fi) {
		st = fileStat{} // unknown version: a record will be checked by hash
	}
	return data, st, nil
}

// validate refuses what must not enter the repository: segments of the
// wrong size or from another cluster, unparseable history files.
func (p *Pusher) validate(ctx context.Context, name string, data []byte, id *repo.Identity) error {
	kind, err := wal.Classify(name)
	if err != nil {
		return err
	}
	switch kind {
	case wal.KindSegment, wal.KindPartial:
		if len(data) < wal.LongHeaderSize {
			return fmt.Errorf("%d bytes is too short for a WAL segment", len(data))
		}
		segSize := id.SegmentSize
		if segSize == 0 {
			hdr, err := wal.ParseLongPageHeader(data)
			if err != nil {
				return fmt.Errorf("not a WAL segment: %w", err)
			}
			segSize = uint64(hdr.SegSize)
		}
		if uint64(len(data)) != segSize {
			return fmt.Errorf("size %d bytes is not the WAL segment size %d", len(data), segSize)
		}
		fn, err := wal.ParseFileName(name, segSize)
		if err != nil {
			return err
		}
		hdr, err := wal.CheckSegmentHeader(fn.Segment, segSize, data[:wal.LongHeaderSize], id.SystemID)
		if err != nil {
			return err
		}
		if id.SystemID == 0 {
			major, _ := wal.MagicMajor(hdr.Magic)
			want := repo.Identity{SystemID: hdr.SystemID, SegmentSize: segSize, PGMajor: major}
			got, err := p.Repo.InitIdentity(ctx, want)
			if err != nil {
				return err
			}
			if err := got.CheckSame(want); err != nil {
				return err
			}
			*id = got
		}
	case wal.KindHistory:
		if _, err := wal.ParseHistory(data); err != nil {
			return fmt.Errorf("not a timeline history file: %w", err)
		}
	case wal.KindBackup:
		if !bytes.HasPrefix(data, []byte("START WAL LOCATION:")) {
			return errors.New("not a backup history file (no START WAL LOCATION line)")
		}
	}
	return nil
}

// pushedAhead reports whether name was pushed ahead by an earlier call and
// still matches: same repository, same bytes on disk (SHA-256), and the
// object is in the repository with that checksum. A record that fails any
// check is removed and the file is pushed normally.
func (p *Pusher) pushedAhead(ctx context.Context, pushedDir, path, name string) (bool, error) {
	recPath := filepath.Join(pushedDir, name)
	data, err := os.ReadFile(recPath)
	if err != nil {
		return false, nil
	}
	os.Remove(recPath)
	var rec pushedRecord
	if json.Unmarshal(data, &rec) != nil || rec.Repo != p.Repo.String() || !repo.IsKeyOf(rec.Key, name) {
		return false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fileError(name, err)
	}
	if st := statOf(fi); st != rec.Stat || st == (fileStat{}) {
		// Not provably the same version of the file: compare the bytes.
		raw, err := os.ReadFile(path)
		if err != nil {
			return false, fileError(name, err)
		}
		sum := sha256.Sum256(raw)
		if int64(len(raw)) != rec.Size || hex.EncodeToString(sum[:]) != rec.SHA256 {
			p.Log.Warn("push-ahead record does not match the file; pushing again", "file", name)
			return false, nil
		}
	}
	obj, err := p.Repo.HeadWAL(ctx, rec.Key)
	if err != nil || obj.SHA256 != rec.SHA256 {
		p.Log.Warn("push-ahead record not confirmed by the repository; pushing again", "file", name, "err", err)
		return false, nil
	}
	return true, nil
}

// recordAhead leaves a record for each file pushed ahead successfully.
func (p *Pusher) recordAhead(walDir, pushedDir string, results []pushResult) {
	if len(results) == 0 {
		return
	}
	own := spool.OwnerOf(walDir)
	if own.MkdirAll(filepath.Dir(pushedDir), pushedDir) != nil {
		return
	}
	for _, r := range results {
		if r.err != nil {
			continue
		}
		rec := pushedRecord{Repo: p.Repo.String(), Key: r.key, SHA256: r.sha, Size: int64(r.in), Stat: r.stat}
		// Not fsynced: a record lost in a crash only costs a re-push.
		own.WriteRecord(filepath.Join(pushedDir, r.name), mustJSON(rec))
	}
}

// readyFiles lists up to limit WAL files waiting in archive_status, other
// than current and those already pushed ahead, in the order PostgreSQL's
// archiver takes them: timeline history files first, then by name.
func readyFiles(walDir, current string, limit int, pushedDir string) []string {
	ents, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || n == current {
			continue
		}
		if _, err := wal.Classify(n); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(pushedDir, n)); err == nil {
			continue
		}
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		hi, hj := strings.HasSuffix(names[i], ".history"), strings.HasSuffix(names[j], ".history")
		if hi != hj {
			return hi
		}
		return names[i] < names[j]
	})
	if len(names) > limit {
		names = names[:limit]
	}
	return names
}

// sweepSpool bounds the spool: push-ahead records whose WAL file is gone
// or that are a day old, and the prefetch directory once recovery has
// ended (while it goes on, as on a standby archiving with
// archive_mode=always, only prefetched files that recovery left behind).
func (p *Pusher) sweepSpool(walDir, sdir string) {
	sweep(filepath.Join(sdir, "pushed"), func(name string, fi os.FileInfo) bool {
		if inProgress(name) { // a record being written, or a dead writer's
			return olderThan(fi, orphanAge)
		}
		if olderThan(fi, 24*time.Hour) {
			return true
		}
		_, err := os.Stat(filepath.Join(walDir, name))
		return errorsIsNotExist(err)
	})
	if !tidySpool(walDir, sdir) {
		sweepPrefetch(filepath.Join(sdir, "prefetch"), 10*time.Minute)
	}
	// Earlier versions cached the repository identity here; the
	// repository is the only source of it now.
	os.Remove(filepath.Join(sdir, "identity.json"))
}
