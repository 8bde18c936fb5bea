// Package fs implements storage.Store on a local directory, for file:///
// repositories.
//
// Each object is one file at root/<key>. The file starts with an envelope
// that carries the object's metadata, so that an object can never be seen
// without it:
//
//	offset  size  content
//	0       8     magic "WSNPOBJ1"
//	8       4     N, length of the metadata JSON (uint32, big endian)
//	12      8     P, length of the payload (uint64, big endian)
//	20      N     metadata: a JSON object of strings, keys lower-case
//	20+N    P     payload
//
// A file whose size is not 20+N+P, or whose header does not parse, is
// reported as corrupt. Objects are written to a temporary file (".tmp-*")
// in root/.tmp-work, fsynced, and hard-linked to their final name, which
// fails if the name exists: an object is never overwritten and never
// visible half-written. Names starting with ".tmp-" are reserved: keys may
// not name them and List skips them.
//
// A writer holds an exclusive flock(2) on its temporary file from just
// after creating it until the file is unlinked, so a temporary that is not
// locked belongs to a writer that died (SIGKILL, crash) and is junk. Every
// put first sweeps root/.tmp-work (a directory holding only the temporaries
// of writes in progress, so this costs one small directory read): each
// temporary that is older than a minute and whose lock it can take is
// removed while that lock is held. A writer that finds its new temporary
// already unlinked (swept between its creation and its lock) starts over
// with another, so a live writer's temporary is never lost. List removes
// temporaries it passes in object directories (left there by earlier
// versions, which wrote them next to the object, or when the object
// directory is on another filesystem) once they are an hour old and
// unlocked.
package fs

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/ctxio"
	"github.com/walsnap/walsnap/internal/storage"
)

var _ storage.Store = (*Store)(nil)

const (
	magic     = "WSNPOBJ1"
	headerLen = len(magic) + 4 + 8
	// maxMetaLen bounds the metadata JSON; S3 allows 2 KiB of user metadata.
	maxMetaLen = 64 << 10
	tmpPrefix  = ".tmp-"
	// workDir (in root) holds the temporaries of puts in progress.
	workDir = tmpPrefix + "work"
)

// Temporaries whose writer is provably gone (no lock on them) are swept
// once they are this old: in the work directory, where every writer locks
// its temporary, the age only keeps sweepers off files being created; in
// object directories, where writers of earlier versions left unlocked
// temporaries, it is well beyond any call's deadline (push.timeout, default
// 5 minutes).
var (
	workTempAge   = time.Minute
	legacyTempAge = time.Hour
)

// Store is a repository in a local directory.
type Store struct {
	root     string
	uid, gid int // owner given to new files and directories; -1 = ours
}

// New returns a Store rooted at the absolute directory root, creating it
// (mode 0700) if needed.
//
// Run as root on a directory owned by another user (the postgres user, whose
// archive_command writes the same repository), the Store gives everything it
// creates to that owner, so that a backup or restore run as root never
// leaves files the archiver cannot read.
func New(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("fs store: root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("fs store: %w", err)
	}
	s := &Store{root: root, uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("fs store: %w", err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			s.uid, s.gid = int(st.Uid), int(st.Gid)
		}
	}
	return s, nil
}

// own gives a new file or directory to the repository's owner.
func (s *Store) own(path string) error {
	if s.uid < 0 {
		return nil
	}
	if err := os.Lchown(path, s.uid, s.gid); err != nil {
		return fmt.Errorf("fs store: chown %s: %w", path, err)
	}
	return nil
}

// String returns the repository URL, file:///path.
func (s *Store) String() string { return "file://" + s.root }

