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
// in the destination directory, fsynced, and hard-linked to their final name,
// which fails if the name exists: an object is never overwritten and never
// visible half-written. Temporary files that a crash leaves behind are not
// objects: List skips them, and keys may not name them.
package fs

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/walsnap/walsnap/internal/ctxio"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/walsnap/walsnap/internal/storage"
)

var _ storage.Store = (*Store)(nil)

const (
	magic     = "WSNPOBJ1"
	headerLen = len(magic) + 4 + 8
	// maxMetaLen bounds the metadata JSON; S3 allows 2 KiB of user metadata.
	maxMetaLen = 64 << 10
	tmpPrefix  = ".tmp-"
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
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind source: %w", err)
	}
	path := s.path(key)
	dir := filepath.Dir(path)
	tmp, err := s.createTemp(ctx, dir)
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // on error paths; after the link it is gone already
	defer tmp.Close()
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
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Link(tmpName, path); err != nil {
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
	return syncDir(dir) // makes the link and the unlink durable together
}

// createTemp creates a temporary file in dir, creating dir and its parents
// as needed. It retries when a concurrent Delete prunes them meanwhile.
func (s *Store) createTemp(ctx context.Context, dir string) (*os.File, error) {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := s.mkdirAll(dir)
		if err == nil {
			f, err := os.CreateTemp(dir, tmpPrefix+"*") // O_EXCL, mode 0600
			if err == nil {
				if err := s.own(f.Name()); err != nil {
					f.Close()
					os.Remove(f.Name())
					return nil, err
				}
				return f, nil
			}
			if !errors.Is(err, iofs.ErrNotExist) || attempt == 4 {
				return nil, err
			}
			continue
		}
		if !errors.Is(err, iofs.ErrNotExist) || attempt == 4 {
			return nil, err
		}
	}
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
			// Descend only where keys can match the prefix.
			if key == "." || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tmpPrefix) || !strings.HasPrefix(key, prefix) {
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
