package filebackup

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// BackupOptions configures Backup.
type BackupOptions struct {
	Repo     *repo.Repo
	BackupID string         // the parts are stored as this backup's payload
	Codec    compress.Codec // zero value: compress.Default
	// Streams is the number of tar streams written at once; 0 means
	// DefaultStreams.
	Streams int
	// PartSize is the raw tar size at which a part is finished and a new
	// one begun; 0 means DefaultPartSize. Files larger than PartSize are
	// split into pieces of PartSize bytes.
	//
	// Each stream holds its current part, compressed, in memory until it
	// is uploaded, so memory use is bounded by Streams × (PartSize / the
	// compression ratio), at worst (incompressible data) about
	// Streams × PartSize, plus a few MiB of codec and I/O buffers per
	// stream: 512 MiB at worst with the defaults.
	PartSize int64
	Log      *slog.Logger
	// Progress, if set, is called as raw bytes are read, with the bytes
	// done so far and the sum of the file sizes found by the scan. Calls are
	// serialized.
	Progress func(done, total int64)
}

// Result is what Backup stored.
type Result struct {
	Parts    []manifest.Part // sorted by key
	Files    int             // regular files stored
	BytesIn  int64           // bytes read from files
	BytesOut int64           // bytes stored (sum of the parts' StoredSize)
}

// testHookBeforeOpen, when set by a test, is called with a file's path
// after the scan and before the file is opened.
var testHookBeforeOpen func(path string)

// Backup stores the files of sources (see the package documentation) as
// parts of backup o.BackupID. Sources are stored one after the other, each
// by o.Streams workers that take files from a shared queue, largest first.
// If Backup fails, it deletes the parts it stored.
func Backup(ctx context.Context, o BackupOptions, sources []Source) (Result, error) {
	if err := o.normalize(); err != nil {
		return Result{}, err
	}
	roots, err := sourceRoots(sources)
	if err != nil {
		return Result{}, fmt.Errorf("file backup: %w", err)
	}

	start := time.Now()
	b := &backup{o: o, prog: &progress{fn: o.Progress}}
	scanned := make([][]*entry, len(sources))
	var files int
	for i, src := range sources {
		entries, err := scan(ctx, o.Log, src, roots)
		if err != nil {
			return Result{}, fmt.Errorf("file backup: %w", err)
		}
		scanned[i] = entries
		for _, e := range entries {
			if e.typ == tar.TypeReg {
				files++
				b.prog.total += e.size
			}
		}
	}
	o.Log.Info("file backup: scanned", "sources", len(sources), "files", files, "bytes", b.prog.total,
		"ms", time.Since(start).Milliseconds())

	for i := range o.Streams {
		w, err := newWorker(b, i)
		if err != nil {
			return Result{}, fmt.Errorf("file backup: %w", err)
		}
		b.workers = append(b.workers, w)
	}
	for i, src := range sources {
		if err := b.store(ctx, src.Tablespace, plan(scanned[i], o.PartSize)); err != nil {
			b.deleteParts(ctx)
			return Result{}, fmt.Errorf("file backup: %w", err)
		}
	}

	res := Result{Parts: b.parts, BytesIn: b.bytesIn.Load()}
	slices.SortFunc(res.Parts, func(a, b manifest.Part) int { return strings.Compare(a.Key, b.Key) })
	for _, p := range res.Parts {
		res.BytesOut += p.StoredSize
	}
	for _, entries := range scanned {
		for _, e := range entries {
			if e.stored.Load() {
				res.Files++
			}
		}
	}
	o.Log.Info("file backup: done", "parts", len(res.Parts), "files", res.Files, "bytes_in", res.BytesIn,
		"bytes_out", res.BytesOut, "ms", time.Since(start).Milliseconds())
	return res, nil
}

