package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/testrig"
)

// TestPITREveryMajor: for each PostgreSQL major, a backup taken while
// pgbench runs, a mistake after a recorded time T, and restore
// --target-time T --start into a new directory: the table is back with
// exactly the rows committed before T.
func TestPITREveryMajor(t *testing.T) {
	testrig.ForEachMajor(t, func(t *testing.T, major int) {
		t.Parallel()
		c := newCluster(t, clusterOptions{major: major})
		id := c.backupUnderLoad(t)
		m := c.goodThenBad(t)
		list := c.walsnap(t, "backup-list")
		if !strings.Contains(list, id) || !strings.Contains(list, "complete") {
			t.Fatalf("backup-list does not show %s as complete:\n%s", id, list)
		}
		r := c.restore(t, "", "--target-time", m.time, "--target-action", "promote")
		if !strings.Contains(r.out, "promoted") {
			t.Fatalf("restore output does not report the promotion:\n%s", r.out)
		}
		r.checkAtTarget()
		if got := r.query("SELECT current_setting('server_version_num')"); got[:2] != strconv.Itoa(major) {
			t.Fatalf("restored server is version %s, want major %d", got, major)
		}
	})
}

// TestPITRTargets covers the other target kinds, refusals and a restore
// through a timeline switch, on one cluster (PostgreSQL 15).
func TestPITRTargets(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{major: 15})
	id := c.backupUnderLoad(t)
	m := c.goodThenBad(t)

	t.Run("lsn", func(t *testing.T) {
		r := c.restore(t, "", "--target-lsn", m.lsn, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget()
	})
	t.Run("name", func(t *testing.T) {
		r := c.restore(t, "", "--target-name", m.name, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget()
	})
	t.Run("xid", func(t *testing.T) {
		r := c.restore(t, "", "--backup", id, "--target-xid", m.xid, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget()
	})
	t.Run("pause is the default action", func(t *testing.T) {
		r := c.restore(t, "", "--target-time", m.time)
		// The message says what a paused recovery still holds, and how
		// to look at the data without waiting on it.
		for _, want := range []string{"recovery is paused", "holds the locks", "--target-action promote",
			"--target-inclusive=false", "lock_timeout", "does not archive into the repository"} {
			if !strings.Contains(r.out, want) {
				t.Fatalf("the paused restore does not say %q:\n%s", want, r.out)
			}
		}
		if got := r.query("SELECT pg_is_in_recovery()::text"); got != "true" {
			t.Fatalf("pg_is_in_recovery = %s, want true while paused", got)
		}
		r.checkAtTarget()
	})

	t.Run("refusals", func(t *testing.T) {
		dir := filepath.Join(testrig.WorkDir(t), "data")
		c.fail(t, "earliest reachable point", "--pgdata", dir, "restore", "--target-time", "2000-01-01 00:00:00+00")
		c.fail(t, "at most one", "--pgdata", dir, "restore", "--target-time", m.time, "--target-lsn", m.lsn)
		c.fail(t, "no such backup", "--pgdata", dir, "restore", "--backup", "20000101T000000Z")
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600)
		c.fail(t, "not empty", "--pgdata", dir, "restore", "--target-time", m.time)
		if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "x" {
			t.Fatal("a refused restore touched the directory")
		}
		plan := c.walsnap(t, "--pgdata", filepath.Join(testrig.WorkDir(t), "dry"), "restore", "--dry-run", "--target-time", m.time)
		if !strings.Contains(plan, id) || !strings.Contains(plan, "restore_command = ") {
			t.Fatalf("dry run plan:\n%s", plan)
		}
	})

	t.Run("through a timeline switch", func(t *testing.T) {
		// Restore once as a replacement primary and promote: with
		// --archive-mode preserve the restored server archives timeline 2
		// into the same repository (its archive_command came with the backup).
		r := c.restore(t, "", "--target-time", m.time, "--target-action", "promote", "--archive-mode", "preserve")
		if !strings.Contains(r.out, "archives its new timeline into the repository (--archive-mode preserve)") {
			t.Fatalf("the promoted replacement does not say it archives:\n%s", r.out)
		}
		tl := r.query("SELECT timeline_id::text FROM pg_control_checkpoint()")
		r.exec("CHECKPOINT")
		r.exec("CREATE TABLE t2 (id int)")
		r.exec("INSERT INTO t2 SELECT generate_series(1, 42)")
		time.Sleep(1100 * time.Millisecond) // T2 is a clear second after the commit
		t2 := r.query("SELECT now()::text")
		time.Sleep(1100 * time.Millisecond) // and the later rows a clear second after T2
		r.exec("INSERT INTO t2 SELECT generate_series(43, 60)")
		r.archiveAll()
		// Restore again, from the same backup on timeline 1, to a point on
		// the new timeline.
		r2 := c.restore(t, "", "--target-time", t2, "--target-timeline", tl, "--target-action", "promote")
		if got := r2.query("SELECT count(*)::text FROM t2"); got != "42" {
			t.Fatalf("t2 has %s rows after restoring to a point on timeline %s, want 42", got, tl)
		}
		r2.checkAtTarget()
	})
}

// TestPITRTablespace restores a cluster with a tablespace, relocating it
// with --tablespace-map (PostgreSQL 17).
func TestPITRTablespace(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{major: 17})
	tsdir := filepath.Join(c.work, "ts1")
	if out, err := c.pg.Command(t.Context(), "/bin/mkdir", tsdir).CombinedOutput(); err != nil {
		t.Fatalf("mkdir %s: %v %s", tsdir, err, out)
	}
	c.pg.Exec(t, "CREATE TABLESPACE ts1 LOCATION '"+tsdir+"'")
	c.pg.Exec(t, "CREATE TABLE big (id int, pad text) TABLESPACE ts1")
	c.pg.Exec(t, "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 10000) g")
	c.backupUnderLoad(t)
	c.pg.Exec(t, "INSERT INTO big SELECT g, 'after backup' FROM generate_series(10001, 10500) g")
	m := c.goodThenBad(t)
	c.pg.Exec(t, "DROP TABLE big")
	c.archiveAll(t)

	moved := filepath.Join(testrig.WorkDir(t), "ts1-moved")
	r := c.restore(t, "", "--target-time", m.time, "--target-action", "promote", "--archive-mode", "off",
		"--tablespace-map", tsdir+"="+moved)
	r.checkAtTarget()
	if got := r.query("SELECT count(*)::text FROM big"); got != "10500" {
		t.Fatalf("table in the tablespace has %s rows, want 10500", got)
	}
	if got := r.query("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"); got != moved {
		t.Fatalf("tablespace location %s, want %s", got, moved)
	}
	if _, err := os.Stat(filepath.Join(moved, "PG_17_"+r.query("SELECT catalog_version_no::text FROM pg_control_system()"))); err != nil {
		t.Fatalf("tablespace files not at the new location: %v", err)
	}
}

// TestPITRSegmentSize64 runs the whole cycle on a cluster initialised with
// --wal-segsize=64 (PostgreSQL 18).
func TestPITRSegmentSize64(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{major: 18, initdb: []string{"--wal-segsize=64"}})
	c.backupUnderLoad(t)
	m := c.goodThenBad(t)
	r := c.restore(t, "", "--target-time", m.time, "--target-action", "promote", "--archive-mode", "off")
	r.checkAtTarget()
	if got := r.query("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"); got != "67108864" {
		t.Fatalf("wal_segment_size = %s", got)
	}
}
