// Package basebackup takes base backups: it holds one PostgreSQL session in
// non-exclusive backup mode, lets a provider capture the data (copy files,
// snapshot volumes, run a command), stops the backup, makes sure the WAL
// needed to make it consistent is archived, and writes the manifest last.
//
// The orchestration is provider-neutral; a provider only captures data and
// describes it in its payload.
package basebackup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Provider captures a cluster's data while PostgreSQL is in backup mode.
type Provider interface {
	// Name is recorded in the manifest and selects the restore provider.
	Name() manifest.Provider
	// Capture copies or snapshots the data. It runs between backup start
	// and stop and should return as soon as the data's point in time is
	// fixed (for snapshots: when the create calls return).
	Capture(ctx context.Context, job *Job) (*Captured, error)
}

// Preparer is a Provider with work that can fail before the backup
// window opens: finding what to capture, checking it and checking the
// permissions to capture it (DESIGN.md rule 12). Run calls Prepare before
// pg_backup_start, so that a failure there leaves PostgreSQL untouched;
// between pg_backup_start and pg_backup_stop only the returned window's
// Capture runs.
type Preparer interface {
	Provider
	Prepare(ctx context.Context, job *Job) (*Window, error)
}

// Window is what runs between pg_backup_start and pg_backup_stop.
type Window struct {
	// Capture takes the data.
	Capture func(ctx context.Context) (*Captured, error)
	// Timeout, when set, is the deadline of Capture, named by the
	// setting Setting: past it the capture is cut short and the backup
	// aborted, so that PostgreSQL leaves backup mode.
	Timeout time.Duration
	Setting string
	// Cleanup, when set, removes what Capture may have left (snapshots
	// whose call returned too late) when the backup fails before a
	// manifest names it. It runs once PostgreSQL has left backup mode.
	Cleanup func(ctx context.Context) error
}

// Recorder records, as a backup of its provider, the snapshots that an
// external orchestrator takes while a backup is held for it (Hold). Its
// PrepareRecord runs before pg_backup_start, like Prepare.
type Recorder interface {
	Name() manifest.Provider
	PrepareRecord(ctx context.Context, job *Job) (Record, error)
}

// Record describes the snapshots of a held backup: those the
// orchestrator named (ids, as given to backup-stop), or, with none, those
// it finds taken between from (when pg_backup_start returned) and to (when
// backup-stop came). orchestrator names who took them.
type Record func(ctx context.Context, orchestrator string, ids []string, from, to time.Time) (*Captured, error)

// Job is what a provider needs to know about the backup in progress.
type Job struct {
	ID          string
	Label       string
	SystemID    uint64
	StartLSN    wal.LSN
	PGData      string                // the data directory, absolute
	Tablespaces []manifest.Tablespace // user tablespaces
	Repo        *repo.Repo
	Log         *slog.Logger
	Progress    func(done, total int64) // optional
}

// Captured is a provider's result.
type Captured struct {
	Payload  any // the provider's payload type (manifest package), stored in the manifest
	BytesIn  int64
	BytesOut int64
	// Complete, when set, runs after backup stop to finish the capture
	// (e.g. wait until snapshots are completed). The manifest is written
	// as pending before and as complete or failed after it. It may return
	// an updated payload (nil keeps Payload).
	Complete func(ctx context.Context) (payload any, err error)
}

// ProviderSettings configure the backup providers; backup.provider
// chooses one (NewProvider).
type ProviderSettings struct {
	Codec           compress.Codec // files: codec of the parts
	Streams         int            // files: concurrent tar streams
	CommandSnapshot string         // command: command.snapshot
	// EBS is the ebs provider without its client; NewEC2 makes the client.
	EBS    EBS
	NewEC2 func(ctx context.Context) (*ebs.Client, error)
}

// NewProvider returns the provider called name, one of
// manifest.Configurable().
func NewProvider(ctx context.Context, name manifest.Provider, s ProviderSettings) (Provider, error) {
	switch name {
	case manifest.ProviderFiles:
		return &Files{Codec: s.Codec, Streams: s.Streams}, nil
	case manifest.ProviderCommand:
		return &Command{Script: s.CommandSnapshot}, nil
	case manifest.ProviderEBS:
		return s.ebs(ctx)
	}
	return nil, fmt.Errorf("backup.provider %q cannot take backups", name)
}

// NewRecorder returns the Recorder for backups held for an orchestrator
// (backup-start/backup-stop) when backup.provider is name: with ebs, the
// orchestrator's EBS snapshots of the PostgreSQL volumes are recorded as
// an ebs backup that walsnap restore rebuilds; with any other provider it
// returns nil, and such backups record the snapshot ids as given
// (provider external, restored in place).
func NewRecorder(ctx context.Context, name manifest.Provider, s ProviderSettings) (Recorder, error) {
	if name != manifest.ProviderEBS {
		return nil, nil
	}
	return s.ebs(ctx)
}

// ebs is the ebs provider with its client.
func (s ProviderSettings) ebs(ctx context.Context) (*EBS, error) {
	client, err := s.NewEC2(ctx)
	if err != nil {
		return nil, fmt.Errorf("ebs: %w", err)
	}
	e := s.EBS
	e.Client = client
	return &e, nil
}
