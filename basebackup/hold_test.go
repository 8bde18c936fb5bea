package basebackup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/testrig"
)

// TestOrchestratorHooks drives backup-start / backup-stop as an external
// snapshot orchestrator's before- and after-hooks would, as separate
// processes, against a real PostgreSQL 15.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestOrchestratorHooks(t *testing.T) {
	bin := testrig.Walsnap(t)
	work := testrig.WorkDir(t)
	repoDir := filepath.Join(work, "repo")
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	pg := testrig.NewPG(t, testrig.PGOptions{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": bin + " --config " + cfg + " wal-push %p",
	}})
	os.WriteFile(cfg, []byte(fmt.Sprintf("repo: file://%s\npg:\n  host: %s\n  port: %d\nbackup:\n  wal_timeout: 1m\n", repoDir, pg.SockDir, pg.Port)), 0o644)
	// The repository directory belongs to postgres, whose archive_command
	// writes it; walsnap run as root keeps it that way.
	if out, err := pg.Command(context.Background(), "/bin/mkdir", repoDir).CombinedOutput(); err != nil {
		t.Fatalf("mkdir %s: %v %s", repoDir, err, out)
	}
	pg.Start(t)
	socket := filepath.Join(work, "hold.sock")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--config", cfg}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	out, err := run("backup-start", "--socket", socket, "--fast")
	if err != nil {
		t.Fatalf("backup-start: %v\n%s", err, out)
	}
	id := strings.Fields(out)[1]
	if got := pg.QueryString(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walsnap'"); got != "1" {
		t.Fatalf("%s walsnap sessions while the backup is held, want 1", got)
	}
	if out, err := run("backup-start", "--socket", filepath.Join(work, "other.sock")); err == nil || !strings.Contains(out, "another backup is running") {
		t.Fatalf("second backup-start: %v\n%s", err, out)
	}
	pg.Exec(t, "CREATE TABLE during AS SELECT generate_series(1, 1000) AS x")
	// The orchestrator's "snapshot": a copy of the live data directory, a
	// crash-consistent image like an EBS snapshot (postmaster.pid, old
	// pg_wal, no backup_label).
	image := filepath.Join(work, "image")
	if out, err := exec.Command("cp", "-a", pg.DataDir, image).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	out, err = run("backup-stop", "--socket", socket, "--orchestrator", "n2w", "--snapshot-id", "snap-0aaa", "--snapshot-id", "snap-0bbb")
	if err != nil || !strings.Contains(out, id+" complete") {
		t.Fatalf("backup-stop: %v\n%s", err, out)
	}
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.New(st).Manifest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var p manifest.ExternalPayload
	json.Unmarshal(m.Payload, &p)
	if m.Provider != manifest.ProviderExternal || m.Status != manifest.StatusComplete || p.Orchestrator != "n2w" ||
		len(p.Snapshots) != 2 || p.Snapshots[1] != "snap-0bbb" || !strings.Contains(m.BackupLabel, "LABEL: walsnap "+id) {
		t.Fatalf("manifest: %+v payload %+v", m, p)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Fatal("holder socket left behind")
	}
	if out, err := run("backup-stop", "--socket", socket); err == nil || !strings.Contains(out, "no backup in progress") {
		t.Fatalf("backup-stop without a holder: %v\n%s", err, out)
	}
	pg.Exec(t, "CREATE TABLE later AS SELECT 1 AS x")
	pg.Exec(t, "SELECT pg_switch_wal()")

	// Restore in place from the "restored snapshot": walsnap turns the image
	// into a recovery to the backup's consistency point.
	port := freePort(t)
	out, err = run("--pgdata", image, "restore", "--backup", id, "--target-immediate", "--target-action", "promote",
		"--archive-mode", "off", "--start", "--port", fmt.Sprint(port), "--socket-dir", work)
	if err != nil || !strings.Contains(out, "promoted") {
		t.Fatalf("restore of the external backup: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		pg.Command(context.Background(), filepath.Join(pg.BinDir, "pg_ctl"), "-D", image, "-m", "immediate", "stop").Run()
	})
	rst := testrig.NewPGFromDataDir(t, 15, image, nil)
	rst.Port, rst.SockDir = port, work
	if got := rst.QueryString(t, "SELECT count(*) FROM during"); got != "1000" {
		t.Fatalf("restored external backup: during has %s rows", got)
	}
	if got := rst.QueryString(t, "SELECT count(*) FROM pg_class WHERE relname = 'later'"); got != "0" {
		t.Fatal("a table created after the backup survived a restore to its consistency point")
	}

	// A holder never told to stop aborts the backup and frees the lock.
	time.Sleep(1100 * time.Millisecond) // backup ids have one-second resolution
	out, err = run("backup-start", "--socket", socket, "--timeout", "2s")
	if err != nil {
		t.Fatalf("backup-start: %v\n%s", err, out)
	}
	abandoned := strings.Fields(out)[1]
	deadline := time.Now().Add(30 * time.Second)
	for pg.QueryString(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walsnap'") != "0" {
		if time.Now().After(deadline) {
			t.Fatal("the holder did not give up its session after the timeout")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := repo.New(st).Manifest(context.Background(), abandoned); err == nil {
		t.Fatal("an aborted backup has a manifest")
	}
	if out, err := run("backup", "--fast"); err != nil {
		t.Fatalf("backup after an aborted hold: %v\n%s", err, out)
	}
	// The N2W CPM scripts shipped in scripts/n2w, run as CPM would (here
	// on the database host itself, already root).
	time.Sleep(1100 * time.Millisecond)
	scripts, _ := filepath.Abs("../scripts/n2w")
	hook := func(name string, args ...string) string {
		cmd := exec.Command(filepath.Join(scripts, name), args...)
		cmd.Env = append(os.Environ(), "WALSNAP="+bin, "WALSNAP_SUDO=", "WALSNAP_CONFIG="+cfg, "WALSNAP_SNAPSHOT_IDS=snap-1 snap-2")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	out = hook("before_walsnap.sh")
	cpm := strings.Fields(out)[1]
	hook("after_walsnap.sh", "1")
	hook("complete_walsnap.sh")
	m, err = repo.New(st).Manifest(context.Background(), cpm)
	if err != nil {
		t.Fatalf("backup of the CPM hooks: %v", err)
	}
	json.Unmarshal(m.Payload, &p)
	if m.Status != manifest.StatusComplete || p.Orchestrator != "n2w" || strings.Join(p.Snapshots, " ") != "snap-1 snap-2" {
		t.Fatalf("CPM backup manifest: %+v payload %+v", m, p)
	}

	// --abort ends a held backup without a manifest.
	out, err = run("backup-start", "--socket", socket)
	if err != nil {
		t.Fatalf("backup-start: %v\n%s", err, out)
	}
	held := strings.Fields(out)[1]
	if out, err := run("backup-stop", "--socket", socket, "--abort"); err != nil || !strings.Contains(out, held+" aborted") {
		t.Fatalf("backup-stop --abort: %v\n%s", err, out)
	}
	if _, err := repo.New(st).Manifest(context.Background(), held); err == nil {
		t.Fatal("an aborted backup has a manifest")
	}
}