// PutIfAbsent implements storage.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := s.put(ctx, key, r, size, meta); err != nil {
		return fmt.Errorf("fs put %s: %w", key, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	hdr, err := encodeHeader(meta, size)
	if err != nil {
		return err
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	work := filepath.Join(s.root, workDir)
	sweepTemps(work, workTempAge)
	err = s.putVia(ctx, work, path, hdr, r, size)
	if errors.Is(err, syscall.EXDEV) {
		// The object directory is on another filesystem than the root
		// (a mount inside the repository): write next to the object.
		err = s.putVia(ctx, dir, path, hdr, r, size)
	}
	return err
}

// putVia writes the object through a locked temporary file in tmpDir and
// links it to path.
func (s *Store) putVia(ctx context.Context, tmpDir, path string, hdr []byte, r io.ReadSeeker, size int64) error {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind source: %w", err)
	}
	tmp, err := s.createTemp(ctx, tmpDir)
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	// The lock on tmp lasts until it is closed, after the unlink below
	// (or on an error path): the temporary is never seen unlocked while
	// this writer lives.
	defer tmp.Close()
	defer os.Remove(tmpName) // on error paths; after the link it is gone already
	if _, err := tmp.Write(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tmp, io.LimitReader(ctxio.Reader(ctx, r), size))
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if n != size {
		return fmt.Errorf("source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := s.link(tmpName, path); err != nil {
		if !errors.Is(err, iofs.ErrExist) {
			return err
		}
		if st, serr := os.Lstat(path); serr == nil && st.IsDir() {
			return fmt.Errorf("key is a directory of other keys: %w", err)
		}
		return storage.ErrExists
	}
	if err := os.Remove(tmpName); err != nil {
		return err
	}
	// Makes the link durable (and, when the temporary was in dir, its
	// unlink with it). A temporary whose unlink in the work directory is
	// lost in a crash is swept like any dead writer's.
	return syncDir(dir)
}

// link links tmp to path, creating path's directory and its parents as
// needed. It retries when a concurrent Delete prunes them meanwhile.
func (s *Store) link(tmp, path string) error {
	dir := filepath.Dir(path)
	for attempt := 1; ; attempt++ {
		if err := s.mkdirAll(dir); err != nil && (!errors.Is(err, iofs.ErrNotExist) || attempt == 4) {
			return err
		}
		err := os.Link(tmp, path)
		if err == nil || !errors.Is(err, iofs.ErrNotExist) || attempt == 4 {
			return err
		}
	}
}

// createTemp creates a temporary file in dir (creating dir and its parents
// as needed) and locks it. It retries when a concurrent Delete prunes dir
// meanwhile, and when a sweeper removed the new file before it was locked.
func (s *Store) createTemp(ctx context.Context, dir string) (*os.File, error) {
	for attempt := 1; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := s.tryCreateTemp(dir)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, errTempSwept):
			// Only with a sweeper in the instant between create and lock.
		case !errors.Is(err, iofs.ErrNotExist) || attempt == 4:
			return nil, err
		default:
			attempt++
		}
	}
}

var errTempSwept = errors.New("temporary file removed before it was locked")

// testHookTempCreated, when set by a test, runs between a temporary's
// creation and its lock.
var testHookTempCreated func(path string)

func (s *Store) tryCreateTemp(dir string) (*os.File, error) {
	if err := s.mkdirAll(dir); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*") // O_EXCL, mode 0600
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if err := s.own(f.Name()); err != nil {
		return fail(err)
	}
	if testHookTempCreated != nil {
		testHookTempCreated(f.Name())
	}
	// Blocks only while a sweeper holds the lock to unlink the file.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fail(fmt.Errorf("lock %s: %w", f.Name(), err))
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink == 0 {
		f.Close()
		return nil, errTempSwept
	}
	return f, nil
}

// sweepTemps removes the temporaries in dir left by dead writers: older
// than minAge and not locked. Errors are ignored: sweeping never fails a
// call.
func sweepTemps(dir string, minAge time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) && e.Type().IsRegular() {
			sweepTemp(filepath.Join(dir, e.Name()), minAge)
		}
	}
}