// sourceRoots checks that sources name distinct directories for distinct
// tablespaces and returns their roots by tablespace.
func sourceRoots(sources []Source) (map[uint32]fs.FileInfo, error) {
	roots := make(map[uint32]fs.FileInfo, len(sources))
	for _, src := range sources {
		if _, dup := roots[src.Tablespace]; dup {
			return nil, fmt.Errorf("tablespace %d given twice", src.Tablespace)
		}
		fi, err := os.Stat(src.Root)
		if err != nil {
			return nil, fmt.Errorf("tablespace %d: %w", src.Tablespace, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("tablespace %d: %s is not a directory", src.Tablespace, src.Root)
		}
		for ts, other := range roots {
			if os.SameFile(fi, other) {
				return nil, fmt.Errorf("tablespaces %d and %d have the same directory %s", ts, src.Tablespace, src.Root)
			}
		}
		roots[src.Tablespace] = fi
	}
	return roots, nil
}

func (o *BackupOptions) normalize() error {
	if o.Repo == nil {
		return errors.New("file backup: no repository")
	}
	if err := repo.CheckBackupID(o.BackupID); err != nil {
		return fmt.Errorf("file backup: %w", err)
	}
	if o.Codec.Name() == "" {
		o.Codec = compress.Default
	}
	if o.Streams == 0 {
		o.Streams = DefaultStreams
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Streams < 0 || o.PartSize < 0 {
		return fmt.Errorf("file backup: invalid streams %d or part size %d", o.Streams, o.PartSize)
	}
	o.Log = logger(o.Log)
	return nil
}

// item is a unit of work: a directory, a symlink, a whole file, or a piece
// of a file larger than PartSize.
type item struct {
	e     *entry
	off   int64 // where the piece starts
	n     int64 // bytes of the file stored in this item
	split bool  // a piece of a split file
}

// rawEstimate bounds the tar bytes that it takes: header (with PAX
// records for pieces and long names) and data padded to 512 bytes.
func (it item) rawEstimate() int64 { return 1536 + (it.n+511)&^511 }

// plan splits the files larger than partSize into pieces and orders the
// items largest first, so that the workers finish together.
func plan(entries []*entry, partSize int64) []item {
	var items []item
	for _, e := range entries {
		if e.typ != tar.TypeReg || e.size <= partSize {
			items = append(items, item{e: e, n: e.size})
			continue
		}
		for off := int64(0); off < e.size; off += partSize {
			items = append(items, item{e: e, off: off, n: min(partSize, e.size-off), split: true})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.e.rel, b.e.rel), cmp.Compare(a.off, b.off))
	})
	return items
}

// backup is one run of Backup.
type backup struct {
	o       BackupOptions
	prog    *progress
	workers []*worker
	bytesIn atomic.Int64

	mu    sync.Mutex
	parts []manifest.Part
}

