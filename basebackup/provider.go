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
	"log/slog"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Provider captures a cluster's data while PostgreSQL is in backup mode.
type Provider interface {
	// Name is recorded in the manifest and selects the restore provider.
	Name() string
	// Capture copies or snapshots the data. It runs between backup start
	// and stop and should return as soon as the data's point in time is
	// fixed (for snapshots: when the create calls return).
	Capture(ctx context.Context, job *Job) (*Captured, error)
}

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
	Payload  any // stored in the manifest as JSON
	BytesIn  int64
	BytesOut int64
	// Complete, when set, runs after backup stop to finish the capture
	// (e.g. wait until snapshots are completed). The manifest is written
	// as pending before and as complete or failed after it. It may return
	// an updated payload (nil keeps Payload).
	Complete func(ctx context.Context) (payload any, err error)
}