// sweepTemp removes the temporary file path if it is older than minAge and
// no process holds a lock on it. The removal happens under the sweeper's
// own exclusive lock, so no writer can lock it meanwhile, and a writer
// that created it just before checks after locking that it still exists.
// A file the sweeper cannot open (another user's) is left alone.
func sweepTemp(path string, minAge time.Duration) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < minAge {
		return false
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false // a live writer's
	}
	// The name must still be the file that was locked.
	if now, err := os.Lstat(path); err != nil || !os.SameFile(now, fi) {
		return false
	}
	if ffi, err := f.Stat(); err != nil || !os.SameFile(ffi, fi) {
		return false
	}
	return os.Remove(path) == nil
}

// mkdirAll creates dir (inside root) and its missing parents with mode 0700,
// fsyncing each parent that gained an entry.
func (s *Store) mkdirAll(dir string) error {
	rel, err := filepath.Rel(s.root, dir)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil
	}
	parent := s.root
	for elem := range strings.SplitSeq(rel, string(filepath.Separator)) {
		d := filepath.Join(parent, elem)
		err := os.Mkdir(d, 0o700)
		switch {
		case err == nil:
			if err := s.own(d); err != nil {
				return err
			}
			if err := syncDir(parent); err != nil {
				return err
			}
		case !errors.Is(err, iofs.ErrExist):
			return err
		}
		parent = d
	}
	return nil
}

// Get implements storage.Store. The reader is the object's file positioned
// at the payload, which lets io.Copy to another file use copy_file_range.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	f, info, err := s.open(ctx, key)
	if err != nil {
		return nil, storage.ObjectInfo{}, fmt.Errorf("fs get %s: %w", key, err)
	}
	return f, info, nil
}

// Head implements storage.Store.
func (s *Store) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	f, info, err := s.open(ctx, key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("fs head %s: %w", key, err)
	}
	f.Close()
	return info, nil
}

// open opens key's file, checks its envelope, decodes the metadata and
// leaves the file positioned at the payload.
func (s *Store) open(ctx context.Context, key string) (*os.File, storage.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) { // a parent is an object
			err = storage.ErrNotExist
		}
		return nil, storage.ObjectInfo{}, err
	}
	info, err := readHeader(f, key, true)
	if err != nil {
		f.Close()
		return nil, storage.ObjectInfo{}, err
	}
	return f, info, nil
}

// readHeader parses and checks the envelope of f. With withMeta, it decodes
// the metadata and leaves f positioned at the payload.
func readHeader(f *os.File, key string, withMeta bool) (storage.ObjectInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if !st.Mode().IsRegular() { // a directory: a key prefix, not an object
		return storage.ObjectInfo{}, storage.ErrNotExist
	}
	var hdr [headerLen]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("corrupt object file %s: short header: %w", f.Name(), err)
	}
	metaLen := int64(binary.BigEndian.Uint32(hdr[8:]))
	size := binary.BigEndian.Uint64(hdr[12:])
	switch {
	case string(hdr[:len(magic)]) != magic:
		return storage.ObjectInfo{}, fmt.Errorf("corrupt object file %s: bad magic %q", f.Name(), hdr[:len(magic)])
	case metaLen > maxMetaLen || size > uint64(st.Size()) || st.Size() != int64(headerLen)+metaLen+int64(size):
		return storage.ObjectInfo{}, fmt.Errorf("corrupt object file %s: %d bytes, header says %d+%d+%d",
			f.Name(), st.Size(), headerLen, metaLen, size)
	}
	info := storage.ObjectInfo{Key: key, Size: int64(size), ModTime: st.ModTime()}
	if !withMeta {
		return info, nil
	}
	buf := make([]byte, metaLen)
	if _, err := io.ReadFull(f, buf); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("corrupt object file %s: metadata: %w", f.Name(), err)
	}
	if err := json.Unmarshal(buf, &info.Metadata); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("corrupt object file %s: metadata: %w", f.Name(), err)
	}
	return info, nil
}

