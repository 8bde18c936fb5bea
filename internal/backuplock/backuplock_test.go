package backuplock

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

	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

// TestLock: a delete and a backup exclude each other through the local
// lock and the lease; a lease of a dead process on this host is taken
// over; without a local path only the lease is taken.
func TestLock(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	pgdata := t.TempDir()
	os.Mkdir(filepath.Join(pgdata, "pg_wal"), 0o700)
	path, owner, err := LocalPath("", pgdata)
	if err != nil || path != filepath.Join(pgdata, "pg_wal", ".walsnap", "run", "backup.lock") {
		t.Fatalf("LocalPath = %s, %v", path, err)
	}
	del, err := Acquire(ctx, r, path, owner, repo.Lease{Op: "delete"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A backup on this host: refused by the local lock.
	if _, err := Acquire(ctx, r, path, owner, repo.Lease{BackupID: "B1"}, time.Hour); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "this host") {
		t.Fatalf("same local lock: %v", err)
	}
	// Elsewhere (no local lock): refused by the lease, which names the delete.
	if _, err := Acquire(ctx, r, "", spool.Owner{}, repo.Lease{BackupID: "B1"}, time.Hour); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "delete on ") {
		t.Fatalf("lease held by a delete: %v", err)
	}
	if err := del.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(ctx, r, "", spool.Owner{}, repo.Lease{BackupID: "B2"}, time.Hour)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if _, err := Acquire(ctx, r, path, owner, repo.Lease{Op: "delete"}, time.Hour); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "backup B2") {
		t.Fatalf("delete during a backup: %v", err)
	}
	// A lease left by a dead process on this host (B2's, taken over as
	// one would after a crash) is taken over at once.
	b.unlockLocal()
	dead := exec.Command("true")
	dead.Run()
	host, _ := os.Hostname()
	if _, err := r.AcquireLease(ctx, repo.Lease{Op: "delete", Host: host, PID: dead.Process.Pid, Expires: time.Now().Add(time.Hour)},
		func(repo.Lease) bool { return true }); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(ctx, r, path, owner, repo.Lease{Op: "delete"}, time.Hour)
	if err != nil {
		t.Fatalf("lease of a dead process not taken over: %v", err)
	}
	l.Release(ctx)
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
	path, owner, err := LocalPath("", pgdata)
	if err != nil || path != filepath.Join(walDir, ".walsnap", "run", "backup.lock") {
		t.Fatalf("local lock at %s: %v", path, err)
	}
	st, _ := fs.New(t.TempDir())
	l, err := Acquire(context.Background(), repo.New(st), path, owner, repo.Lease{BackupID: "B1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())
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

// TestLeaseOfAnotherHost: a live lease of another host blocks until it
// expires, then is taken over.
func TestLeaseOfAnotherHost(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	always := func(repo.Lease) bool { return true }
	if _, err := r.AcquireLease(ctx, repo.Lease{BackupID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(time.Hour)}, always); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(ctx, r, "", spool.Owner{}, repo.Lease{BackupID: "B6"}, time.Hour); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "remote on elsewhere") {
		t.Fatalf("live remote lease ignored: %v", err)
	}
	if _, err := r.AcquireLease(ctx, repo.Lease{BackupID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(-time.Minute)}, always); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(ctx, r, "", spool.Owner{}, repo.Lease{BackupID: "B7"}, time.Hour); err != nil {
		t.Fatalf("expired lease not taken over: %v", err)
	}
}
