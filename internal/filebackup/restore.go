package filebackup

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// RestoreOptions configures Restore.
type RestoreOptions struct {
	Repo        *repo.Repo
	BackupID    string // the backup whose parts these are
	Concurrency int    // parts restored at once; 0 means DefaultConcurrency
	Log         *slog.Logger
	// Progress, if set, is called as raw tar bytes are extracted, with the
	// bytes done so far and the sum of the parts' RawSize. Calls are
	// serialized.
	Progress func(done, total int64)
}

// Restore extracts every part into dest[p.Tablespace] (0 = the new data
// directory), creating the destinations (0700) as needed. Directories are
// created 0700, files with their recorded permission bits (owner is the
// caller's business), symlinks as recorded. Every part's SHA-256 and sizes
// are checked against parts; a mismatch, a missing part, or an entry that
// would land outside its destination (an absolute path, "..", a path
// through a symlink) or on an existing file is an error naming the part and
// the entry. Restore finishes with syncfs(2) on each destination, so that
// the restored files are durable. After an error the destinations hold an
// incomplete copy and must be discarded.
func Restore(ctx context.Context, o RestoreOptions, parts []manifest.Part, dest map[uint32]string) error {
	if err := restore(ctx, o, parts, dest); err != nil {
		return fmt.Errorf("file restore: %w", err)
	}
	return nil
}

