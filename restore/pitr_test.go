package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walsnap/walsnap/internal/testrig"
)

// cluster is a primary that archives with walsnap into a MinIO bucket, and
// the config file that walsnap commands run against it share.
type cluster struct {
	t    *testing.T
	pg   *testrig.PG
	s3   testrig.S3Env
	bin  string
	work string
	cfg  string
}

func newCluster(t *testing.T, major int, initdb ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, s3: testrig.S3(t), bin: testrig.Walsnap(t), work: testrig.WorkDir(t)}
	c.cfg = filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	c.pg = testrig.NewPG(t, testrig.PGOptions{
		Major:      major,
		InitDBArgs: initdb,
		Conf: map[string]string{
			"archive_mode":    "on",
			"archive_command": c.bin + " --config " + c.cfg + " wal-push %p",
			"archive_timeout": "0",
		},
		Env: c.s3.Environ(),
	})
	conf := fmt.Sprintf("repo: s3://%s/db\ns3:\n  endpoint: %s\n  path_style: true\n  region: %s\npg:\n  host: %s\n  port: %d\n",
		c.s3.Bucket, c.s3.Endpoint, c.s3.Region, c.pg.SockDir, c.pg.Port)
	if err := os.WriteFile(c.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.pg.Start(t)
	return c
}

