// Package repo is the walsnap repository: the only code that knows where
// things live in the store and the only user of storage.Store above the
// backends. Everything above it speaks in repository terms (the identity,
// WAL files by name, backups by id, their manifests and payload parts, the
// backup lease) and never in keys or prefixes.
//
// Layout (DESIGN.md):
//
//	walsnap.json                          the identity: system id, segment size, PG major, format
//	wal/<TLI>/<segment|.partial|.backup>  WAL files, codec suffix appended
//	wal/<TLI>.history                     timeline history files, codec suffix appended
//	backups/<id>/manifest.json            written last: a backup exists once its manifest does
//	backups/<id>/data/<base|OID>/<part>   payload parts of the files provider
//	backups/<id>/marks/<pinned|deleting|drilled>  what changed after the manifest (marks.go)
//	status/<verify|drill>/<generation>.json      the results of verify and drill (results.go)
//	locks/backup-<generation>.json        the backup lease
package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/walsnap/walsnap/internal/buildinfo"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

// FormatVersion is the repository format this build writes and reads.
const FormatVersion = 1

// FormatEncrypted is the format of a repository that expects encryption
// (Identity.Encryption): walsnap releases that do not know encryption
// refuse it, rather than write plaintext into it or hand PostgreSQL
// ciphertext.
const FormatEncrypted = 2

// IdentityKey is the key of the repository identity object.
const IdentityKey = "walsnap.json"

// identityNextKey holds the new identity while walsnap.json is replaced
// (requireEncryption); readers fall back to it.
const identityNextKey = "walsnap.json.next"

// Identity ties a repository to one PostgreSQL cluster.
type Identity struct {
	FormatVersion int `json:"format_version"`
	// WalsnapVersion is the walsnap that created the repository (absent in
	// repositories created before walsnap recorded it).
	WalsnapVersion string    `json:"walsnap_version,omitempty"`
	SystemID       uint64    `json:"system_identifier,string"`
	SegmentSize    uint64    `json:"wal_segment_size"`
	PGMajor        int       `json:"pg_major"`
	CreatedAt      time.Time `json:"created_at"`
	// Encryption is "age" when the repository expects every new data
	// object encrypted (format FormatEncrypted): a writer without
	// recipients is refused. EncryptionSince is when that began.
	Encryption      string     `json:"encryption,omitempty"`
	EncryptionSince *time.Time `json:"encryption_since,omitempty"`
}

// Repo is a walsnap repository.
type Repo struct {
	store storage.Store
	keys  *keys      // SetEncryption; nil: none
	mu    sync.Mutex // serializes requireEncryption
}

// New wraps a store as a repository.
func New(s storage.Store) *Repo { return &Repo{store: s} }

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
	id, err := r.readIdentity(ctx, IdentityKey)
	if !errors.Is(err, ErrNoIdentity) {
		return id, err
	}
	// walsnap.json may be being replaced: the new one waits under
	// identityNextKey until it is in place, and is removed only after.
	if id, err := r.readIdentity(ctx, identityNextKey); !errors.Is(err, ErrNoIdentity) {
		return id, err
	}
	return r.readIdentity(ctx, IdentityKey)
}

// readIdentity reads and parses the identity at key; ErrNoIdentity when
// absent.
func (r *Repo) readIdentity(ctx context.Context, key string) (Identity, error) {
	rc, _, err := r.store.Get(ctx, key)
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
	switch {
	case id.FormatVersion == FormatVersion && id.Encryption == "":
	case id.FormatVersion == FormatEncrypted && id.Encryption == EncryptionAge:
	case id.FormatVersion == FormatVersion || id.FormatVersion == FormatEncrypted:
		return Identity{}, fmt.Errorf("repository identity is invalid: format version %d with encryption %q", id.FormatVersion, id.Encryption)
	default:
		return Identity{}, fmt.Errorf("repository format version %d is not supported by this walsnap (wants %d or %d)", id.FormatVersion, FormatVersion, FormatEncrypted)
	}
	if id.SystemID == 0 || !wal.ValidSegmentSize(id.SegmentSize) {
		return Identity{}, fmt.Errorf("repository identity is invalid: system id %d, segment size %d", id.SystemID, id.SegmentSize)
	}
	return id, nil
}

