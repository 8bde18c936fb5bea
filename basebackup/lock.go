package basebackup

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

// ErrBackupRunning means another backup holds the lock.
var ErrBackupRunning = repo.ErrLeaseHeld

// backupLock is held for the whole backup: a local flock in the cluster's
// run directory (released by the kernel if the process dies) plus the
// repository's backup lease. A lease left by a crashed run is taken over
// when it has expired, or at once when it was taken on this host by a
// process that no longer exists: it cannot block backups forever.
type backupLock struct {
	lease *repo.HeldLease
	local *fsutil.Lock
}

// localLock returns the local lock file of the cluster whose data
// directory is pgdata, in its run directory (DESIGN.md rule 11: where only
// the cluster's owner can create anything), which it makes if need be.
func localLock(spoolDir, pgdata string) (string, spool.Owner, error) {
	run, o, err := spool.EnsureRunDir(spoolDir, pgdata)
	if err != nil {
		return "", o, fmt.Errorf("backup lock: %w", err)
	}
	return filepath.Join(run, "backup.lock"), o, nil
}

// acquireLock takes the local lock at localPath (created with owner o)
// and the repository lease.
func acquireLock(ctx context.Context, r *repo.Repo, localPath string, o spool.Owner, id string, ttl time.Duration) (*backupLock, error) {
	if err := o.EnsureFile(localPath); err != nil {
		return nil, fmt.Errorf("backup lock: %w", err)
	}
	local, err := fsutil.TryLock(localPath)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("%w on this host (lock %s is held)", ErrBackupRunning, localPath)
	}
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	now := time.Now().UTC()
	l := repo.Lease{BackupID: id, Host: host, PID: os.Getpid(), Started: now, Expires: now.Add(ttl)}
	lease, err := r.AcquireLease(ctx, l, func(held repo.Lease) bool {
		return now.After(held.Expires) || (held.Host == host && !pg.ProcessAlive(held.PID))
	})
	if err != nil {
		local.Unlock()
		return nil, fmt.Errorf("backup lock: %w", err)
	}
	return &backupLock{lease: lease, local: local}, nil
}

// release gives up the lease and the local lock.
func (l *backupLock) release(ctx context.Context) error {
	err := l.lease.Release(ctx)
	l.local.Unlock()
	return err
}