func restore(ctx context.Context, o RestoreOptions, parts []manifest.Part, dest map[uint32]string) error {
	if o.Repo == nil || o.BackupID == "" {
		return errors.New("no repository or backup id")
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Concurrency < 0 {
		return fmt.Errorf("invalid concurrency %d", o.Concurrency)
	}
	o.Log = logger(o.Log)
	r := &restorer{o: o, prog: &progress{fn: o.Progress}, roots: map[uint32]*root{}, pieces: map[pieceKey]*assembly{}}
	seen := map[string]bool{}
	for _, p := range parts {
		if _, err := compress.Parse(p.Codec); err != nil {
			return fmt.Errorf("part %s: %w", p.Key, err)
		}
		if _, ok := dest[p.Tablespace]; !ok {
			return fmt.Errorf("part %s: no destination for tablespace %d", p.Key, p.Tablespace)
		}
		if seen[p.Key] {
			return fmt.Errorf("part %s: listed twice", p.Key)
		}
		seen[p.Key] = true
		r.prog.total += p.RawSize
	}
	defer r.closeRoots()
	for ts, dir := range dest {
		rt, err := openRoot(dir)
		if err != nil {
			return fmt.Errorf("tablespace %d: %w", ts, err)
		}
		r.roots[ts] = rt
	}

	start := time.Now()
	queue := slices.SortedFunc(slices.Values(parts), func(a, b manifest.Part) int { return cmp.Compare(b.RawSize, a.RawSize) })
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(o.Concurrency, len(queue)) {
		wg.Go(func() {
			buf := make([]byte, ioBufSize)
			for i := next.Add(1) - 1; i < int64(len(queue)); i = next.Add(1) - 1 {
				if err := r.part(ctx, queue[i], buf); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for ts, rt := range r.roots {
		if err := unix.Syncfs(rt.fd); err != nil {
			return fmt.Errorf("tablespace %d: syncfs %s: %w", ts, rt.dir, err)
		}
	}
	o.Log.Info("file restore: done", "parts", len(parts), "bytes", r.prog.total, "ms", time.Since(start).Milliseconds())
	return nil
}

// restorer is one run of Restore.
type restorer struct {
	o     RestoreOptions
	prog  *progress
	roots map[uint32]*root

	mu     sync.Mutex
	pieces map[pieceKey]*assembly
}

// pieceKey names a split file.
type pieceKey struct {
	ts   uint32
	name string
}

// assembly is a split file being restored from its pieces: the first piece
// to arrive creates it at its full size.
type assembly struct {
	once sync.Once
	err  error
	size int64
}

// part downloads, checks and extracts one part.
func (r *restorer) part(ctx context.Context, p manifest.Part, buf []byte) error {
	start := time.Now()
	if err := r.extractPart(ctx, p, buf); err != nil {
		return fmt.Errorf("part %s: %w", p.Key, err)
	}
	r.o.Log.Info("file restore: part extracted", "key", p.Key, "raw", p.RawSize, "stored", p.StoredSize,
		"ms", time.Since(start).Milliseconds())
	return nil
}

func (r *restorer) extractPart(ctx context.Context, p manifest.Part, buf []byte) error {
	obj, err := r.o.Repo.OpenPart(ctx, r.o.BackupID, p.Key)
	if err != nil {
		return err
	}
	defer obj.Close()
	switch {
	case obj.Size != p.StoredSize:
		return fmt.Errorf("stored size is %d bytes, the backup recorded %d", obj.Size, p.StoredSize)
	case obj.Codec.Name() != p.Codec:
		return fmt.Errorf("stored with codec %s, the backup recorded %s", obj.Codec.Name(), p.Codec)
	case obj.Encrypted != (p.Encryption != ""):
		return fmt.Errorf("the stored object's encryption (%t) is not what the backup recorded (%q)", obj.Encrypted, p.Encryption)
	}
	raw := &progressReader{r: obj, prog: progressBatch{p: r.prog}}
	defer raw.prog.flush()
	x := &extractor{r: r, rt: r.roots[p.Tablespace], ts: p.Tablespace, tr: tar.NewReader(raw), buf: buf, dirFD: -1}
	defer x.closeDir()
	for {
		hdr, err := x.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := x.extract(hdr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// The rest of the stream (the end of the archive), and of the object.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	d, err := obj.Finish()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	switch {
	case d.Stored != p.StoredSize:
		return fmt.Errorf("read %d stored bytes, the backup recorded %d", d.Stored, p.StoredSize)
	case d.Raw != p.RawSize || d.SHA256 != p.SHA256:
		return fmt.Errorf("checksum mismatch: %d raw bytes with SHA-256 %s, the backup recorded %d bytes with %s",
			d.Raw, d.SHA256, p.RawSize, p.SHA256)
	}
	return nil
}

// extractor extracts the entries of one part below its destination.
type extractor struct {
	r   *restorer
	rt  *root
	ts  uint32
	tr  *tar.Reader
	buf []byte
	// The directory the last entry went into, kept open for the next.
	dirName string
	dirFD   int
}

// extract creates the current entry of x.tr.
func (x *extractor) extract(hdr *tar.Header) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		_, err := x.dir(name)
		return err
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("%w: symlink without a target", errBadEntry)
		}
		return x.at(name, func(dirfd int, base string) error {
			return unix.Symlinkat(hdr.Linkname, dirfd, base)
		})
	case tar.TypeReg:
		mode := os.FileMode(hdr.Mode) & os.ModePerm
		if _, split := hdr.PAXRecords[paxOffset]; split {
			return x.extractPiece(name, mode, hdr)
		}
		return x.at(name, func(dirfd int, base string) error {
			f, err := createFile(dirfd, base, name, mode)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := copyEntry(f, x.tr, x.buf); err != nil {
				return err
			}
			return f.Close()
		})
	}
	return fmt.Errorf("%w: unsupported type %q", errBadEntry, hdr.Typeflag)
}

// extractPiece writes a piece of a split file, creating the file at its
// full size if it is the first piece to arrive.
func (x *extractor) extractPiece(name string, mode os.FileMode, hdr *tar.Header) error {
	off, err1 := strconv.ParseInt(hdr.PAXRecords[paxOffset], 10, 64)
	size, err2 := strconv.ParseInt(hdr.PAXRecords[paxSize], 10, 64)
	if err1 != nil || err2 != nil || off < 0 || size < 0 || hdr.Size > size-off {
		return fmt.Errorf("%w: bad piece records %s=%q %s=%q for %d bytes", errBadEntry,
			paxOffset, hdr.PAXRecords[paxOffset], paxSize, hdr.PAXRecords[paxSize], hdr.Size)
	}
	a := x.r.assembly(pieceKey{x.ts, name}, size)
	a.once.Do(func() {
		a.err = x.at(name, func(dirfd int, base string) error {
			f, err := createFile(dirfd, base, name, mode)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Truncate(size); err != nil {
				return err
			}
			return f.Close()
		})
	})
	if a.err != nil {
		return a.err
	}
	if a.size != size {
		return fmt.Errorf("%w: piece of a %d-byte file, another piece says %d", errBadEntry, size, a.size)
	}
	return x.at(name, func(dirfd int, base string) error {
		fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if err := copyEntry(io.NewOffsetWriter(f, off), x.tr, x.buf); err != nil {
			return err
		}
		return f.Close()
	})
}

// assembly returns the record of the split file k, created with size if
// it is the first piece.
func (r *restorer) assembly(k pieceKey, size int64) *assembly {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.pieces[k]
	if a == nil {
		a = &assembly{size: size}
		r.pieces[k] = a
	}
	return a
}

// createFile creates base in dirfd, which must not exist, with mode
// (whatever the umask).
func createFile(dirfd int, base, name string, mode os.FileMode) (*os.File, error) {
	fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// at calls fn with a descriptor of the directory that holds name (created
// with its missing parents, 0700) and name's last element.
func (x *extractor) at(name string, fn func(dirfd int, base string) error) error {
	dir, base := path.Split(name)
	fd, err := x.dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	return x.rt.pathError(name, fn(fd, base))
}

// dir returns an O_PATH descriptor of the directory dir below the root,
// creating it and its missing parents (0700). "" is the root itself. The
// descriptor belongs to x.
func (x *extractor) dir(dir string) (int, error) {
	if x.dirFD >= 0 && x.dirName == dir {
		return x.dirFD, nil
	}
	fd, err := x.rt.mkdirAll(dir)
	if err != nil {
		return -1, err
	}
	x.closeDir()
	x.dirName, x.dirFD = dir, fd
	return fd, nil
}

func (x *extractor) closeDir() {
	if x.dirFD >= 0 {
		unix.Close(x.dirFD)
		x.dirFD = -1
	}
}

// entryName checks that an archive entry's name is a clean relative path
// without "." or ".." elements, and returns it without a trailing slash.
func entryName(name string) (string, error) {
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return "", fmt.Errorf("%w: empty name", errBadEntry)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("%w: absolute path", errBadEntry)
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("%w: NUL in name", errBadEntry)
	}
	for elem := range strings.SplitSeq(n, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return "", fmt.Errorf("%w: path element %q", errBadEntry, elem)
		}
	}
	return n, nil
}

// root is a restore destination, open for the duration of the restore.
// Opening it first also makes syncfs report the write-back errors of
// everything written below it since.
type root struct {
	dir string
	fd  int
}

func openRoot(dir string) (*root, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &root{dir: dir, fd: fd}, nil
}

func (r *restorer) closeRoots() {
	for _, rt := range r.roots {
		unix.Close(rt.fd)
	}
}

// resolveHow confines path resolution below a root: no "..", absolute
// paths or symlinks (archives never hold entries below a symlink).
var resolveHow = unix.OpenHow{
	Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
}

// mkdirAll creates the directory dir below rt and its missing parents
// (0700), and returns an O_PATH descriptor of it. "" is the root itself.
func (rt *root) mkdirAll(dir string) (int, error) {
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Openat2(rt.fd, dir, &resolveHow)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, rt.pathError(dir, err)
	}
	fd, err = unix.Openat2(rt.fd, ".", &resolveHow)
	if err != nil {
		return -1, rt.pathError(".", err)
	}
	for elem := range strings.SplitSeq(dir, "/") {
		if err := unix.Mkdirat(fd, elem, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, rt.pathError(dir, err)
		}
		next, err := unix.Openat2(fd, elem, &resolveHow)
		unix.Close(fd)
		if err != nil {
			return -1, rt.pathError(dir, err)
		}
		fd = next
	}
	return fd, nil
}

// pathError explains an error number about name below rt; other errors
// are returned as they are.
func (rt *root) pathError(name string, err error) error {
	errno, ok := err.(unix.Errno)
	if !ok {
		return err
	}
	switch errno {
	case unix.ELOOP:
		return fmt.Errorf("%w: %s is or passes through a symbolic link in %s", errBadEntry, name, rt.dir)
	case unix.EXDEV:
		return fmt.Errorf("%w: %s escapes %s", errBadEntry, name, rt.dir)
	case unix.EEXIST:
		return fmt.Errorf("%w: %s already exists in %s", errBadEntry, name, rt.dir)
	}
	return &os.PathError{Op: "restore", Path: path.Join(rt.dir, name), Err: err}
}

// copyEntry copies the data of the current entry of tr to w, telling read
// errors (a damaged part) from write errors (which name the file).
func copyEntry(w io.Writer, tr io.Reader, buf []byte) error {
	for {
		n, err := tr.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read part: %w", err)
		}
	}
}

// progressReader reports as progress the bytes read through it.
type progressReader struct {
	r    io.Reader
	prog progressBatch
}

func (h *progressReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.prog.add(int64(n))
	return n, err
}