// marshalIdentity is walsnap.json's text.
func marshalIdentity(id Identity) ([]byte, error) {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// InitIdentity writes walsnap.json unless it exists, and returns the
// identity the repository ends up with: want, or the one already there
// (which the caller must compare with what it expected), with the
// encryption policy applied (see CheckEncryption). A new identity records
// this walsnap's version unless want names one, and expects encryption
// when this handle encrypts.
func (r *Repo) InitIdentity(ctx context.Context, want Identity) (Identity, error) {
	want.FormatVersion = FormatVersion
	if want.WalsnapVersion == "" {
		want.WalsnapVersion = buildinfo.Version()
	}
	if want.CreatedAt.IsZero() {
		want.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	if r.Encrypts() {
		since := want.CreatedAt
		want.FormatVersion, want.Encryption, want.EncryptionSince = FormatEncrypted, EncryptionAge, &since
	}
	data, err := marshalIdentity(want)
	if err != nil {
		return Identity{}, err
	}
	err = r.store.PutIfAbsent(ctx, IdentityKey, bytes.NewReader(data), int64(len(data)), nil)
	if errors.Is(err, storage.ErrExists) {
		id, err := r.Identity(ctx)
		if err != nil {
			return Identity{}, err
		}
		return r.CheckEncryption(ctx, id)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("write repository identity: %w", err)
	}
	return want, nil
}

// CheckEncryption applies the encryption policy for a writer to the
// repository identity id: a repository that expects encryption refuses a
// handle without recipients (ErrPlaintextWriter); one that does not yet is
// marked as expecting it when this handle encrypts (requireEncryption),
// and the new identity is returned. A zero id (no walsnap.json yet) is
// left to InitIdentity.
func (r *Repo) CheckEncryption(ctx context.Context, id Identity) (Identity, error) {
	switch {
	case id.SystemID == 0:
		return id, nil
	case id.Encryption != "" && !r.Encrypts():
		since := ""
		if id.EncryptionSince != nil {
			since = " since " + id.EncryptionSince.UTC().Format(time.RFC3339)
		}
		return id, fmt.Errorf("%w (walsnap.json: encryption %s%s), but encryption.recipients is not set on this host: "+
			"refusing to write unencrypted data; set encryption.recipients to the repository's age recipients", ErrPlaintextWriter, id.Encryption, since)
	case id.Encryption == "" && r.Encrypts():
		return r.requireEncryption(ctx, id)
	}
	return id, nil
}

// requireEncryption records in walsnap.json that the repository expects
// encryption from now on. walsnap.json is never written in place: the new
// identity is first stored under identityNextKey (which readers fall back
// to while walsnap.json is missing), then walsnap.json is removed and
// written anew, then the staging copy is removed. A writer without
// recipients that recreates a plain walsnap.json in between is undone.
func (r *Repo) requireEncryption(ctx context.Context, old Identity) (Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, err := r.readIdentity(ctx, IdentityKey); err == nil && cur.Encryption != "" {
		return cur, nil // done already, by this process or another
	}
	next := old
	since := time.Now().UTC().Truncate(time.Second)
	next.FormatVersion, next.Encryption, next.EncryptionSince = FormatEncrypted, EncryptionAge, &since
	data, err := marshalIdentity(next)
	if err != nil {
		return Identity{}, err
	}
	fail := func(err error) (Identity, error) {
		return Identity{}, fmt.Errorf("record in walsnap.json that the repository expects encryption: %w", err)
	}
	if err := r.store.PutIfAbsent(ctx, identityNextKey, bytes.NewReader(data), int64(len(data)), nil); err != nil && !errors.Is(err, storage.ErrExists) {
		return fail(err)
	}
	for range 5 {
		cur, err := r.readIdentity(ctx, IdentityKey)
		switch {
		case err == nil && cur.Encryption != "":
			r.store.Delete(ctx, identityNextKey)
			return cur, nil
		case err == nil:
			if err := cur.CheckSame(old); err != nil {
				return fail(err)
			}
			if err := r.store.Delete(ctx, IdentityKey); err != nil {
				return fail(err)
			}
		case !errors.Is(err, ErrNoIdentity):
			return fail(err)
		}
		err = r.store.PutIfAbsent(ctx, IdentityKey, bytes.NewReader(data), int64(len(data)), nil)
		if err == nil {
			r.store.Delete(ctx, identityNextKey)
			return next, nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return fail(err)
		}
	}
	return fail(errors.New("other writers keep recreating it"))
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
