// Package repo is the walsnap repository layout on top of a storage.Store:
// where WAL files, history files and backups live, the repository identity
// (walsnap.json), and the metadata every WAL object carries.
package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

// FormatVersion is the repository format this build writes and reads.
const FormatVersion = 1

// IdentityKey is the key of the repository identity object.
const IdentityKey = "walsnap.json"

// Metadata keys carried by every WAL object.
const (
	MetaSHA256  = "walsnap-sha256"   // hex SHA-256 of the raw (uncompressed) bytes
	MetaRawSize = "walsnap-raw-size" // raw size in bytes
	MetaCodec   = "walsnap-codec"    // codec name
)

// Identity ties a repository to one PostgreSQL cluster.
type Identity struct {
	FormatVersion int       `json:"format_version"`
	SystemID      uint64    `json:"system_identifier,string"`
	SegmentSize   uint64    `json:"wal_segment_size"`
	PGMajor       int       `json:"pg_major"`
	CreatedAt     time.Time `json:"created_at"`
}

// Repo is a walsnap repository.
type Repo struct {
	store storage.Store
}

// New wraps a store as a repository.
func New(s storage.Store) *Repo { return &Repo{store: s} }

// Store returns the underlying store.
func (r *Repo) Store() storage.Store { return r.store }

// String names the repository for logs (no credentials).
func (r *Repo) String() string { return r.store.String() }

// Errors of the storage contract, for callers that speak only to repo.
var (
	ErrNotExist = storage.ErrNotExist // no such object (wraps fs.ErrNotExist)
	ErrExists   = storage.ErrExists   // a write found the name taken; nothing was overwritten
)

// ErrNoIdentity means the repository has no walsnap.json yet.
var ErrNoIdentity = errors.New("repository not initialised (no walsnap.json yet)")

// Identity reads walsnap.json. It returns ErrNoIdentity when absent.
func (r *Repo) Identity(ctx context.Context) (Identity, error) {
	rc, _, err := r.store.Get(ctx, IdentityKey)
	if errors.Is(err, storage.ErrNotExist) {
		return Identity{}, ErrNoIdentity
	}
	if err != nil {
		return Identity{}, fmt.Errorf("read repository identity: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return Identity{}, fmt.Errorf("read repository identity: %w", err)
	}
	return ParseIdentity(data)
}

// ParseIdentity decodes and checks walsnap.json.
func ParseIdentity(data []byte) (Identity, error) {
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return Identity{}, fmt.Errorf("repository identity: %w", err)
	}
	if id.FormatVersion != FormatVersion {
		return Identity{}, fmt.Errorf("repository format version %d is not supported by this walsnap (wants %d)", id.FormatVersion, FormatVersion)
	}
	if id.SystemID == 0 || !wal.ValidSegmentSize(id.SegmentSize) {
		return Identity{}, fmt.Errorf("repository identity is invalid: system id %d, segment size %d", id.SystemID, id.SegmentSize)
	}
	return id, nil
}

// InitIdentity writes walsnap.json unless it exists, and returns the
// identity the repository ends up with: want, or the one already there
// (which the caller must compare with what it expected).
func (r *Repo) InitIdentity(ctx context.Context, want Identity) (Identity, error) {
	want.FormatVersion = FormatVersion
	if want.CreatedAt.IsZero() {
		want.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	data, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	data = append(data, '\n')
	err = r.store.PutIfAbsent(ctx, IdentityKey, bytes.NewReader(data), int64(len(data)), nil)
	if errors.Is(err, storage.ErrExists) {
		return r.Identity(ctx)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("write repository identity: %w", err)
	}
	return want, nil
}

// CheckSame returns an error naming the difference when got is not the
// repository of the cluster described by want.
func (id Identity) CheckSame(want Identity) error {
	if id.SystemID != want.SystemID {
		return fmt.Errorf("repository belongs to database system %d, not %d: refusing to mix clusters in one repository", id.SystemID, want.SystemID)
	}
	if id.SegmentSize != want.SegmentSize {
		return fmt.Errorf("repository holds WAL segments of %d bytes, not %d", id.SegmentSize, want.SegmentSize)
	}
	return nil
}

// WALKey is the object key of a WAL file (segment, .partial, .backup or
// .history) stored with the codec suffix: history files at
// wal/<name><suffix>, the rest under their timeline at
// wal/<TLI>/<name><suffix>.
func WALKey(name, suffix string) string {
	if strings.HasSuffix(name, ".history") {
		return "wal/" + name + suffix
	}
	return "wal/" + name[:8] + "/" + name + suffix
}

// WALObject describes a stored WAL file.
type WALObject struct {
	Key     string
	Codec   compress.Codec
	SHA256  string
	RawSize int64
}

// walObject reads the metadata of a WAL object.
func walObject(info storage.ObjectInfo) (WALObject, error) {
	_, codec := compress.FromKey(info.Key)
	o := WALObject{Key: info.Key, Codec: codec, SHA256: info.Metadata[MetaSHA256]}
	n, err := strconv.ParseInt(info.Metadata[MetaRawSize], 10, 64)
	if err != nil || len(o.SHA256) != 64 || n < 0 {
		return WALObject{}, fmt.Errorf("%s: object has no valid walsnap checksum metadata", info.Key)
	}
	o.RawSize = n
	return o, nil
}

// WALMeta builds the metadata for a WAL object.
func WALMeta(sha256hex string, rawSize int, codec compress.Codec) map[string]string {
	return map[string]string{MetaSHA256: sha256hex, MetaRawSize: strconv.Itoa(rawSize), MetaCodec: codec.Name()}
}

// PutWAL stores the encoded bytes of the WAL file name (compressed with
// codec; sha256hex and rawSize describe the raw bytes) unless the
// repository already has an object at its key: then it returns the key and
// an error matching ErrExists, and the stored object is untouched.
func (r *Repo) PutWAL(ctx context.Context, name string, codec compress.Codec, enc []byte, sha256hex string, rawSize int) (string, error) {
	key := WALKey(name, codec.Suffix())
	return key, r.store.PutIfAbsent(ctx, key, bytes.NewReader(enc), int64(len(enc)), WALMeta(sha256hex, rawSize, codec))
}

// HeadWAL returns the metadata of the WAL object at key.
func (r *Repo) HeadWAL(ctx context.Context, key string) (WALObject, error) {
	info, err := r.store.Head(ctx, key)
	if err != nil {
		return WALObject{}, err
	}
	return walObject(info)
}

// OpenWAL opens a WAL file by name, trying the preferred codec's key first
// and then any other codec. It returns an error matching storage.ErrNotExist
// when the repository has no such file.
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
// matching storage.ErrNotExist.
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
