// Package manifest is the format of the record of one base backup, which
// the repository stores last: a backup exists only once its manifest does.
// Every provider shares this record; what is particular to a provider is
// its payload, whose type is declared once, in providers.go, with the
// provider's name.
package manifest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/wal"
)

// FormatVersion is the manifest format this build writes and reads.
const FormatVersion = 1

// Status values.
const (
	StatusComplete = "complete" // usable for restore
	StatusPending  = "pending"  // data captured, provider still finishing (e.g. snapshots)
	StatusFailed   = "failed"   // kept for the record; never chosen for restore
	// StatusDeleting is never stored: the repository reports it for a
	// backup that retention has begun to delete (its payload may already
	// be gone). Restore, verify and retention treat it as gone.
	StatusDeleting = "deleting"
)

// Tablespace is a user tablespace of the backed-up cluster.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"` // absolute path at backup time
}

// Manifest describes one base backup.
type Manifest struct {
	FormatVersion int `json:"format_version"`
	// WalsnapVersion is the walsnap that took the backup (absent in
	// manifests written before walsnap recorded it).
	WalsnapVersion string       `json:"walsnap_version,omitempty"`
	ID             string       `json:"id"`
	Provider       Provider     `json:"provider"`
	Status         string       `json:"status"`
	Label          string       `json:"label"`
	StartLSN       wal.LSN      `json:"start_lsn"`
	StopLSN        wal.LSN      `json:"stop_lsn"`
	Timeline       uint32       `json:"timeline"`
	StartWAL       string       `json:"start_wal"` // segment holding StartLSN
	StopWAL        string       `json:"stop_wal"`  // segment holding StopLSN
	StartTime      time.Time    `json:"start_time"`
	StopTime       time.Time    `json:"stop_time"`
	PGVersion      int          `json:"pg_version"` // server_version_num
	SystemID       uint64       `json:"system_identifier,string"`
	SegmentSize    uint64       `json:"wal_segment_size"`
	FromStandby    bool         `json:"from_standby"`
	Host           string       `json:"host"`
	PGData         string       `json:"pgdata"`
	Tablespaces    []Tablespace `json:"tablespaces"`
	BackupLabel    string       `json:"backup_label"`   // exact text from pg_backup_stop
	TablespaceMap  string       `json:"tablespace_map"` // exact text from pg_backup_stop ("" when none)
	BytesIn        int64        `json:"bytes_in"`       // data read from the cluster
	BytesOut       int64        `json:"bytes_out"`      // data stored (0 for snapshots)
	Error          string       `json:"error,omitempty"`
	// Pinned is never stored: the repository reports whether the backup
	// is pinned (retention never deletes it), which can change after the
	// manifest is written.
	Pinned bool `json:"pinned,omitempty"`
	// Drilled is never stored either: when a walsnap drill last restored
	// the backup and passed (nil: never).
	Drilled *time.Time `json:"drilled,omitempty"`
	// Payload is the provider's own record (files: the parts; ebs: the
	// snapshots).
	Payload json.RawMessage `json:"payload"`
}

// PGMajor is the PostgreSQL major version of the backup.
func (m *Manifest) PGMajor() int { return m.PGVersion / 10000 }

// NewID returns a new backup id for a backup started at t: readable, safe
// in keys and tags, sortable by t to the millisecond, and unique, even for
// backups started in the same millisecond or on a clock set back: 32
// random bits follow the time ("20261124T153012.345Z-9f3c0a1b"). Ids must
// never be reused: a failed backup's snapshots are found, and deleted, by
// the id they are tagged with.
func NewID(t time.Time) string {
	var r [4]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	return t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(r[:])
}

// Validate checks the fields every consumer relies on.
func (m *Manifest) Validate() error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("backup %s: manifest format %d is not supported (want %d)", m.ID, m.FormatVersion, FormatVersion)
	case m.ID == "" || strings.ContainsAny(m.ID, "/\\ ") || m.ID == "." || m.ID == "..":
		return fmt.Errorf("manifest has an invalid backup id %q", m.ID)
	case m.Provider == "":
		return fmt.Errorf("backup %s: manifest names no provider", m.ID)
	case m.Status != StatusComplete && m.Status != StatusPending && m.Status != StatusFailed && m.Status != StatusDeleting:
		return fmt.Errorf("backup %s: unknown status %q", m.ID, m.Status)
	case m.Status == StatusComplete && (m.StopLSN < m.StartLSN || m.StartLSN == 0 || m.BackupLabel == ""):
		return fmt.Errorf("backup %s: manifest lacks its LSNs or backup_label", m.ID)
	case m.SystemID == 0 || !wal.ValidSegmentSize(m.SegmentSize):
		return fmt.Errorf("backup %s: manifest lacks the system identifier or segment size", m.ID)
	}
	return nil
}

// ErrNotFound means there is no such backup.
var ErrNotFound = errors.New("no such backup")

// Parse decodes and validates a manifest.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
