// Package backuplock is the lock that keeps the jobs that change a
// repository's backups apart: one backup (or backup-start holder) or one
// delete at a time. It is a local flock in the cluster's run directory
// (released by the kernel if the process dies) plus the repository's
// backup lease (repo.AcquireLease), which holds across hosts. A lease left
// by a crashed run is taken over when it has expired, or at once when it
// was taken on this host by a process that no longer exists: it cannot
// block the repository forever.
package backuplock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
)

// ErrHeld means another job holds the lock (it matches repo.ErrLeaseHeld).
var ErrHeld = repo.ErrLeaseHeld

// Lock is the held lock.
type Lock struct {
	lease *repo.HeldLease
	local *fsutil.Lock // nil when no local lock was asked for
}

// LocalPath returns the local lock file of the cluster whose data
// directory is pgdata, in its run directory (DESIGN.md rule 11: where only
// the cluster's owner can create anything), which it makes if need be,
// and the owner to give the file.
func LocalPath(spoolDir, pgdata string) (string, spool.Owner, error) {
	run, o, err := spool.EnsureRunDir(spoolDir, pgdata)
	if err != nil {
		return "", o, fmt.Errorf("backup lock: %w", err)
	}
	return filepath.Join(run, "backup.lock"), o, nil
}

// Acquire takes the local lock at localPath (created with owner o; ""
// skips it) and the repository lease for l, which says who holds it
// (l.Host, l.PID, l.Started and l.Expires are filled in: the lease
// expires after ttl).
func Acquire(ctx context.Context, r *repo.Repo, localPath string, o spool.Owner, l repo.Lease, ttl time.Duration) (*Lock, error) {
	lock := &Lock{}
	if localPath != "" {
		if err := o.EnsureFile(localPath); err != nil {
			return nil, fmt.Errorf("backup lock: %w", err)
		}
		local, err := fsutil.TryLock(localPath)
		if errors.Is(err, fsutil.ErrLocked) {
			return nil, fmt.Errorf("%w on this host (lock %s is held)", ErrHeld, localPath)
		}
		if err != nil {
			return nil, err
		}
		lock.local = local
	}
	host, _ := os.Hostname()
	now := time.Now().UTC()
	l.Host, l.PID, l.Started, l.Expires = host, os.Getpid(), now, now.Add(ttl)
	lease, err := r.AcquireLease(ctx, l, func(held repo.Lease) bool {
		return now.After(held.Expires) || (held.Host == host && !pg.ProcessAlive(held.PID))
	})
	if err != nil {
		lock.unlockLocal()
		return nil, fmt.Errorf("backup lock: %w", err)
	}
	lock.lease = lease
	return lock, nil
}

// Release gives up the lease and the local lock.
func (l *Lock) Release(ctx context.Context) error {
	err := l.lease.Release(ctx)
	l.unlockLocal()
	return err
}

func (l *Lock) unlockLocal() {
	if l.local != nil {
		l.local.Unlock()
	}
}
