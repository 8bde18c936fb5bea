package basebackup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/storage"
)

// lockKey is the repository lease that keeps backups of one repository
// from running at the same time, from any host.
const lockKey = "locks/backup.json"

type lease struct {
	ID      string    `json:"backup_id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"`
}

// ErrBackupRunning means another backup holds the lock.
var ErrBackupRunning = errors.New("another backup is running")

// backupLock is held for the whole backup: a local flock (released by the
// kernel if the process dies) plus a repository lease. A lease left by a
// crashed run is taken over when it has expired, or at once when it was
// taken on this host by a process that no longer exists: it cannot block
// backups forever.
type backupLock struct {
	st    storage.Store
	local *fsutil.Lock
}

func acquireLock(ctx context.Context, st storage.Store, localPath, id string, ttl time.Duration) (*backupLock, error) {
	if err := os.MkdirAll(filepath.Dir(localPath), 0o700); err != nil {
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
	l := lease{ID: id, Host: host, PID: os.Getpid(), Started: now, Expires: now.Add(ttl)}
	data, _ := json.Marshal(l)
	for attempt := 0; ; attempt++ {
		err := st.PutIfAbsent(ctx, lockKey, bytes.NewReader(data), int64(len(data)), nil)
		if err == nil {
			return &backupLock{st: st, local: local}, nil
		}
		if !errors.Is(err, storage.ErrExists) || attempt > 0 {
			local.Unlock()
			if errors.Is(err, storage.ErrExists) {
				err = fmt.Errorf("%w: the lock was taken by another process at the same moment", ErrBackupRunning)
			}
			return nil, fmt.Errorf("backup lock: %w", err)
		}
		held, err := readLease(ctx, st)
		if err != nil {
			local.Unlock()
			return nil, err
		}
		stale := now.After(held.Expires) || (held.Host == host && !processAlive(held.PID))
		if !stale {
			local.Unlock()
			return nil, fmt.Errorf("%w: backup %s on %s (pid %d) since %s; its lock expires at %s",
				ErrBackupRunning, held.ID, held.Host, held.PID, held.Started.Format(time.RFC3339), held.Expires.Format(time.RFC3339))
		}
		if err := st.Delete(ctx, lockKey); err != nil {
			local.Unlock()
			return nil, fmt.Errorf("backup lock: remove stale lock of backup %s: %w", held.ID, err)
		}
	}
}

func readLease(ctx context.Context, st storage.Store) (lease, error) {
	var l lease
	rc, _, err := st.Get(ctx, lockKey)
	if err != nil {
		return l, fmt.Errorf("backup lock: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	if err == nil {
		err = json.Unmarshal(data, &l)
	}
	if err != nil {
		// An unreadable lease is treated as expired rather than blocking
		// backups forever.
		return lease{ID: "unknown"}, nil
	}
	return l, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// release removes the lease and the local lock.
func (l *backupLock) release(ctx context.Context) error {
	err := l.st.Delete(ctx, lockKey)
	l.local.Unlock()
	return err
}
