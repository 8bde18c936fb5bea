package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/testrig"
)

// runIn runs walsnap with the cluster's config and environment plus env.
func (c *cluster) runIn(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := c.command(args...)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("walsnap %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// decode parses r's stdout as JSON into v, failing t otherwise.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, r.stdout)
	}
}

// TestLibpqEnvironment: with no pg: settings, walsnap finds the server as
// every PostgreSQL tool does, from PGHOST, PGPORT and PGUSER; its own
// settings, before or after the command, come first.
func TestLibpqEnvironment(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true})
	conf, err := os.ReadFile(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	noPG := regexp.MustCompile(`(?m)^pg:\n(  .*\n)*`).ReplaceAllString(string(conf), "")
	if strings.Contains(noPG, "port:") {
		t.Fatalf("the config still names the server:\n%s", noPG)
	}
	if err := os.WriteFile(c.cfg, []byte(noPG), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.pg.Port)
	libpq := []string{"PGHOST=" + c.pg.SockDir, "PGPORT=" + port, "PGUSER=postgres", "PGDATABASE=postgres"}

	if r := c.runIn(t, libpq, "backup", "--fast"); r.code != 0 {
		t.Fatalf("backup with PGHOST and PGPORT: exit %d\n%s", r.code, r.stderr)
	}
	wrongPort := append(libpq[:1:1], "PGPORT=1")
	if r := c.runIn(t, wrongPort, "backup", "--fast"); r.code == 0 || !strings.Contains(r.stderr, "port=1 ") {
		t.Fatalf("backup with PGPORT=1: exit %d, %q; want a failure to connect to port 1", r.code, r.stderr)
	}
	if r := c.runIn(t, []string{"PGHOST=" + c.pg.SockDir, "PGPORT=" + port, "PGUSER=nosuchrole"}, "backup", "--fast"); r.code == 0 || !strings.Contains(r.stderr, "nosuchrole") {
		t.Fatalf("backup with PGUSER=nosuchrole: exit %d, %q", r.code, r.stderr)
	}
	if r := c.runIn(t, wrongPort, "backup", "--fast", "--pg-port", port); r.code != 0 {
		t.Fatalf("backup --pg-port over PGPORT=1: exit %d\n%s", r.code, r.stderr)
	}
	if r := c.runIn(t, wrongPort, "--pg-port", port, "backup", "--fast"); r.code != 0 {
		t.Fatalf("--pg-port before the command over PGPORT=1: exit %d\n%s", r.code, r.stderr)
	}
}