// encodeHeader returns the envelope for a payload of size bytes.
func encodeHeader(meta map[string]string, size int64) ([]byte, error) {
	lower := make(map[string]string, len(meta))
	for k, v := range meta {
		lower[strings.ToLower(k)] = v
	}
	js, err := json.Marshal(lower)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	if len(js) > maxMetaLen {
		return nil, fmt.Errorf("metadata is %d bytes, more than %d", len(js), maxMetaLen)
	}
	hdr := make([]byte, headerLen, headerLen+len(js))
	copy(hdr, magic)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(js)))
	binary.BigEndian.PutUint64(hdr[12:], uint64(size))
	return append(hdr, js...), nil
}

// List implements storage.Store. Size comes from each file's header; a file
// whose header is corrupt fails the listing.
func (s *Store) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := s.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("fs list %q: %w", prefix, err)
	}
	return objs, nil
}

func (s *Store) list(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	// Walk the deepest directory that the prefix names entirely.
	dir, _ := splitLast(prefix)
	var objs []storage.ObjectInfo
	err := filepath.WalkDir(s.path(dir), func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			// No such prefix, a parent that is an object, or deleted meanwhile.
			if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Descend only where keys can match the prefix, never into the
			// work directory.
			if key == "." || !strings.HasPrefix(d.Name(), tmpPrefix) && (strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/")) {
				return nil
			}
			return filepath.SkipDir
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			if d.Type().IsRegular() {
				sweepTemp(path, legacyTempAge)
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) { // deleted meanwhile
				return nil
			}
			return err
		}
		defer f.Close()
		info, err := readHeader(f, key, false)
		if err != nil {
			return err
		}
		objs = append(objs, info)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// WalkDir orders "a/b" before "a-c"; keys sort bytewise.
	slices.SortFunc(objs, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// Delete implements storage.Store. It also removes the parent directories
// that the deletion left empty.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.delete(ctx, key); err != nil {
		return fmt.Errorf("fs delete %s: %w", key, err)
	}
	return nil
}

func (s *Store) delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := s.path(key)
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return nil
	case err != nil:
		return err
	case st.IsDir(): // a key prefix, not an object
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		return err
	}
	// Prune empty parents. A concurrent put into one of them either keeps
	// it non-empty (ENOTEMPTY stops us) or re-creates it (see createTemp).
	for ; dir != s.root; dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// path maps a checked key (or key directory) to its file name.
func (s *Store) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// checkKey rejects keys that are not clean relative slash-separated paths,
// and keys that this store could confuse with its temporary files.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if err := checkPrefix(key); err != nil {
		return err
	}
	if _, last := splitLast(key); last == "" {
		return fmt.Errorf("invalid key %q: ends with /", key)
	}
	return nil
}

// checkPrefix rejects a list prefix (or key) that could name something
// outside the store or that is not in clean form. Its last element may be
// empty or partial.
func checkPrefix(prefix string) error {
	dir, last := splitLast(prefix)
	switch {
	case strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("invalid key %q: absolute", prefix)
	case strings.Contains(prefix, `\`):
		return fmt.Errorf("invalid key %q: contains a backslash", prefix)
	case strings.ContainsRune(prefix, 0):
		return fmt.Errorf("invalid key %q: contains a NUL byte", prefix)
	case last == "." || last == "..":
		return fmt.Errorf("invalid key %q: contains a %q element", prefix, last)
	case strings.HasPrefix(last, tmpPrefix):
		return fmt.Errorf("invalid key %q: %s names are reserved", prefix, tmpPrefix)
	}
	if dir == "" {
		return nil
	}
	for elem := range strings.SplitSeq(dir, "/") {
		switch elem {
		case "", ".", "..":
			return fmt.Errorf("invalid key %q: contains a %q element", prefix, elem)
		}
		if strings.HasPrefix(elem, tmpPrefix) {
			return fmt.Errorf("invalid key %q: %s names are reserved", prefix, tmpPrefix)
		}
	}
	return nil
}

// splitLast splits a key at its last slash: "a/b/c" → ("a/b", "c").
func splitLast(key string) (dir, last string) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", key
	}
	return key[:i], key[i+1:]
}

// syncDir fsyncs a directory, making its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
