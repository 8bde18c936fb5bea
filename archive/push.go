package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

// Pusher archives WAL files into a repository.
type Pusher struct {
	Repo        *repo.Repo
	Codec       compress.Codec
	Concurrency int           // the background archiver's uploads at once (>= 1)
	Ahead       int           // how far the background archiver runs ahead (files; 0 = no archiver)
	SpoolDir    string        // "" = <pg_wal>/.walsnap
	Timeout     time.Duration // the archiver's bound per file (0: 5 minutes)
	// ArchiverIdle is how long the archiver waits for new .ready files
	// before it leaves while its server runs (0: archiverIdle; without a
	// server, at most archiverIdle).
	ArchiverIdle time.Duration
	Log          *slog.Logger
	// StartArchiver starts the background archiver for a WAL directory
	// (see RunArchiver) without waiting for it, lingering (ArchiverIdle)
	// or not; wal-push starts a detached walsnap process. Nil: no
	// archiver.
	StartArchiver func(walDir string, linger bool) error
	// Settings is the callstamp of the settings this archiver runs with,
	// and LogHint how it logs; both go into its records, so that
	// walsnap-pg can answer a call with the same settings from them.
	Settings string
	LogHint  walrec.Log
	// Restamp, in the archiver, takes the settings stamp of the call that
	// started it again; when it differs from Settings, the archiver
	// leaves (nil: never).
	Restamp func() string
	// CallSettings is the settings stamp of a wal-push call: a record with
	// another makes the archiver that wrote it leave.
	CallSettings string
}

// ErrConflict means the repository already holds a different file under
// the same name; it is never overwritten.
var ErrConflict = errors.New("already archived with different content")

type pushResult struct {
	name      string
	stat      walrec.Stat
	key       string
	sha       string
	in, out   int
	existed   bool
	elapsed   time.Duration
	err       error
	pushedFor string        // "" for the requested file, else pushed ahead
	id        repo.Identity // the repository identity the file was checked against
	// stages: reading the file, hashing (SHA-256), compressing and the
	// repository's PUT; hashing and compressing run at the same time.
	readT, hashT, encT, putT time.Duration
	// callWaitT is how long the archiver held the prepared file until a
	// call asked for it (not part of elapsed).
	callWaitT time.Duration
}

// Push archives the WAL file at path (as given by %p: relative to PGDATA
// or absolute). It returns nil only when the repository holds the file's
// exact bytes. A file the background archiver archived is confirmed from
// its record; one it is archiving now is waited for; otherwise the call
// uploads the file itself, then starts the archiver if a backlog waits.
func (p *Pusher) Push(ctx context.Context, path string) error {
	start := time.Now()
	name := filepath.Base(path)
	if _, err := wal.Classify(name); err != nil {
		return err
	}
	walDir := filepath.Dir(path)
	sdir := spool.Dir(p.SpoolDir, walDir)
	pushedDir := filepath.Join(sdir, walrec.PushedDir)
	p.sweepSpool(walDir, sdir)

	done, err := p.pushedAhead(ctx, pushedDir, path, name)
	if err == nil && !done {
		// A running archiver takes a new file the moment it is ready:
		// let it, rather than upload the same file twice.
		walrec.AwaitPickup(spool.OwnerOf(walDir), sdir, walDir, name)
		if werr := p.waitArchiver(ctx, pushedDir, name); werr != nil {
			p.Log.Warn("pushing the file here", "file", name, "err", werr)
		}
		done, err = p.pushedAhead(ctx, pushedDir, path, name)
	}
	if err != nil {
		return err
	}
	if done {
		p.Log.Info("archived (by the background archiver)", "file", name, "ms", time.Since(start).Milliseconds())
	} else {
		// Keep the archiver off the file while the call uploads it (when
		// the spool can be had: the upload does not depend on it), and no
		// longer ask it for the file.
		if own := spool.OwnerOf(walDir); p.Ahead > 0 && own.MkdirAll(sdir, pushedDir) == nil {
			if release, err := claim(own, pushedDir, name); err == nil {
				defer release()
			}
			defer os.Remove(filepath.Join(pushedDir, name+walrec.CallSuffix))
		}
		// The identity is read from the repository on every call (never
		// from a local cache, which could outlive it), while the file is
		// read and compressed.
		r := p.pushOne(ctx, path, identityOf(ctx, p.Repo))
		p.report(r)
		if r.err != nil {
			return r.err
		}
	}
	p.maybeStartArchiver(walDir, sdir, pushedDir, name)
	return nil
}

