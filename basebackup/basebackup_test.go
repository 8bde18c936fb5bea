package basebackup

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

func TestLock(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	dir := t.TempDir()
	l, err := acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Same host, another local lock file (another cluster's path): the
	// repository lease still refuses, naming the holder.
	if _, err := acquireLock(ctx, r, filepath.Join(dir, "b.lock"), spool.Owner{}, "B2", time.Hour); !errors.Is(err, ErrBackupRunning) || !strings.Contains(err.Error(), "B1") {
		t.Fatalf("second backup: %v", err)
	}
	// Same local lock: refused by flock before the repository is asked.
	if _, err := acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B3", time.Hour); !errors.Is(err, ErrBackupRunning) || !strings.Contains(err.Error(), "this host") {
		t.Fatalf("same local lock: %v", err)
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
	l, err = acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B4", time.Hour)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l.local.Unlock() // a crash: the lease stays behind

	// A lease left by a dead process on this host is taken over at once.
	dead := exec.Command("true")
	dead.Run()
	host, _ := os.Hostname()
	putLease(t, r, repo.Lease{BackupID: "crashed", Host: host, PID: dead.Process.Pid, Expires: time.Now().Add(time.Hour)})
	l, err = acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B5", time.Hour)
	if err != nil {
		t.Fatalf("lease of a dead local process not taken over: %v", err)
	}
	l.local.Unlock()
	// A live lease of another host blocks until it expires.
	putLease(t, r, repo.Lease{BackupID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(time.Hour)})
	if _, err := acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B6", time.Hour); !errors.Is(err, ErrBackupRunning) {
		t.Fatalf("live remote lease ignored: %v", err)
	}
	putLease(t, r, repo.Lease{BackupID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(-time.Minute)})
	if _, err := acquireLock(ctx, r, filepath.Join(dir, "a.lock"), spool.Owner{}, "B7", time.Hour); err != nil {
		t.Fatalf("expired lease not taken over: %v", err)
	}
}

// putLease makes l the lease in force, as another process would.
func putLease(t *testing.T, r *repo.Repo, l repo.Lease) {
	t.Helper()
	if _, err := r.AcquireLease(context.Background(), l, func(repo.Lease) bool { return true }); err != nil {
		t.Fatal(err)
	}
}

// TestLocalLockInRunDir: the local lock lives in the cluster's run
// directory inside pg_wal/.walsnap, never at a predictable path in a
// world-writable directory (issue 7, defect 5: /tmp/walsnap-backup-<sysid>.lock
// could be held by any local user), and is the cluster owner's when
// created by root.
func TestLocalLockInRunDir(t *testing.T) {
	pgdata := t.TempDir()
	walDir := filepath.Join(pgdata, "pg_wal")
	if err := os.Mkdir(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// The cluster is postgres's: what root creates for it is too.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("no postgres user")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(walDir, uid, gid)
	}
	path, owner, err := localLock("", pgdata)
	if err != nil || path != filepath.Join(walDir, ".walsnap", "run", "backup.lock") {
		t.Fatalf("local lock at %s: %v", path, err)
	}
	st, _ := fs.New(t.TempDir())
	l, err := acquireLock(context.Background(), repo.New(st), path, owner, "B1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l.release(context.Background())
	walFI, _ := os.Stat(walDir)
	for _, p := range []string{filepath.Dir(filepath.Dir(path)), filepath.Dir(path), path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() && fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", p, fi.Mode().Perm())
		}
		if fi.Sys().(*syscall.Stat_t).Uid != walFI.Sys().(*syscall.Stat_t).Uid {
			t.Errorf("%s: not owned by pg_wal's owner", p)
		}
	}
}

func TestFillFromStop(t *testing.T) {
	label := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-24 15:40:19 UTC\nLABEL: x\nSTART TIMELINE: 1\n"
	m := &manifest.Manifest{StartLSN: 0x2000028, SegmentSize: 16 << 20}
	// A stop LSN on a segment boundary belongs to the segment before it.
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000000, BackupLabel: label}); err != nil {
		t.Fatal(err)
	}
	if m.StartWAL != "000000010000000000000002" || m.StopWAL != "000000010000000000000002" || m.Timeline != 1 || m.BackupLabel != label {
		t.Fatalf("fillFromStop: %+v", m)
	}
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000100, BackupLabel: label}); err != nil || m.StopWAL != "000000010000000000000003" {
		t.Fatalf("stop in the next segment: %s %v", m.StopWAL, err)
	}
	m.StartLSN = 0x2000030
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000100, BackupLabel: label}); err == nil {
		t.Fatal("label start differing from pg_backup_start's was accepted")
	}
}
