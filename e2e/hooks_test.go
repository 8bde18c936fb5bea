package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// TestOrchestratorHooks drives backup-start / backup-stop as an external
// snapshot orchestrator's before- and after-hooks would, as separate
// processes, against a real PostgreSQL 15.
func TestOrchestratorHooks(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true, config: "backup:\n  wal_timeout: 1m\n"})
	ctx := t.Context()
	socket := filepath.Join(c.work, "hold.sock")
	sessions := "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walsnap'"

	out := c.walsnap(t, "backup-start", "--socket", socket, "--fast")
	id := strings.Fields(out)[1]
	if got := c.pg.QueryString(t, sessions); got != "1" {
		t.Fatalf("%s walsnap sessions while the backup is held, want 1", got)
	}
	c.fail(t, "another backup is running", "backup-start", "--socket", filepath.Join(c.work, "other.sock"))
	c.pg.Exec(t, "CREATE TABLE during AS SELECT generate_series(1, 1000) AS x")
	// The orchestrator's "snapshot": a copy of the live data directory, a
	// crash-consistent image like an EBS snapshot (postmaster.pid, old
	// pg_wal, no backup_label).
	image := filepath.Join(c.work, "image")
	if out, err := exec.Command("cp", "-a", c.pg.DataDir, image).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	out = c.walsnap(t, "backup-stop", "--socket", socket, "--orchestrator", "n2w", "--snapshot-id", "snap-0aaa", "--snapshot-id", "snap-0bbb")
	if !strings.Contains(out, id+" complete") {
		t.Fatalf("backup-stop:\n%s", out)
	}
	m, err := c.repo(t).Manifest(ctx, id)
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
	c.fail(t, "no backup in progress", "backup-stop", "--socket", socket)
	c.pg.Exec(t, "CREATE TABLE later AS SELECT 1 AS x")
	c.pg.Exec(t, "SELECT pg_switch_wal()")

	// Restore in place from the "restored snapshot": walsnap turns the image
	// into a recovery to the backup's consistency point.
	r := c.restore(t, image, "--backup", id, "--target-immediate", "--target-action", "promote", "--archive-mode", "off")
	if !strings.Contains(r.out, "promoted") {
		t.Fatalf("restore of the external backup:\n%s", r.out)
	}
	if got := r.query("SELECT count(*) FROM during"); got != "1000" {
		t.Fatalf("restored external backup: during has %s rows", got)
	}
	if got := r.query("SELECT count(*) FROM pg_class WHERE relname = 'later'"); got != "0" {
		t.Fatal("a table created after the backup survived a restore to its consistency point")
	}

	// A holder never told to stop aborts the backup and frees the lock. The
	// next backup, likely in the same second, gets an id of its own.
	out = c.walsnap(t, "backup-start", "--socket", socket, "--timeout", "2s")
	abandoned := strings.Fields(out)[1]
	c.pg.WaitFor(t, 30*time.Second, "0", sessions)
	if _, err := c.repo(t).Manifest(ctx, abandoned); err == nil {
		t.Fatal("an aborted backup has a manifest")
	}
	if next := strings.Fields(c.walsnap(t, "backup", "--fast"))[1]; next == abandoned || next == id {
		t.Fatalf("backup id %s reused", next)
	}

	// The N2W CPM scripts shipped in scripts/n2w, run as CPM would (here
	// on the database host itself, already root).
	scripts, _ := filepath.Abs("../scripts/n2w")
	hook := func(name string, args ...string) string {
		cmd := exec.Command(filepath.Join(scripts, name), args...)
		cmd.Env = append(os.Environ(), "WALSNAP="+c.bin, "WALSNAP_SUDO=", "WALSNAP_CONFIG="+c.cfg, "WALSNAP_SNAPSHOT_IDS=snap-1 snap-2")
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
	m, err = c.repo(t).Manifest(ctx, cpm)
	if err != nil {
		t.Fatalf("backup of the CPM hooks: %v", err)
	}
	json.Unmarshal(m.Payload, &p)
	if m.Status != manifest.StatusComplete || p.Orchestrator != "n2w" || strings.Join(p.Snapshots, " ") != "snap-1 snap-2" {
		t.Fatalf("CPM backup manifest: %+v payload %+v", m, p)
	}

	// --abort ends a held backup without a manifest.
	out = c.walsnap(t, "backup-start", "--socket", socket)
	held := strings.Fields(out)[1]
	if out := c.walsnap(t, "backup-stop", "--socket", socket, "--abort"); !strings.Contains(out, held+" aborted") {
		t.Fatalf("backup-stop --abort:\n%s", out)
	}
	if _, err := c.repo(t).Manifest(ctx, held); err == nil {
		t.Fatal("an aborted backup has a manifest")
	}
}
