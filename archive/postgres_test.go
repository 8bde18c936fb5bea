package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	s3store "github.com/walsnap/walsnap/internal/storage/s3"
	"github.com/walsnap/walsnap/internal/testrig"
)

// writeConfig writes a walsnap config readable by the postgres user.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "walsnap.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func s3Config(s testrig.S3Env, prefix string) string {
	return fmt.Sprintf("repo: s3://%s/%s\ns3:\n  endpoint: %s\n  path_style: true\n  region: %s\n", s.Bucket, prefix, s.Endpoint, s.Region)
}

// run runs the walsnap binary and returns its exit status and stderr.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	code, stderr, err := faultWalsnap(testrig.Walsnap(t), env, args...)
	if err != nil {
		t.Fatalf("run walsnap: %v", err)
	}
	return code, stderr
}

var segmentName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// TestArchiveWithPostgres runs a real PostgreSQL 15 whose archive_command
// is walsnap wal-push into MinIO, generates WAL with pgbench, and checks
// that every segment up to the last switched one is in the repository and
// comes back byte-identical through wal-fetch.
func TestArchiveWithPostgres(t *testing.T) {
	bin := testrig.Walsnap(t)
	s3 := testrig.S3(t)
	cfg := writeConfig(t, testrig.ConfigDir(t), s3Config(s3, "pg15/main"))
	pg := testrig.StartPG(t, testrig.PGOptions{
		Conf: map[string]string{
			"archive_mode":    "on",
			"archive_command": bin + " --config " + cfg + " wal-push %p",
			"wal_keep_size":   "4GB", // keep every segment in pg_wal to compare with
			"max_wal_size":    "4GB",
		},
		Env: s3.Environ(),
	})
	pg.RunAs(t, "pgbench", "-i", "-s", "10", "-q", "postgres")
	pg.RunAs(t, "pgbench", "-T", "4", "-c", "2", "postgres")
	for range 3 {
		pg.Exec(t, "SELECT pg_switch_wal()")
		pg.Exec(t, "CREATE TABLE IF NOT EXISTS filler AS SELECT 1 AS x")
	}
	last := pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	pg.Exec(t, "SELECT pg_switch_wal()")
	pg.WaitFor(t, 3*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
	if failed := pg.QueryString(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Errorf("archiver reported %s failures", failed)
	}

	walDir := filepath.Join(pg.DataDir, "pg_wal")
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	destDir := t.TempDir()
	env := s3.Environ()
	checked := 0
	for _, e := range ents {
		n := e.Name()
		if !segmentName.MatchString(n) || n > last {
			continue // recycled future segments were never archived
		}
		want, err := os.ReadFile(filepath.Join(walDir, n))
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(destDir, n)
		if code, stderr := run(t, env, "--config", cfg, "--fetch-prefetch", "0", "wal-fetch", n, dest); code != 0 {
			t.Fatalf("wal-fetch %s: exit %d: %s", n, code, stderr)
		}
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: fetched copy differs from pg_wal (%v)", n, err)
		}
		checked++
	}
	if checked < 8 {
		t.Fatalf("only %d segments compared; pgbench should have made more", checked)
	}
	t.Logf("%d archived segments fetched byte-identical", checked)

	// The repository identity matches the cluster.
	loc, err := config.ParseLocation(fmt.Sprintf("s3://%s/pg15/main", s3.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	s3.Setenv(t)
	r, err := repo.Open(context.Background(), loc, config.S3{Endpoint: s3.Endpoint, PathStyle: true, Region: s3.Region, Checksums: config.ChecksumsWhenSupported})
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sysid := pg.QueryString(t, "SELECT system_identifier FROM pg_control_system()")
	if fmt.Sprint(id.SystemID) != sysid || id.SegmentSize != 16<<20 || id.PGMajor != 15 {
		t.Fatalf("identity %+v does not match the cluster (system id %s)", id, sysid)
	}

	t.Run("absent file exits 1", func(t *testing.T) {
		code, stderr := run(t, env, "--config", cfg, "wal-fetch", "0000000100000000000000FE", filepath.Join(destDir, "x"))
		if code != 1 {
			t.Fatalf("exit %d, want 1: %s", code, stderr)
		}
		code, _ = run(t, env, "--config", cfg, "wal-fetch", "00000009.history", filepath.Join(destDir, "x"))
		if code != 1 {
			t.Fatalf("absent history: exit %d, want 1", code)
		}
	})

	t.Run("corrupted object exits 255 and leaves DEST alone", func(t *testing.T) {
		ctx := context.Background()
		name := "000000010000000000000002"
		key := "wal/00000001/" + name + ".zst"
		// Tamper with the stored object behind the repository's back.
		st, err := s3store.New(ctx, s3store.Options{Bucket: s3.Bucket, Prefix: "pg15/main", Endpoint: s3.Endpoint, PathStyle: true, Region: s3.Region})
		if err != nil {
			t.Fatal(err)
		}
		rc, info, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		data[len(data)/2] ^= 0x40
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := st.PutIfAbsent(ctx, key, bytes.NewReader(data), int64(len(data)), info.Metadata); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(destDir, "RECOVERYXLOG")
		os.WriteFile(dest, []byte("old"), 0o600)
		code, stderr := run(t, env, "--config", cfg, "--fetch-prefetch", "0", "wal-fetch", name, dest)
		if code != 255 {
			t.Fatalf("exit %d, want 255: %s", code, stderr)
		}
		if got, _ := os.ReadFile(dest); string(got) != "old" {
			t.Fatal("DEST changed by a failed fetch")
		}
		if !strings.Contains(stderr, name) {
			t.Fatalf("error does not name the file: %s", stderr)
		}
	})

	t.Run("unreachable store exits 255 in bounded time", func(t *testing.T) {
		down := writeConfig(t, t.TempDir(), "repo: s3://nobucket/x\ns3:\n  endpoint: http://127.0.0.1:1\n  path_style: true\n  max_attempts: 3\n")
		start := time.Now()
		code, stderr := run(t, env, "--config", down, "wal-fetch", "000000010000000000000002", filepath.Join(destDir, "y"))
		if code != 255 {
			t.Fatalf("exit %d, want 255: %s", code, stderr)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("took %v with the endpoint down", d)
		}
	})

	t.Run("wal-push refuses a foreign or damaged segment", func(t *testing.T) {
		seg, err := os.ReadFile(filepath.Join(walDir, "000000010000000000000003"))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		foreign := bytes.Clone(seg)
		foreign[24] ^= 1 // xlp_sysid (offset 24 in XLogLongPageHeaderData)
		for what, tc := range map[string]struct {
			data []byte
			want string
		}{
			"foreign": {foreign, "system identifier"},
			"short":   {seg[:1<<20], "size"},
			"garbage": {bytes.Repeat([]byte("garbage!"), 2<<20), "000000010000000000000003"},
		} {
			p := filepath.Join(dir, "000000010000000000000003")
			os.WriteFile(p, tc.data, 0o600)
			code, stderr := run(t, env, "--config", cfg, "--push-ahead", "0", "wal-push", p)
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line mentioning %q", what, code, stderr, tc.want)
			}
		}
	})
}

// TestRecoveryToTime recovers a pg_basebackup (-X none) to a recorded time
// using only wal-fetch as restore_command, from a file:// repository.
func TestRecoveryToTime(t *testing.T) {
	bin := testrig.Walsnap(t)
	work := testrig.WorkDir(t)
	cfg := writeConfig(t, testrig.ConfigDir(t), "repo: file://"+filepath.Join(work, "repo")+"\n")
	pg := testrig.StartPG(t, testrig.PGOptions{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": bin + " --config " + cfg + " wal-push %p",
	}})
	pg.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, note text)")
	pg.Exec(t, "INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 100) g")
	backup := filepath.Join(work, "restored")
	pg.RunAs(t, "pg_basebackup", "-X", "none", "-c", "fast", "-D", backup)
	pg.Exec(t, "INSERT INTO t SELECT g, 'after backup' FROM generate_series(101, 200) g")
	pg.RunAs(t, "pgbench", "-i", "-s", "4", "-q", "postgres") // several segments to replay
	pg.Exec(t, "SELECT pg_switch_wal()")
	time.Sleep(1100 * time.Millisecond)
	target := pg.QueryString(t, "SELECT now()::text")
	time.Sleep(1100 * time.Millisecond)
	pg.Exec(t, "INSERT INTO t SELECT g, 'after target' FROM generate_series(201, 250) g")
	pg.Exec(t, "UPDATE t SET note = 'bad update'")
	pg.Exec(t, "DROP TABLE t")
	last := pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	pg.Exec(t, "SELECT pg_switch_wal()")
	pg.WaitFor(t, 2*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
	pg.Stop(t)

	rst := testrig.NewPGFromDataDir(t, 15, backup, nil)
	rst.AppendConf(t, map[string]string{
		"archive_mode":           "off",
		"restore_command":        bin + " --config " + cfg + " wal-fetch %f %p",
		"recovery_target_time":   target,
		"recovery_target_action": "promote",
	})
	signal := filepath.Join(backup, "recovery.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postgres:postgres", signal).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	rst.Start(t)
	rst.WaitFor(t, 3*time.Minute, "f", "SELECT pg_is_in_recovery()")
	if got := rst.QueryString(t, "SELECT count(*) FROM t"); got != "200" {
		t.Fatalf("restored table has %s rows, want the 200 committed before the target", got)
	}
	if got := rst.QueryString(t, "SELECT count(*) FROM t WHERE note IN ('after target', 'bad update')"); got != "0" {
		t.Fatalf("%s rows from after the target survived", got)
	}
	if got := rst.QueryString(t, "SELECT count(*) FROM pgbench_accounts"); got != "400000" {
		t.Fatalf("pgbench_accounts has %s rows, want 400000", got)
	}
	log, _ := os.ReadFile(rst.LogFile)
	if !bytes.Contains(log, []byte("restored (prefetched)")) {
		t.Errorf("no segment was served from prefetch during recovery; server log:\n%s", log)
	}
	rst.Stop(t)
	// Let any prefetcher still running finish before the directory goes.
	lock := filepath.Join(backup, "pg_wal", ".walsnap", "prefetch", ".lock")
	for deadline := time.Now().Add(30 * time.Second); fsutil.IsLocked(lock) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}
