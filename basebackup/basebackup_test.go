package basebackup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

func TestLock(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Same host, another local lock file (another cluster's path): the
	// repository lease still refuses, naming the holder.
	if _, err := acquireLock(ctx, st, filepath.Join(dir, "b.lock"), "B2", time.Hour); !errors.Is(err, ErrBackupRunning) || !strings.Contains(err.Error(), "B1") {
		t.Fatalf("second backup: %v", err)
	}
	// Same local lock: refused by flock before the repository is asked.
	if _, err := acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B3", time.Hour); !errors.Is(err, ErrBackupRunning) || !strings.Contains(err.Error(), "this host") {
		t.Fatalf("same local lock: %v", err)
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
	l, err = acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B4", time.Hour)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l.local.Unlock() // a crash: the lease stays behind

	// A lease left by a dead process on this host is taken over at once.
	dead := exec.Command("true")
	dead.Run()
	host, _ := os.Hostname()
	putLease(t, st, lease{ID: "crashed", Host: host, PID: dead.Process.Pid, Expires: time.Now().Add(time.Hour)})
	l, err = acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B5", time.Hour)
	if err != nil {
		t.Fatalf("lease of a dead local process not taken over: %v", err)
	}
	l.local.Unlock()
	// A live lease of another host blocks until it expires.
	putLease(t, st, lease{ID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(time.Hour)})
	if _, err := acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B6", time.Hour); !errors.Is(err, ErrBackupRunning) {
		t.Fatalf("live remote lease ignored: %v", err)
	}
	putLease(t, st, lease{ID: "remote", Host: "elsewhere", PID: 1, Expires: time.Now().Add(-time.Minute)})
	if _, err := acquireLock(ctx, st, filepath.Join(dir, "a.lock"), "B7", time.Hour); err != nil {
		t.Fatalf("expired lease not taken over: %v", err)
	}
}

func putLease(t *testing.T, st *fs.Store, l lease) {
	t.Helper()
	st.Delete(context.Background(), lockKey)
	data, _ := json.Marshal(l)
	if err := st.PutIfAbsent(context.Background(), lockKey, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
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