// store runs the workers over the items of tablespace ts until the queue
// is empty and every worker has uploaded its last part.
func (b *backup) store(ctx context.Context, ts uint32, items []item) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Go(func() {
			if err := w.run(ctx, ts, items, &next); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// deleteParts removes the parts stored so far, after a failure.
func (b *backup) deleteParts(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, p := range b.parts {
		if err := b.o.Repo.DeletePart(ctx, b.o.BackupID, p.Key); err != nil {
			b.o.Log.Warn("file backup: could not delete a part of the failed backup", "key", p.Key, "err", err)
		}
	}
}

// worker writes one tar stream at a time, compressed into memory, and
// uploads it when it is full.
type worker struct {
	b    *backup
	id   int
	seq  int
	rbuf []byte
	prog progressBatch

	// The current part, if open: tw → obj (hash, compress, encrypt) → buf.
	open  bool
	ts    uint32
	tw    *tar.Writer
	obj   *repo.ObjectWriter
	buf   chunkBuffer
	files int
}

func newWorker(b *backup, id int) (*worker, error) {
	obj, err := b.o.Repo.NewObjectWriter(b.o.Codec)
	if err != nil {
		return nil, err
	}
	return &worker{b: b, id: id, obj: obj, rbuf: make([]byte, ioBufSize), prog: progressBatch{p: b.prog}}, nil
}

// run stores items from the shared queue until it is empty, then uploads
// the open part.
func (w *worker) run(ctx context.Context, ts uint32, items []item, next *atomic.Int64) error {
	defer w.prog.flush()
	for {
		i := next.Add(1) - 1
		if i >= int64(len(items)) {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.add(ctx, ts, items[i]); err != nil {
			return err
		}
	}
	if w.open {
		return w.finish(ctx)
	}
	return nil
}

// add writes one item into the current part, first finishing the part if
// the item would take it over PartSize, and after it if it is full.
func (w *worker) add(ctx context.Context, ts uint32, it item) error {
	var f *os.File
	if it.e.typ == tar.TypeReg {
		var err error
		if f, err = w.openFile(it.e); err != nil {
			return err
		}
		if f == nil { // vanished
			w.prog.add(it.n)
			return nil
		}
		defer f.Close()
	}
	partSize := w.b.o.PartSize
	if w.open && w.obj.Raw()+it.rawEstimate() > partSize {
		if err := w.finish(ctx); err != nil {
			return err
		}
	}
	if !w.open {
		if err := w.start(ts); err != nil {
			return err
		}
	}
	if err := w.tw.WriteHeader(header(it)); err != nil {
		return fmt.Errorf("tar header for %s: %w", it.e.abs, err)
	}
	if f != nil {
		if err := w.copyData(ctx, f, it); err != nil {
			return err
		}
		w.files++
		it.e.stored.Store(true)
	}
	if w.obj.Raw() >= partSize {
		return w.finish(ctx)
	}
	return nil
}

// openFile opens a regular file found by the scan, or returns nil if it
// has vanished since.
func (w *worker) openFile(e *entry) (*os.File, error) {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(e.abs)
	}
	// O_NONBLOCK: a FIFO that replaced the file must not block the open.
	f, err := os.OpenFile(e.abs, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		w.b.o.Log.Debug("file vanished before it was read, skipped", "path", e.abs)
		return nil, nil
	}
	if err != nil {
		return nil, err // an *fs.PathError, which names the file
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: was a regular file, now %s", e.abs, typeName(fi.Mode()))
	}
	return f, nil
}

// typeName names the type of a file mode.
func typeName(m fs.FileMode) string {
	switch m.Type() {
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symlink"
	case fs.ModeNamedPipe:
		return "a FIFO"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return "of type " + m.Type().String()
}

// header returns the tar header of an item.
func header(it item) *tar.Header {
	e := it.e
	h := &tar.Header{Typeflag: e.typ, Name: e.rel, Mode: int64(e.mode), ModTime: e.mtime, Linkname: e.link}
	switch {
	case e.typ == tar.TypeDir:
		h.Name += "/"
	case e.typ == tar.TypeReg:
		h.Size = it.n
	}
	if it.split {
		h.Format = tar.FormatPAX
		h.PAXRecords = map[string]string{
			paxOffset: strconv.FormatInt(it.off, 10),
			paxSize:   strconv.FormatInt(e.size, 10),
		}
	}
	return h
}

// copyData writes the item's bytes of f to the tar stream: what f holds
// of them, then zeros if it has shrunk since the scan.
func (w *worker) copyData(ctx context.Context, f *os.File, it item) error {
	off, end := it.off, it.off+it.n
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.ReadAt(w.rbuf[:min(int64(len(w.rbuf)), end-off)], off)
		if n > 0 {
			if _, err := w.tw.Write(w.rbuf[:n]); err != nil {
				return fmt.Errorf("write part: %w", err)
			}
			off += int64(n)
			w.b.bytesIn.Add(int64(n))
			w.prog.add(int64(n))
		}
		if errors.Is(err, io.EOF) {
			w.b.o.Log.Debug("file shrank while being read, padded with zeros", "path", it.e.abs,
				"size", it.e.size, "read_up_to", off)
			clear(w.rbuf)
			for off < end {
				n := min(int64(len(w.rbuf)), end-off)
				if _, err := w.tw.Write(w.rbuf[:n]); err != nil {
					return fmt.Errorf("write part: %w", err)
				}
				off += n
				w.prog.add(n)
			}
			break
		}
		if err != nil {
			return err // an *fs.PathError, which names the file
		}
	}
	return nil
}

// start begins a new part for tablespace ts.
func (w *worker) start(ts uint32) error {
	w.buf.Reset()
	if err := w.obj.Reset(&w.buf); err != nil {
		return fmt.Errorf("start part: %w", err)
	}
	w.open, w.ts, w.files = true, ts, 0
	w.tw = tar.NewWriter(w.obj)
	return nil
}

// finish completes the current part and uploads it.
func (w *worker) finish(ctx context.Context) error {
	w.open = false
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("finish part: %w", err)
	}
	meta, stored, err := w.obj.Close()
	if err != nil {
		return fmt.Errorf("finish part: %w", err)
	}
	o := w.b.o
	p := manifest.Part{
		Tablespace: w.ts,
		Files:      w.files,
		RawSize:    meta.RawSize,
		StoredSize: stored,
		SHA256:     meta.SHA256,
		Codec:      o.Codec.Name(),
	}
	if meta.Encrypted {
		p.Encryption, p.StoredSHA256 = repo.EncryptionAge, meta.StoredSHA256
	}
	name := fmt.Sprintf("part-%02d-%04d.tar%s", w.id, w.seq, o.Codec.Suffix())
	w.seq++
	start := time.Now()
	key, err := o.Repo.PutPart(ctx, o.BackupID, w.ts, name, w.buf.NewReader(), p.StoredSize, meta)
	if err != nil {
		return fmt.Errorf("upload part: %w", err)
	}
	p.Key = key
	w.b.mu.Lock()
	w.b.parts = append(w.b.parts, p)
	w.b.mu.Unlock()
	o.Log.Info("file backup: part stored", "key", p.Key, "files", p.Files, "raw", p.RawSize,
		"stored", p.StoredSize, "upload_ms", time.Since(start).Milliseconds())
	return nil
}

// progressBatch adds up one worker's progress and reports it in steps of
// at least ioBufSize bytes.
type progressBatch struct {
	p       *progress
	pending int64
}

func (b *progressBatch) add(n int64) {
	b.pending += n
	if b.pending >= ioBufSize {
		b.flush()
	}
}

func (b *progressBatch) flush() {
	b.p.add(b.pending)
	b.pending = 0
}

// chunkSize is the allocation unit of chunkBuffer.
const chunkSize = 1 << 20

// chunkBuffer is an in-memory file made of fixed-size chunks: unlike a
// bytes.Buffer, it never copies what it holds to grow, so a part of n bytes
// takes n bytes (rounded up to a chunk), and Reset keeps the chunks for the
// next part.
type chunkBuffer struct {
	chunks [][]byte
	size   int64
}

func (b *chunkBuffer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i, o := int(b.size/chunkSize), int(b.size%chunkSize)
		if i == len(b.chunks) {
			b.chunks = append(b.chunks, make([]byte, chunkSize))
		}
		c := copy(b.chunks[i][o:], p)
		p = p[c:]
		b.size += int64(c)
	}
	return n, nil
}

// Len is the number of bytes written since the last Reset.
func (b *chunkBuffer) Len() int64 { return b.size }

// Reset empties the buffer, keeping its chunks.
func (b *chunkBuffer) Reset() { b.size = 0 }

// NewReader returns a reader of the buffer's contents.
func (b *chunkBuffer) NewReader() io.ReadSeeker { return &chunkReader{b: b} }

type chunkReader struct {
	b   *chunkBuffer
	off int64
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.off >= r.b.size {
		return 0, io.EOF
	}
	i, o := int(r.off/chunkSize), int(r.off%chunkSize)
	n := copy(p, r.b.chunks[i][o:min(chunkSize, r.b.size-int64(i)*chunkSize)])
	r.off += int64(n)
	return n, nil
}

func (r *chunkReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.b.size
	case io.SeekStart:
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek: negative position %d", offset)
	}
	r.off = offset
	return offset, nil
}