// TestOperatorExperience follows an operator through backups and a restore
// of a copy, on the JSON outputs, the messages about long waits, the
// checks before a restore and a restored copy that stays out of the
// repository.
func TestOperatorExperience(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true})
	version := binaryVersion(t)["version"]
	c.pg.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 100) AS id")
	c.pg.Exec(t, "CHECKPOINT") // nothing for the spread checkpoint to write: it ends at once

	var backup struct {
		ID        string   `json:"id"`
		Status    string   `json:"status"`
		Snapshots []string `json:"snapshots"`
		Version   string   `json:"walsnap_version"`
	}
	r := c.runIn(t, nil, "backup", "--json")
	decode(t, r, &backup)
	if backup.ID == "" || backup.Status != "complete" || backup.Snapshots == nil || len(backup.Snapshots) != 0 || backup.Version != version {
		t.Fatalf("backup --json: %+v (want complete, no snapshots, walsnap_version %s)\n%s", backup, version, r.stdout)
	}
	t.Run("a backup without --fast says what it waits for, at once", func(t *testing.T) {
		wait := strings.Index(r.stderr, "waiting for PostgreSQL's spread checkpoint")
		started := strings.Index(r.stderr, "backup started")
		if wait < 0 || started < wait || !strings.Contains(r.stderr, "--fast checkpoints at once") {
			t.Fatalf("backup without --fast:\n%s", r.stderr)
		}
		stopping := strings.Index(r.stderr, "stopping the backup: on a primary, PostgreSQL waits until the backup's last WAL segment is archived")
		if stopping < started || stopping > strings.Index(r.stderr, "backup stopped") {
			t.Fatalf("backup does not say it waits for the stop segment, before it does:\n%s", r.stderr)
		}
	})
	t.Run("the repository records the walsnap that wrote it", func(t *testing.T) {
		m, err := c.repo(t).Manifest(t.Context(), backup.ID)
		if err != nil || m.WalsnapVersion != version {
			t.Fatalf("manifest walsnap_version %q (%v), want %s", m.WalsnapVersion, err, version)
		}
		id, err := c.repo(t).Identity(t.Context())
		if err != nil || id.WalsnapVersion != version {
			t.Fatalf("walsnap.json walsnap_version %q (%v), want %s", id.WalsnapVersion, err, version)
		}
	})
	t.Run("backup-start, backup-stop and backup-list in JSON", func(t *testing.T) {
		socket := filepath.Join(c.work, "hold.sock")
		var started struct {
			ID  string `json:"id"`
			LSN string `json:"start_lsn"`
			Pid int    `json:"holder_pid"`
		}
		decode(t, c.runIn(t, nil, "backup-start", "--fast", "--socket", socket, "--json"), &started)
		if started.ID == "" || started.LSN == "" || started.Pid == 0 {
			t.Fatalf("backup-start --json: %+v", started)
		}
		var stopped struct {
			ID        string   `json:"id"`
			Status    string   `json:"status"`
			Snapshots []string `json:"snapshots"`
		}
		decode(t, c.runIn(t, nil, "backup-stop", "--socket", socket, "--snapshot-id", "snap-0aaa", "--json"), &stopped)
		if stopped.ID != started.ID || stopped.Status != "complete" || len(stopped.Snapshots) != 1 || stopped.Snapshots[0] != "snap-0aaa" {
			t.Fatalf("backup-stop --json: %+v", stopped)
		}
		var list []struct{ ID string }
		decode(t, c.runIn(t, nil, "backup-list", "--json"), &list)
		if len(list) != 2 || list[0].ID != backup.ID || list[1].ID != started.ID {
			t.Fatalf("backup-list --json: %+v", list)
		}
	})
	t.Run("backup --json names the snapshots", func(t *testing.T) {
		var snap struct {
			Status    string   `json:"status"`
			Snapshots []string `json:"snapshots"`
		}
		decode(t, c.runIn(t, nil, "backup", "--fast", "--json", "--backup-provider", "command",
			"--command-snapshot", "echo snap-0cmd1; echo snap-0cmd2"), &snap)
		if snap.Status != "complete" || strings.Join(snap.Snapshots, " ") != "snap-0cmd1 snap-0cmd2" {
			t.Fatalf("backup --json of the command provider: %+v", snap)
		}
	})

	c.pg.Exec(t, "INSERT INTO t SELECT generate_series(101, 200)")
	time.Sleep(1100 * time.Millisecond) // the target is a clear second after the commit
	target := c.pg.QueryString(t, "SELECT now()::text")
	time.Sleep(1100 * time.Millisecond) // and a commit a clear second after it, where recovery stops
	c.pg.Exec(t, "INSERT INTO t SELECT generate_series(201, 300)")
	c.archiveAll(t)
	dataDir := filepath.Join(testrig.WorkDir(t), "copy")

	t.Run("the dry-run plan in JSON, pgdata from PGDATA", func(t *testing.T) {
		var plan struct {
			PGData         string   `json:"pgdata"`
			ArchiveMode    string   `json:"archive_mode"`
			RestoreCommand string   `json:"restore_command"`
			Plan           []string `json:"plan"`
			Warnings       []string `json:"warnings"`
		}
		r := c.runIn(t, []string{"PGDATA=" + dataDir}, "restore", "--dry-run", "--json", "--backup", backup.ID, "--target-time", target)
		decode(t, r, &plan)
		if plan.PGData != dataDir || plan.ArchiveMode != "off" || !strings.Contains(plan.RestoreCommand, " wal-fetch %f %p") || len(plan.Warnings) != 0 ||
			!strings.Contains(strings.Join(plan.Plan, "\n"), "set archive_mode = off") {
			t.Fatalf("restore --dry-run --json: %+v\nstderr:\n%s", plan, r.stderr)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatal("a dry run created the data directory")
		}
	})
	t.Run("a target past the archived WAL is warned about, with the fix", func(t *testing.T) {
		later := time.Now().Add(time.Hour).Format("2006-01-02 15:04:05-07:00")
		r := c.runIn(t, nil, "restore", "--pgdata", dataDir, "--dry-run", "--backup", backup.ID, "--target-time", later)
		if r.code != 0 || !strings.Contains(r.stderr, "is later than the newest archived WAL segment") ||
			!strings.Contains(r.stderr, "SELECT pg_switch_wal()") || !strings.Contains(r.stderr, "archive_timeout") {
			t.Fatalf("restore --dry-run to an hour from now: exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("a port in use is refused, with the flags that avoid it", func(t *testing.T) {
		r := c.runIn(t, nil, "restore", "--pgdata", dataDir, "--target-time", target, "--start", "--port", strconv.Itoa(c.pg.Port))
		usageFailure(t, r, 2, "port "+strconv.Itoa(c.pg.Port)+" is in use", "--port", "--socket-dir")
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatal("the refused restore created the data directory")
		}
	})
	t.Run("a restored copy does not archive, and recovery logs no connection noise", func(t *testing.T) {
		r := c.restore(t, dataDir, "--backup", backup.ID, "--target-time", target, "--target-action", "promote")
		if !strings.Contains(r.out, "does not archive into the repository") {
			t.Fatalf("the promoted copy does not say it does not archive:\n%s", r.out)
		}
		if got := r.query("SELECT count(*) FROM t"); got != "200" {
			t.Fatalf("the copy has %s rows, want 200", got)
		}
		if got := r.query("SHOW archive_mode"); got != "off" {
			t.Fatalf("archive_mode = %s in the copy", got)
		}
		r.exec("CREATE TABLE after_promotion AS SELECT 1")
		r.exec("SELECT pg_switch_wal()")
		files, err := c.repo(t).ListWAL(t.Context(), 2)
		if err != nil || len(files) != 0 {
			t.Fatalf("timeline 2 of the copy in the repository: %v %v", files, err)
		}
		log, err := os.ReadFile(dataDir + ".walsnap-restore.log")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "not yet accepting connections") || strings.Contains(r.out, "FATAL") {
			t.Fatalf("following recovery made the server refuse connections:\n%s\n%s", r.out, log)
		}
	})
}