// walsnap runs the binary with the cluster's config and the S3 credentials.
func (c *cluster) walsnap(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--config", c.cfg}, args...)...)
	cmd.Env = append(os.Environ(), c.s3.Environ()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("walsnap %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// backupUnderLoad takes a backup while pgbench writes.
func (c *cluster) backupUnderLoad() string {
	c.t.Helper()
	c.pg.RunAs(c.t, "pgbench", "-i", "-s", "5", "-q", "postgres")
	load := c.pg.Command(context.Background(), c.pg.Bin("pgbench"), "-T", "6", "-c", "2", "postgres")
	var loadOut bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		c.t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	out := c.walsnap("backup", "--fast")
	running := load.ProcessState == nil
	if err := load.Wait(); err != nil {
		c.t.Fatalf("pgbench: %v\n%s", err, loadOut.String())
	}
	if !running {
		c.t.Fatal("pgbench ended before the backup did; the backup was not taken under load")
	}
	id := strings.Fields(out)[1]
	c.t.Logf("backup under load: %s", strings.TrimSpace(out))
	return id
}

// marks records a recovery target: rows 1..100 committed, then T.
type marks struct {
	time, lsn, xid, name string
}

// goodThenBad commits the rows a restore must bring back, records the
// target in every form, then makes the mistakes a restore must undo, and
// waits until all of it is archived.
func (c *cluster) goodThenBad() marks {
	c.t.Helper()
	p := c.pg
	p.Exec(c.t, "CREATE TABLE t (id int PRIMARY KEY, note text)")
	p.Exec(c.t, "INSERT INTO t SELECT g, 'good' FROM generate_series(1, 99) g")
	var m marks
	m.xid = p.QueryString(c.t, "WITH i AS (INSERT INTO t VALUES (100, 'good') RETURNING 1) SELECT txid_current()::text FROM i")
	time.Sleep(1100 * time.Millisecond)
	m.time = p.QueryString(c.t, "SELECT now()::text")
	m.name = "before_mistake"
	p.Exec(c.t, "SELECT pg_create_restore_point('before_mistake')")
	m.lsn = p.QueryString(c.t, "SELECT pg_current_wal_lsn()::text")
	time.Sleep(1100 * time.Millisecond)
	p.Exec(c.t, "INSERT INTO t SELECT g, 'after target' FROM generate_series(101, 150) g")
	p.Exec(c.t, "UPDATE t SET note = 'bad update'")
	p.Exec(c.t, "DROP TABLE t")
	c.archiveAll()
	return m
}

// archiveAll switches WAL and waits until everything is archived.
func (c *cluster) archiveAll() {
	c.t.Helper()
	last := c.pg.QueryString(c.t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.pg.Exec(c.t, "SELECT pg_switch_wal()")
	c.pg.WaitFor(c.t, 2*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
}

// restored is a server recovered by walsnap restore --start.
type restored struct {
	t       *testing.T
	pg      *testrig.PG
	dataDir string
	sock    string
	port    int
	out     string
}

// restoreAndStart runs walsnap restore --start into a new directory.
func (c *cluster) restoreAndStart(args ...string) *restored {
	c.t.Helper()
	dir := filepath.Join(testrig.WorkDir(c.t), "data")
	r := &restored{t: c.t, dataDir: dir, sock: filepath.Dir(dir), port: freePort(c.t)}
	all := append([]string{"--pgdata", dir, "restore", "--start", "--pg-bin", c.pg.BinDir,
		"--port", strconv.Itoa(r.port), "--socket-dir", r.sock, "--start-timeout", "3m"}, args...)
	c.t.Cleanup(func() {
		c.pg.Command(context.Background(), filepath.Join(c.pg.BinDir, "pg_ctl"), "-D", dir, "-m", "immediate", "stop").Run()
	})
	r.out = c.walsnap(all...)
	c.t.Logf("restore: %s", strings.TrimSpace(r.out))
	return r
}

func (r *restored) query(sql string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := r.connect(ctx)
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, pgx.QueryResultFormats{pgx.TextFormatCode}).Scan(&s); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// checkAtTarget asserts the data is exactly as at the target.
func (r *restored) checkAtTarget(pgbenchRows string) {
	r.t.Helper()
	if got := r.query("SELECT count(*)::text FROM t"); got != "100" {
		r.t.Fatalf("restored t has %s rows, want the 100 committed before the target", got)
	}
	if got := r.query("SELECT count(*)::text FROM t WHERE note <> 'good'"); got != "0" {
		r.t.Fatalf("%s rows changed after the target survived", got)
	}
	if got := r.query("SELECT count(*)::text FROM pgbench_accounts"); got != pgbenchRows {
		r.t.Fatalf("pgbench_accounts has %s rows, want %s", got, pgbenchRows)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPITREveryMajor: for each PostgreSQL major, a backup taken while
// pgbench runs, a mistake after a recorded time T, and restore
// --target-time T --start into a new directory: the table is back with
// exactly the rows committed before T.
func TestPITREveryMajor(t *testing.T) {
	testrig.ForEachMajor(t, func(t *testing.T, major int) {
		t.Parallel()
		c := newCluster(t, major)
		id := c.backupUnderLoad()
		m := c.goodThenBad()
		list := c.walsnap("backup-list")
		if !strings.Contains(list, id) || !strings.Contains(list, "complete") {
			t.Fatalf("backup-list does not show %s as complete:\n%s", id, list)
		}
		r := c.restoreAndStart("--target-time", m.time, "--target-action", "promote")
		if !strings.Contains(r.out, "promoted") {
			t.Fatalf("restore output does not report the promotion:\n%s", r.out)
		}
		r.checkAtTarget("500000")
		if got := r.query("SELECT current_setting('server_version_num')"); got[:2] != strconv.Itoa(major) {
			t.Fatalf("restored server is version %s, want major %d", got, major)
		}
	})
}

// TestPITRTargets covers the other target kinds, refusals and a restore
// through a timeline switch, on one cluster (PostgreSQL 15).
func TestPITRTargets(t *testing.T) {
	c := newCluster(t, 15)
	id := c.backupUnderLoad()
	m := c.goodThenBad()

	t.Run("lsn", func(t *testing.T) {
		c.t = t
		r := c.restoreAndStart("--target-lsn", m.lsn, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget("500000")
	})
	t.Run("name", func(t *testing.T) {
		c.t = t
		r := c.restoreAndStart("--target-name", m.name, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget("500000")
	})
	t.Run("xid", func(t *testing.T) {
		c.t = t
		r := c.restoreAndStart("--backup", id, "--target-xid", m.xid, "--target-action", "promote", "--archive-mode", "off")
		r.checkAtTarget("500000")
	})
	t.Run("pause is the default action", func(t *testing.T) {
		c.t = t
		r := c.restoreAndStart("--target-time", m.time, "--archive-mode", "off")
		if !strings.Contains(r.out, "paused") {
			t.Fatalf("restore did not report a paused recovery:\n%s", r.out)
		}
		if got := r.query("SELECT pg_is_in_recovery()::text"); got != "true" {
			t.Fatalf("pg_is_in_recovery = %s, want true while paused", got)
		}
		r.checkAtTarget("500000")
	})

	t.Run("refusals", func(t *testing.T) {
		c.t = t
		fail := func(want string, args ...string) {
			t.Helper()
			cmd := exec.Command(c.bin, append([]string{"--config", c.cfg}, args...)...)
			cmd.Env = append(os.Environ(), c.s3.Environ()...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), want) {
				t.Fatalf("walsnap %s: err %v, output %q; want a failure mentioning %q", strings.Join(args, " "), err, out, want)
			}
		}
		dir := filepath.Join(testrig.WorkDir(t), "data")
		fail("earliest reachable point", "--pgdata", dir, "restore", "--target-time", "2000-01-01 00:00:00+00")
		fail("at most one", "--pgdata", dir, "restore", "--target-time", m.time, "--target-lsn", m.lsn)
		fail("no such backup", "--pgdata", dir, "restore", "--backup", "20000101T000000Z")
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600)
		fail("not empty", "--pgdata", dir, "restore", "--target-time", m.time)
		if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "x" {
			t.Fatal("a refused restore touched the directory")
		}
		plan := c.walsnap("--pgdata", filepath.Join(testrig.WorkDir(t), "dry"), "restore", "--dry-run", "--target-time", m.time)
		if !strings.Contains(plan, id) || !strings.Contains(plan, "restore_command = ") {
			t.Fatalf("dry run plan:\n%s", plan)
		}
	})

	t.Run("through a timeline switch", func(t *testing.T) {
		c.t = t
		// Restore once and promote: the restored server archives timeline 2
		// into the same repository (its archive_command came with the backup).
		r := c.restoreAndStart("--target-time", m.time, "--target-action", "promote")
		tl := r.query("SELECT timeline_id::text FROM pg_control_checkpoint()")
		r.exec("CHECKPOINT")
		r.exec("CREATE TABLE t2 (id int)")
		r.exec("INSERT INTO t2 SELECT generate_series(1, 42)")
		time.Sleep(1100 * time.Millisecond)
		t2 := r.query("SELECT now()::text")
		time.Sleep(1100 * time.Millisecond)
		r.exec("INSERT INTO t2 SELECT generate_series(43, 60)")
		last := r.query("SELECT pg_walfile_name(pg_current_wal_lsn())")
		r.exec("SELECT pg_switch_wal()")
		deadline := time.Now().Add(2 * time.Minute)
		for r.query("SELECT coalesce(last_archived_wal >= '"+last+"', false)::text FROM pg_stat_archiver") != "true" {
			if time.Now().After(deadline) {
				t.Fatalf("timeline %s WAL up to %s not archived", tl, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Restore again, from the same backup on timeline 1, to a point on
		// the new timeline.
		r2 := c.restoreAndStart("--target-time", t2, "--target-timeline", tl, "--target-action", "promote")
		if got := r2.query("SELECT count(*)::text FROM t2"); got != "42" {
			t.Fatalf("t2 has %s rows after restoring to a point on timeline %s, want 42", got, tl)
		}
		r2.checkAtTarget("500000")
	})
}

func (r *restored) exec(sql string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := r.connect(ctx)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

func (r *restored) connect(ctx context.Context) *pgx.Conn {
	r.t.Helper()
	cfg, _ := pgx.ParseConfig("")
	cfg.Host, cfg.Port, cfg.User, cfg.Database = r.sock, uint16(r.port), "postgres", "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		r.t.Fatalf("connect to the restored server: %v", err)
	}
	return conn
}

// TestPITRTablespace restores a cluster with a tablespace, relocating it
// with --tablespace-map (PostgreSQL 17).
func TestPITRTablespace(t *testing.T) {
	c := newCluster(t, 17)
	tsdir := filepath.Join(c.work, "ts1")
	if out, err := c.pg.Command(context.Background(), "/bin/mkdir", tsdir).CombinedOutput(); err != nil {
		t.Fatalf("mkdir %s: %v %s", tsdir, err, out)
	}
	c.pg.Exec(t, "CREATE TABLESPACE ts1 LOCATION '"+tsdir+"'")
	c.pg.Exec(t, "CREATE TABLE big (id int, pad text) TABLESPACE ts1")
	c.pg.Exec(t, "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 10000) g")
	c.backupUnderLoad()
	c.pg.Exec(t, "INSERT INTO big SELECT g, 'after backup' FROM generate_series(10001, 10500) g")
	m := c.goodThenBad()
	c.pg.Exec(t, "DROP TABLE big")
	c.archiveAll()

	moved := filepath.Join(testrig.WorkDir(t), "ts1-moved")
	r := c.restoreAndStart("--target-time", m.time, "--target-action", "promote", "--archive-mode", "off",
		"--tablespace-map", tsdir+"="+moved)
	r.checkAtTarget("500000")
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
	c := newCluster(t, 18, "--wal-segsize=64")
	c.backupUnderLoad()
	m := c.goodThenBad()
	r := c.restoreAndStart("--target-time", m.time, "--target-action", "promote", "--archive-mode", "off")
	r.checkAtTarget("500000")
	if got := r.query("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"); got != "67108864" {
		t.Fatalf("wal_segment_size = %s", got)
	}
}
