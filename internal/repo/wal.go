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
	"sync"
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
// codec; sha256hex and rawSize describe the raw bytes), encrypted first
// when the handle encrypts, unless the repository already has an object
// at its key: then it returns the key and an error matching ErrExists, and
// the stored object is untouched.
func (r *Repo) PutWAL(ctx context.Context, name string, codec compress.Codec, enc []byte, sha256hex string, rawSize int) (string, error) {
	key := WALKey(name, codec.Suffix())
	meta := ObjectMeta{SHA256: sha256hex, RawSize: int64(rawSize), Codec: codec}
	body := enc
	m := meta.toMap()
	if r.Encrypts() {
		var err error
		if body, err = r.sealBytes(enc); err != nil {
			return key, fmt.Errorf("%s: %w", key, err)
		}
		sum := sha256.Sum256(body)
		meta.Encrypted, meta.StoredSHA256 = true, hex.EncodeToString(sum[:])
		m = meta.toMap()
		if strings.HasSuffix(name, ".history") {
			// Delete, verify and status follow timelines without the key.
			if entries, err := parseEncodedHistory(codec, enc); err == nil {
				m[metaHistory] = historyMeta(entries)
			}
		}
	}
	return key, r.store.PutIfAbsent(ctx, key, bytes.NewReader(body), int64(len(body)), m)
}

// parseEncodedHistory parses a timeline history file compressed with
// codec.
func parseEncodedHistory(codec compress.Codec, enc []byte) ([]wal.HistoryEntry, error) {
	dec, err := codec.NewReader(bytes.NewReader(enc))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	raw, err := io.ReadAll(io.LimitReader(dec, 1<<20))
	if err != nil {
		return nil, err
	}
	return wal.ParseHistory(raw)
}

// sealBytes encrypts data whole for the handle's recipients.
func (r *Repo) sealBytes(data []byte) ([]byte, error) {
	// age adds a header of a few hundred bytes and 16 bytes a 64 KiB chunk.
	buf := bytes.NewBuffer(make([]byte, 0, len(data)+len(data)>>12+1024))
	w, err := r.seal(buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("encrypt: %v", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %v", err)
	}
	return buf.Bytes(), nil
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

// getWAL gets a WAL file's object by name, trying the preferred codec's
// key first and then any other codec. It returns an error matching
// ErrNotExist when the repository has no such file.
func (r *Repo) getWAL(ctx context.Context, name string, preferred compress.Codec) (io.ReadCloser, storage.ObjectInfo, error) {
	key := WALKey(name, preferred.Suffix())
	rc, info, err := r.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		key, err = r.findWAL(ctx, name)
		if err != nil {
			return nil, info, err
		}
		rc, info, err = r.store.Get(ctx, key)
	}
	if err != nil {
		return nil, info, err
	}
	if info.Key == "" {
		info.Key = key
	}
	return rc, info, nil
}

// OpenWAL opens a WAL file by name for reading its raw bytes (decrypted
// and decompressed; see ObjectReader), trying the preferred codec's key
// first and then any other codec. It returns an error matching
// ErrNotExist when the repository has no such file, and one matching
// ErrNoKey when the file is encrypted and this handle cannot decrypt it.
func (r *Repo) OpenWAL(ctx context.Context, name string, preferred compress.Codec) (*ObjectReader, error) {
	rc, info, err := r.getWAL(ctx, name, preferred)
	if err != nil {
		return nil, err
	}
	return r.openObject(ctx, rc, info, false)
}

// DigestWAL reads the WAL file name whole, as verify --deep does (see
// Digest): its raw bytes go to w when this host can read them.
func (r *Repo) DigestWAL(ctx context.Context, name string, preferred compress.Codec, w io.Writer) (Digest, error) {
	rc, info, err := r.getWAL(ctx, name, preferred)
	if err != nil {
		return Digest{}, err
	}
	return r.digest(ctx, rc, info, w)
}

// ProbeWAL proves that this handle can read the WAL file name: for an
// encrypted file, that the identity opens it (only its header is read).
func (r *Repo) ProbeWAL(ctx context.Context, name string) error {
	o, err := r.OpenWAL(ctx, name, compress.Default)
	if err != nil {
		return err
	}
	return o.Close()
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

// CopyWAL writes the WAL file name, decrypted and decompressed, to w and
// verifies it against its recorded size and SHA-256. On a mismatch w has
// received unverified bytes and must be discarded. A missing file yields
// an error matching ErrNotExist; an encrypted one this handle cannot
// decrypt, one matching ErrNoKey.
func (r *Repo) CopyWAL(ctx context.Context, name string, preferred compress.Codec, w io.Writer) (WALObject, error) {
	o, err := r.OpenWAL(ctx, name, preferred)
	if err != nil {
		return WALObject{}, err
	}
	defer o.Close()
	obj := WALObject{Key: o.Key, ObjectMeta: o.ObjectMeta}
	// In 1 MiB pieces rather than io.Copy's 32 KiB: a sixteenth of the
	// writes and hash calls per segment (a fifth less CPU per download).
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{o}, *buf); err != nil {
		return obj, err
	}
	return obj, o.Verify()
}

// copyBuffers holds CopyWAL's buffers: a prefetcher copies WAL files one
// after another, and a fresh MiB each time is memory the kernel must
// fault in again.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// ReadWAL reads a small WAL file (a timeline history or backup history
// file) whole, verified.
func (r *Repo) ReadWAL(ctx context.Context, name string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := r.CopyWAL(ctx, name, compress.Default, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadHistory reads the entries of the timeline history file name: from
// the file itself, or, when it is encrypted and this handle has no
// identity, from its metadata (without the reasons).
func (r *Repo) ReadHistory(ctx context.Context, name string) ([]wal.HistoryEntry, error) {
	data, err := r.ReadWAL(ctx, name)
	if errors.Is(err, ErrNoKey) && !r.hasIdentity() {
		key, ferr := r.findWAL(ctx, name)
		if ferr != nil {
			return nil, ferr
		}
		info, herr := r.store.Head(ctx, key)
		if herr != nil {
			return nil, herr
		}
		if s := info.Metadata[metaHistory]; s != "" {
			return parseHistoryMeta(s)
		}
	}
	if err != nil {
		return nil, err
	}
	return wal.ParseHistory(data)
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
