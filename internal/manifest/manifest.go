// Package manifest is the format of the record of one base backup, which
// the repository stores last: a backup exists only once its manifest does.
// Every provider shares this record; what is particular to a provider is
// its payload, whose type is declared once, in providers.go, with the
// provider's name.
package manifest

import (
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
)

// Tablespace is a user tablespace of the backed-up cluster.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"` // absolute path at backup time
}

// Manifest describes one base backup.
type Manifest struct {
	FormatVersion int          `json:"format_version"`
	ID            string       `json:"id"`
	Provider      Provider     `json:"provider"`
	Status        string       `json:"status"`
	Label         string       `json:"label"`
	StartLSN      wal.LSN      `json:"start_lsn"`
	StopLSN       wal.LSN      `json:"stop_lsn"`
	Timeline      uint32       `json:"timeline"`
	StartWAL      string       `json:"start_wal"` // segment holding StartLSN
	StopWAL       string       `json:"stop_wal"`  // segment holding StopLSN
	StartTime     time.Time    `json:"start_time"`
	StopTime      time.Time    `json:"stop_time"`
	PGVersion     int          `json:"pg_version"` // server_version_num
	SystemID      uint64       `json:"system_identifier,string"`
	SegmentSize   uint64       `json:"wal_segment_size"`
	FromStandby   bool         `json:"from_standby"`
	Host          string       `json:"host"`
	PGData        string       `json:"pgdata"`
	Tablespaces   []Tablespace `json:"tablespaces"`
	BackupLabel   string       `json:"backup_label"`   // exact text from pg_backup_stop
	TablespaceMap string       `json:"tablespace_map"` // exact text from pg_backup_stop ("" when none)
	BytesIn       int64        `json:"bytes_in"`       // data read from the cluster
	BytesOut      int64        `json:"bytes_out"`      // data stored (0 for snapshots)
	Error         string       `json:"error,omitempty"`
	// Payload is the provider's own record (files: the parts; ebs: the
	// snapshots).
	Payload json.RawMessage `json:"payload"`
}

// PGMajor is the PostgreSQL major version of the backup.
func (m *Manifest) PGMajor() int { return m.PGVersion / 10000 }

// NewID returns a backup id for a backup started at t: sortable, readable,
// safe in keys and tags ("20261124T153012Z").
func NewID(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// Validate checks the fields every consumer relies on.
func (m *Manifest) Validate() error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("backup %s: manifest format %d is not supported (want %d)", m.ID, m.FormatVersion, FormatVersion)
	case m.ID == "" || strings.ContainsAny(m.ID, "/\\ ") || m.ID == "." || m.ID == "..":
		return fmt.Errorf("manifest has an invalid backup id %q", m.ID)
	case m.Provider == "":
		return fmt.Errorf("backup %s: manifest names no provider", m.ID)
	case m.Status != StatusComplete && m.Status != StatusPending && m.Status != StatusFailed:
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
