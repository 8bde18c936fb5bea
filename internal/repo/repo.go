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
	"time"

	"github.com/walsnap/walsnap/internal/buildinfo"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

// FormatVersion is the repository format this build writes and reads.
const FormatVersion = 1

// IdentityKey is the key of the repository identity object.
const IdentityKey = "walsnap.json"

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
}

// Repo is a walsnap repository.
type Repo struct {
	store storage.Store
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
// (which the caller must compare with what it expected). A new identity
// records this walsnap's version unless want names one.
func (r *Repo) InitIdentity(ctx context.Context, want Identity) (Identity, error) {
	want.FormatVersion = FormatVersion
	if want.WalsnapVersion == "" {
		want.WalsnapVersion = buildinfo.Version()
	}
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
