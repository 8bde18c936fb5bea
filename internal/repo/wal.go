package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

const walDir = "wal/"

// WALKey is the object key of a WAL file (segment, .partial, .backup or
// .history) stored with the codec suffix: history files at
// wal/<name><suffix>, the rest under their timeline at
// wal/<TLI>/<name><suffix>.
func WALKey(name, suffix string) string {
	if strings.HasSuffix(name, ".history") {
		return walDir + name + suffix
	}
	return walDir + name[:8] + "/" + name + suffix
}

// IsKeyOf reports whether key (a WALObject.Key) is where the WAL file
// name is stored, under any codec.
func IsKeyOf(key, name string) bool {
	if _, err := wal.Classify(name); err != nil {
		return false
	}
	base, codec := compress.FromKey(key)
	return base == WALKey(name, "") && key == WALKey(name, codec.Suffix())
}

// WALObject describes a stored WAL file. Key is the repository's handle
// for it, to be passed back (HeadWAL), never built by callers.
type WALObject struct {
	Key string
	ObjectMeta
}

// walObject reads the metadata of a WAL object.
func walObject(info storage.ObjectInfo) (WALObject, error) {
	m, err := objectMeta(info)
	if err != nil {
		return WALObject{}, err
	}
	return WALObject{Key: info.Key, ObjectMeta: m}, nil
}

// PutWAL stores the encoded bytes of the WAL file name (compressed with
// codec; sha256hex and rawSize describe the raw bytes) unless the
// repository already has an object at its key: then it returns the key and
// an error matching ErrExists, and the stored object is untouched.
func (r *Repo) PutWAL(ctx context.Context, name string, codec compress.Codec, enc []byte, sha256hex string, rawSize int) (string, error) {
	key := WALKey(name, codec.Suffix())
	meta := ObjectMeta{SHA256: sha256hex, RawSize: int64(rawSize), Codec: codec}
	return key, r.store.PutIfAbsent(ctx, key, bytes.NewReader(enc), int64(len(enc)), meta.toMap())
}

// HeadWAL returns the metadata of the WAL object at key.
func (r *Repo) HeadWAL(ctx context.Context, key string) (WALObject, error) {
	info, err := r.store.Head(ctx, key)
	if err != nil {
		return WALObject{}, err
	}
	if info.Key == "" {
		info.Key = key
	}
	return walObject(info)
}

// HasWAL reports whether the repository holds the WAL file name (under any
// codec). A .backup or .partial file of the same segment does not count.
func (r *Repo) HasWAL(ctx context.Context, name string) (bool, error) {
	_, err := r.findWAL(ctx, name)
	if errors.Is(err, storage.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// OpenWAL opens a WAL file by name, trying the preferred codec's key first
// and then any other codec. It returns an error matching ErrNotExist when
// the repository has no such file.
func (r *Repo) OpenWAL(ctx context.Context, name string, preferred compress.Codec) (io.ReadCloser, WALObject, error) {
	key := WALKey(name, preferred.Suffix())
	rc, info, err := r.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		key, err = r.findWAL(ctx, name)
		if err != nil {
			return nil, WALObject{}, err
		}
		rc, info, err = r.store.Get(ctx, key)
	}
	if err != nil {
		return nil, WALObject{}, err
	}
	if info.Key == "" {
		info.Key = key
	}
	o, err := walObject(info)
	if err != nil {
		rc.Close()
		return nil, WALObject{}, err
	}
	return rc, o, nil
}

// findWAL lists the keys a WAL file could have under any codec.
func (r *Repo) findWAL(ctx context.Context, name string) (string, error) {
	base := WALKey(name, "")
	objs, err := r.store.List(ctx, base)
	if err != nil {
		return "", err
	}
	for _, suffix := range compress.Suffixes() {
		for _, o := range objs {
			if o.Key == base+suffix {
				return o.Key, nil
			}
		}
	}
	return "", fmt.Errorf("%s: %w", name, storage.ErrNotExist)
}

// CopyWAL writes the WAL file name, decompressed, to w and verifies it
// against its recorded size and SHA-256. On a mismatch w has received
// unverified bytes and must be discarded. A missing file yields an error
// matching ErrNotExist.
func (r *Repo) CopyWAL(ctx context.Context, name string, preferred compress.Codec, w io.Writer) (WALObject, error) {
	rc, obj, err := r.OpenWAL(ctx, name, preferred)
	if err != nil {
		return obj, err
	}
	defer rc.Close()
	dec, err := obj.Codec.NewReader(rc)
	if err != nil {
		return obj, fmt.Errorf("%s: %w", obj.Key, err)
	}
	defer dec.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), dec)
	if err != nil {
		return obj, fmt.Errorf("%s: read/decompress: %w", obj.Key, err)
	}
	if n != obj.RawSize {
		return obj, fmt.Errorf("%s: %d bytes after decompression, metadata says %d", obj.Key, n, obj.RawSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != obj.SHA256 {
		return obj, fmt.Errorf("%s: checksum mismatch: sha256 %s, metadata says %s", obj.Key, got, obj.SHA256)
	}
	return obj, nil
}

// ReadWAL reads a small WAL file (a timeline history or backup history
// file) whole, verified.
func (r *Repo) ReadWAL(ctx context.Context, name string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := r.CopyWAL(ctx, name, compress.Default, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WALFile is a WAL file found in the repository by ListWAL.
type WALFile struct {
	Name    string       // PostgreSQL's file name, e.g. 000000010000000000000003
	Kind    wal.FileKind // segment, partial, backup history or timeline history
	TLI     uint32       // the timeline in the name
	Codec   compress.Codec
	Size    int64 // stored bytes
	ModTime time.Time
	key     string
}

// ListWAL lists the WAL files of timeline tli (0: of every timeline), and
// the timeline history files, sorted by name. Objects under wal/ that are
// not WAL files by name are skipped.
func (r *Repo) ListWAL(ctx context.Context, tli uint32) ([]WALFile, error) {
	prefix := walDir
	if tli != 0 {
		prefix = fmt.Sprintf("%s%08X/", walDir, tli)
	}
	objs, err := r.store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list WAL: %w", err)
	}
	var out []WALFile
	for _, o := range objs {
		if f, ok := walFileOf(o); ok {
			out = append(out, f)
		}
	}
	if tli != 0 {
		hist, err := r.store.List(ctx, walDir+fmt.Sprintf("%08X.history", tli))
		if err != nil {
			return nil, fmt.Errorf("list WAL: %w", err)
		}
		for _, o := range hist {
			if f, ok := walFileOf(o); ok {
				out = append(out, f)
			}
		}
	}
	slices.SortFunc(out, func(a, b WALFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// walFileOf recognises a WAL object by its key.
func walFileOf(o storage.ObjectInfo) (WALFile, bool) {
	base, codec := compress.FromKey(o.Key)
	name := base[strings.LastIndex(base, "/")+1:]
	kind, err := wal.Classify(name)
	if err != nil || WALKey(name, codec.Suffix()) != o.Key {
		return WALFile{}, false
	}
	var tli uint32
	fmt.Sscanf(name[:8], "%08X", &tli)
	return WALFile{Name: name, Kind: kind, TLI: tli, Codec: codec, Size: o.Size, ModTime: o.ModTime, key: o.Key}, true
}

// DeleteWAL removes a WAL file that ListWAL returned.
func (r *Repo) DeleteWAL(ctx context.Context, f WALFile) error {
	if f.key == "" {
		return fmt.Errorf("delete WAL %s: not a listed file", f.Name)
	}
	return r.store.Delete(ctx, f.key)
}
