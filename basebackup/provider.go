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
		client, err := s.NewEC2(ctx)
		if err != nil {
			return nil, err
		}
		e := s.EBS
		e.Client = client
		return &e, nil
	}
	return nil, fmt.Errorf("backup.provider %q cannot take backups", name)
}
