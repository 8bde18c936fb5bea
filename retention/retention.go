// Package retention is walsnap delete: it expires backups, their
// payloads (files parts, EBS snapshots, command references) and the WAL
// that no kept backup needs, following a policy (keep the newest N
// complete backups, and/or what restores to any point of a time window),
// never touching a pinned backup or a timeline history file.
//
// A delete plans first (Plan: a dry run stops there) and then acts
// (Execute), in an order that a crash at any point leaves consistent and
// that a second run finishes: each expired backup is marked deleting
// (restore, verify and retention then treat it as gone), its payload goes
// next, its manifest last; WAL goes after every manifest. It takes the
// repository's backup lock (internal/backuplock), so backups and deletes
// never overlap; wal-push keeps archiving meanwhile: WAL archived after
// the plan was made is never in it.
package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/walsnap/walsnap/internal/backuplock"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
)

// OrphanAge is how old objects of a backup without a manifest, or EBS
// snapshots tagged with such a backup's id, must be before they are
// deleted: a younger one may belong to a backup still being written.
const OrphanAge = 24 * time.Hour

// Policy says which complete backups to keep. A backup either rule keeps
// is kept.
type Policy struct {
	// Full keeps the newest Full complete backups (0: not set).
	Full int
	// Window keeps what restores to any point of the last Window: every
	// backup that stopped within it, and the newest one that stopped
	// before it (0: not set).
	Window time.Duration
}

// IsSet reports whether the policy keeps anything by itself.
func (p Policy) IsSet() bool { return p.Full > 0 || p.Window > 0 }

// String describes the policy: "newest 3, window 336h0m0s".
func (p Policy) String() string {
	switch {
	case p.Full > 0 && p.Window > 0:
		return fmt.Sprintf("keep the newest %d and the window of %s", p.Full, p.Window)
	case p.Full > 0:
		return fmt.Sprintf("keep the newest %d", p.Full)
	case p.Window > 0:
		return fmt.Sprintf("keep the window of %s", p.Window)
	}
	return "none"
}

// ErrNoPolicy means there is nothing to decide with: no policy, and no
// backup named.
var ErrNoPolicy = errors.New("no retention policy: set retention.full or retention.window, or give --retain N or --window D (or name one backup with --backup ID)")

// ErrRefused is what every refusal of --backup matches.
var ErrRefused = errors.New("delete refused")

// Snapshots is the EC2 API retention uses: *ebs.Client.
type Snapshots interface {
	DeleteSnapshot(ctx context.Context, id string) error
	BackupSnapshots(ctx context.Context, systemID uint64) ([]ebs.SnapshotInfo, error)
	ExistingSnapshots(ctx context.Context, ids []string) ([]string, error)
}

var _ Snapshots = (*ebs.Client)(nil)

// Options configure a delete.
type Options struct {
	Repo   *repo.Repo
	Policy Policy
	// Backup names the one backup to delete, instead of the expired ones.
	// It is refused when the backup is pinned, and, unless Force, when it
	// is the only complete backup, or the one that keeps the window
	// (Policy.Window) restorable.
	Backup string
	Force  bool
	// Now is the time the policy is applied at (zero: the clock).
	Now time.Time
	// PendingTimeout is how long a backup may stay pending
	// (ebs.wait_timeout); one pending longer is removed like a failed one.
	PendingTimeout time.Duration
	// Provider is the configured backup.provider: with ebs (or any EBS
	// backup in the repository) the snapshots of backups without a
	// manifest are looked for.
	Provider manifest.Provider
	// Snapshots opens the EC2 API, on first use (EBS and external backups,
	// orphan snapshots).
	Snapshots func(ctx context.Context) (Snapshots, error)
	// CommandDelete is command.delete: run for each expired command
	// backup with its references. Empty: the references are reported
	// and only the manifest goes.
	CommandDelete string
	// Output receives command.delete's output (nil: discarded).
	Output io.Writer
	// PGData and SpoolDir find the cluster's run directory for the local
	// lock (neither set: the repository lease alone); LockTTL bounds how
	// long a crashed delete's lease can block backups.
	PGData, SpoolDir string
	LockTTL          time.Duration
	Log              *slog.Logger
	// Progress, when set, is told how many objects and snapshots have
	// gone of the total, after each batch.
	Progress func(done, total int64)
}

func (o *Options) defaults() {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.LockTTL <= 0 {
		o.LockTTL = 24 * time.Hour
	}
	if o.PendingTimeout <= 0 {
		o.PendingTimeout = 6 * time.Hour
	}
}

// Run plans the delete and, unless dryRun, carries it out under the
// repository's backup lock. The plan says what went (or would go) and
// what is kept, and why.
func Run(ctx context.Context, o Options, dryRun bool) (*Plan, error) {
	o.defaults()
	if dryRun {
		return Make(ctx, o)
	}
	lock, err := takeLock(ctx, o)
	if err != nil {
		return nil, err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	p, err := Make(ctx, o)
	if err != nil {
		return nil, err
	}
	return p, Execute(ctx, o, p)
}

// takeLock takes the lock a backup takes: one of them at a time.
func takeLock(ctx context.Context, o Options) (*backuplock.Lock, error) {
	var path string
	var owner spool.Owner
	if o.PGData != "" || o.SpoolDir != "" {
		var err error
		if path, owner, err = backuplock.LocalPath(o.SpoolDir, o.PGData); err != nil {
			return nil, err
		}
	}
	lock, err := backuplock.Acquire(ctx, o.Repo, path, owner, repo.Lease{Op: "delete"}, o.LockTTL)
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	return lock, nil
}