// maybeStartArchiver starts the background archiver unless one runs,
// when files other than the one just archived wait (it drains them), or
// when PostgreSQL's archiver made the call: then the archiver lingers
// (ArchiverIdle) to take the server's next file the moment it is ready.
// A call by hand on a lone file starts none, and none made by hand
// lingers (its caller may be waiting for the output it shares).
func (p *Pusher) maybeStartArchiver(walDir, sdir, pushedDir, current string) {
	if p.Ahead <= 0 || p.StartArchiver == nil || archiverRunning(sdir) {
		return
	}
	forServer := pg.CalledByArchiver()
	if !forServer && len(readyFiles(walDir, current, 1, pushedDir)) == 0 {
		return
	}
	if err := p.StartArchiver(walDir, forServer); err != nil {
		p.Log.Warn("cannot start the background archiver", "err", err)
	}
}

func (p *Pusher) report(r pushResult) {
	attrs := []any{"file", r.name, "bytes_in", r.in, "bytes_out", r.out, "ms", r.elapsed.Milliseconds()}
	if r.err == nil {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		attrs = append(attrs, "read_ms", ms(r.readT), "sha256_ms", ms(r.hashT), "compress_ms", ms(r.encT), "put_ms", ms(r.putT))
		if r.callWaitT > 0 {
			attrs = append(attrs, "call_wait_ms", ms(r.callWaitT))
		}
	}
	if r.pushedFor != "" {
		attrs = append(attrs, "ahead_of", r.pushedFor)
	}
	switch {
	case r.err != nil && r.pushedFor != "":
		// PostgreSQL will ask for this file itself and see the error then.
		p.Log.Warn("background archiver: push failed", append(attrs, "err", r.err)...)
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
func (p *Pusher) pushOne(ctx context.Context, path string, ident func() (repo.Identity, error)) pushResult {
	f := p.prepare(ctx, path, ident)
	if f.res.err != nil {
		return f.res
	}
	return p.upload(ctx, f)
}

// preparedFile is a file read, hashed, compressed and validated: what
// remains is its upload.
type preparedFile struct {
	res pushResult
	enc []byte
	// took is the time prepare spent on it.
	took time.Duration
}

// prepare reads, validates, hashes and compresses one file (res.err says
// why it cannot be uploaded).
func (p *Pusher) prepare(ctx context.Context, path string, ident func() (repo.Identity, error)) (f preparedFile) {
	start := time.Now()
	res := &f.res
	res.name = filepath.Base(path)
	defer func() {
		f.took = time.Since(start)
		if res.err != nil {
			res.elapsed = f.took
			res.err = fileError(res.name, res.err)
		}
	}()
	t0 := time.Now()
	data, stat, err := readFile(path)
	if err != nil {
		res.err = err
		return f
	}
	res.in = len(data)
	res.readT = time.Since(t0)

	// Hash and compress while the identity arrives, and the stat of the
	// bytes read is proven; nothing is uploaded before the file is
	// validated against the identity.
	var sum [32]byte
	var encErr error
	var wg sync.WaitGroup
	t1 := time.Now()
	wg.Go(func() { res.stat = stat() })
	wg.Go(func() { sum = sha256.Sum256(data); res.hashT = time.Since(t1) })
	wg.Go(func() { f.enc, encErr = p.Codec.Encode(nil, data); res.encT = time.Since(t1) })
	id, err := ident()
	if err == nil {
		err = p.validate(ctx, res.name, data, &id)
	}
	if err == nil {
		// A repository that expects encryption refuses a host without
		// recipients; one with recipients marks it so.
		id, err = p.Repo.CheckEncryption(ctx, id)
	}
	wg.Wait()
	readBuffers.Put(&data)
	res.id = id
	if err == nil {
		err = encErr
	}
	res.err = err
	res.sha = hex.EncodeToString(sum[:])
	res.out = len(f.enc)
	return f
}

// upload stores a prepared file in the repository, or confirms that the
// repository holds its exact bytes already.
func (p *Pusher) upload(ctx context.Context, f preparedFile) (res pushResult) {
	res = f.res
	start := time.Now()
	defer func() {
		res.elapsed = f.took + time.Since(start)
		if res.err != nil {
			res.err = fileError(res.name, res.err)
		}
	}()
	var err error
	res.key, err = p.Repo.PutWAL(ctx, res.name, p.Codec, f.enc, res.sha, res.in)
	res.putT = time.Since(start)
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

// readFile reads a whole file at once. The stat it returns identifies
// the bytes read (zero when none does) and may wait: a file changed within
// the current tick of the filesystem's clock could change again without a
// new ctime, so then the stat waits for the tick to pass and reads the
// file again to compare (run it beside the hashing and compression).
func readFile(path string) ([]byte, func() walrec.Stat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	verifyLater := false
	defer func() {
		if !verifyLater {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	before := walrec.StatOf(fi)
	// Settled now, before the read: any change from here on gets a new
	// ctime.
	settled := walrec.Settled(before)
	data := readBuffer(int(fi.Size()))
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	// A file that changed while being read has a new ctime now.
	after, err := f.Stat()
	switch {
	case err != nil:
		return nil, nil, err
	case walrec.StatOf(after) != before:
		// Unknown version: a record will be checked by hash.
		return data, func() walrec.Stat { return walrec.Stat{} }, nil
	case settled:
		return data, func() walrec.Stat { return before }, nil
	}
	verifyLater = true
	return data, func() walrec.Stat {
		defer f.Close()
		if !walrec.Settle(before) || !sameBytes(f, data) {
			return walrec.Stat{}
		}
		if fi, err := f.Stat(); err != nil || walrec.StatOf(fi) != before {
			return walrec.Stat{}
		}
		return before
	}, nil
}

// readBuffers keeps the buffers segments were read into for the next
// ones: a fresh 16 MiB allocation costs page faults and zeroing each time.
var readBuffers sync.Pool // *[]byte

// readBuffer returns a buffer of n bytes, one from readBuffers if it fits.
func readBuffer(n int) []byte {
	if b, ok := readBuffers.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// sameBytes reports whether f holds exactly data.
func sameBytes(f *os.File, data []byte) bool {
	buf := make([]byte, 1<<20)
	for off := 0; off < len(data); off += len(buf) {
		chunk := data[off:min(off+len(buf), len(data))]
		if n, err := f.ReadAt(buf[:len(chunk)], int64(off)); n != len(chunk) || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], chunk) {
			return false
		}
	}
	// Nothing beyond.
	n, _ := f.ReadAt(buf[:1], int64(len(data)))
	return n == 0
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

// pushedAhead reports whether the background archiver archived name and
// the record still matches: same repository, same bytes on disk (the stat
// identity recorded when the file was read, else its SHA-256), and the
// object is in the repository — which the archiver confirmed when it
// wrote the record, so a fresh record (walrec.Trust) is believed and an
// older one is confirmed again with a HEAD. A record that fails any check
// is removed and the file is pushed normally.
func (p *Pusher) pushedAhead(ctx context.Context, pushedDir, path, name string) (bool, error) {
	recPath := filepath.Join(pushedDir, name)
	rec, rfi, err := walrec.ReadPushed(recPath, name)
	if rfi == nil {
		return false, nil // no record
	}
	os.Remove(recPath)
	if err != nil || rec.Repo != p.Repo.String() || !repo.IsKeyOf(rec.Key, name) {
		return false, nil
	}
	retireHelper(spool.OwnerOf(filepath.Dir(path)), filepath.Join(filepath.Dir(pushedDir), walrec.ArchiverRetire), rec.Settings, p.CallSettings)
	fi, err := os.Stat(path)
	if err != nil {
		return false, fileError(name, err)
	}
	if st := walrec.StatOf(fi); st != rec.Stat || st == (walrec.Stat{}) {
		// Not provably the same version of the file: compare the bytes.
		raw, err := os.ReadFile(path)
		if err != nil {
			return false, fileError(name, err)
		}
		sum := sha256.Sum256(raw)
		if int64(len(raw)) != rec.Size || hex.EncodeToString(sum[:]) != rec.SHA256 {
			p.Log.Warn("archiver record does not match the file; pushing again", "file", name)
			return false, nil
		}
	}
	if !olderThan(rfi, walrec.Trust) {
		return true, nil
	}
	obj, err := p.Repo.HeadWAL(ctx, rec.Key)
	if err != nil || obj.SHA256 != rec.SHA256 {
		p.Log.Warn("archiver record not confirmed by the repository; pushing again", "file", name, "err", err)
		return false, nil
	}
	return true, nil
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
	pushedDir := filepath.Join(sdir, walrec.PushedDir)
	sweep(pushedDir, func(name string, fi os.FileInfo) bool {
		if inProgress(name) || strings.HasSuffix(name, walrec.BusySuffix) {
			// A record being written or a file being archived, or a dead
			// writer's leftover.
			return orphaned(pushedDir, name, fi)
		}
		if olderThan(fi, 24*time.Hour) {
			return true
		}
		_, err := os.Stat(filepath.Join(walDir, strings.TrimSuffix(strings.TrimSuffix(name, failedSuffix), walrec.CallSuffix)))
		return errorsIsNotExist(err)
	})
	if !tidySpool(walDir, sdir) {
		sweepPrefetch(filepath.Join(sdir, walrec.PrefetchDir), 10*time.Minute)
	}
	// Earlier versions cached the repository identity here; the
	// repository is the only source of it now.
	os.Remove(filepath.Join(sdir, "identity.json"))
}
