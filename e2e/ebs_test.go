package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// ebsSetup is what the EBS tests run walsnap against, as a new user would
// meet it: moto's EC2 API, reached through a fault proxy (blackholes)
// and an EC2 proxy (refusals, requests watched, Fast Snapshot Restore
// answered), an instance with two gp3 volumes, and a PostgreSQL 15 whose
// data directory and pg_wal are on two loop-device ext4 filesystems, which
// walsnap's discovery cannot map to EBS volumes: ebs.volumes gives each
// volume's mount point.
type ebsSetup struct {
	*cluster
	ec2       *ec2.Client
	proxy     *testrig.EC2Proxy
	fault     *testrig.FaultProxy
	instance  string
	az        string
	vols      [2]string // the PGDATA and pg_wal volumes
	mnts      [2]string // their mount points
	pgdata    string
	sessions  string // counts walsnap's sessions
	moto      testrig.MotoEnv
	ec2Config string
}

// newEBSSetup starts the setup, with backup.provider ebs; config is more
// of the ebs section of walsnap.yaml.
func newEBSSetup(t *testing.T, config string) *ebsSetup {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrig.Unavailable(t, "%s: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "loop devices, mounts and fsfreeze need root")
	}
	s := &ebsSetup{moto: testrig.Moto(t)}
	s.ec2 = s.moto.EC2()
	s.proxy = testrig.NewEC2Proxy(t, s.moto.Endpoint)
	s.fault = testrig.StartFaultProxy(t, strings.TrimPrefix(s.proxy.URL, "http://"))
	s.instance, s.az = testrig.LaunchInstance(t, s.ec2, "/dev/sda1")
	for i, dev := range []string{"/dev/sdf", "/dev/sdg"} {
		s.vols[i] = testrig.NewVolume(t, s.ec2, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(s.az), Size: aws.Int32(20), VolumeType: types.VolumeTypeGp3, Iops: aws.Int32(4000)})
		if _, err := s.ec2.AttachVolume(t.Context(), &ec2.AttachVolumeInput{VolumeId: aws.String(s.vols[i]), InstanceId: aws.String(s.instance), Device: aws.String(dev)}); err != nil {
			t.Fatal(err)
		}
	}
	work := testrig.WorkDir(t)
	for i, name := range []string{"pg", "wal"} {
		s.mnts[i] = filepath.Join(work, name)
		if err := os.Mkdir(s.mnts[i], 0o755); err != nil {
			t.Fatal(err)
		}
		newLoopFS(t, work, filepath.Join(work, name+".img"), s.mnts[i])
	}
	s.pgdata = filepath.Join(s.mnts[0], "data")
	s.ec2Config = fmt.Sprintf(`ebs:
  endpoint: %s
  region: %s
  instance_id: %s
  volumes:
    - id: %s
      mount: %s
    - {id: %s, mount: %s}
  wait_timeout: 1m
`, s.fault.URL(), s.moto.Region, s.instance, s.vols[0], s.mnts[0], s.vols[1], s.mnts[1])
	env := append(s.moto.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1") // no metadata service
	s.cluster = newCluster(t, clusterOptions{localRepo: true, dataDir: s.pgdata, initdb: []string{"--waldir", filepath.Join(s.mnts[1], "pg_wal")},
		env: env, config: "backup:\n  provider: ebs\n  wal_timeout: 1m\n" + s.ec2Config + config})
	s.sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walsnap'"
	// Every statement and disconnection in the server log, with times:
	// the record of when PostgreSQL was in backup mode.
	s.pg.Exec(t, "ALTER SYSTEM SET log_statement = 'all'")
	s.pg.Exec(t, "ALTER SYSTEM SET log_disconnections = on")
	s.pg.Exec(t, "ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
	s.pg.Exec(t, "SELECT pg_reload_conf()")
	s.pg.WaitFor(t, 30*time.Second, "all", "SHOW log_statement")
	return s
}

// backupWindows returns, from the server log, how long each session that
// ran pg_backup_start lasted after it (to its disconnection): how long
// PostgreSQL was in backup mode, at most.
func (s *ebsSetup) backupWindows(t *testing.T) []time.Duration {
	t.Helper()
	f, err := os.Open(s.pg.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+) \[(\d+)\] LOG:  (.*)$`)
	started := map[string]time.Time{}
	var windows []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000 MST", m[1])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(m[3], "pg_backup_start("):
			started[m[2]] = at
		case strings.HasPrefix(m[3], "disconnection:") && !started[m[2]].IsZero():
			windows = append(windows, at.Sub(started[m[2]]))
			delete(started, m[2])
		}
	}
	if len(started) > 0 {
		t.Fatalf("sessions in backup mode have not ended: %v", started)
	}
	return windows
}

// neverInBackupMode fails t if PostgreSQL ever ran pg_backup_start.
func (s *ebsSetup) neverInBackupMode(t *testing.T) {
	t.Helper()
	log, err := os.ReadFile(s.pg.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "pg_backup_start(") {
		t.Fatal("PostgreSQL was put in backup mode")
	}
}

// snapshotsOf returns the snapshots of the setup's volumes.
func (s *ebsSetup) snapshotsOf(t *testing.T) []types.Snapshot {
	t.Helper()
	out, err := s.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{
		Filters: []types.Filter{{Name: aws.String("volume-id"), Values: s.vols[:]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Snapshots
}

// deleteSnapshotsLater deletes the setup's volumes' snapshots when t ends.
func (s *ebsSetup) deleteSnapshotsLater(t *testing.T) {
	t.Cleanup(func() {
		out, err := s.ec2.DescribeSnapshots(testrig.CleanupContext(t), &ec2.DescribeSnapshotsInput{
			Filters: []types.Filter{{Name: aws.String("volume-id"), Values: s.vols[:]}},
		})
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		for _, sn := range out.Snapshots {
			s.ec2.DeleteSnapshot(testrig.CleanupContext(t), &ec2.DeleteSnapshotInput{SnapshotId: sn.SnapshotId})
		}
	})
}

// isCall reports whether form is a request for action that is not a
// DryRun check.
func isCall(form url.Values, action string) bool {
	return form.Get("Action") == action && form.Get("DryRun") != "true"
}

// TestEBSBackupCLI: `walsnap backup` with backup.provider ebs on a host
// where discovery cannot map PostgreSQL's filesystems to volumes. Without
// mount points the backup is refused before pg_backup_start; with them
// (ebs.volumes) it is complete, application-consistent (ebs.freeze), and
// `restore --dry-run` plans every complete backup. A real restore builds
// and attaches the volume, waits for its device (which never appears on
// this host) for --device-timeout, and deletes the volume it created.
func TestEBSBackupCLI(t *testing.T) {
	t.Parallel()
	s := newEBSSetup(t, "  freeze: true\n  window_timeout: 30s\n")
	s.deleteSnapshotsLater(t)
	ctx := t.Context()

	// Volume ids alone: nothing ties PGDATA to a snapshot a restore could
	// mount.
	out, err := s.run("--ebs-volumes", s.vols[0]+","+s.vols[1], "backup", "--fast")
	if err == nil || !strings.Contains(out, "backup refused: ebs: find the volumes of "+s.pgdata) || !strings.Contains(out, "loop device") ||
		!strings.Contains(out, "{id: vol-..., mount: /path}") {
		t.Fatalf("backup without mount points: %v\n%s", err, out)
	}
	s.neverInBackupMode(t)

	out, err = s.run("backup", "--fast")
	if err != nil || !strings.Contains(out, " complete: ") {
		t.Fatalf("walsnap backup (ebs): %v\n%s", err, out)
	}
	list, _, err := s.repo(t).Backups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("manifests: %v %v", list, err)
	}
	m := list[0]
	p, err := manifest.PayloadOf[manifest.EBSPayload](m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Provider != manifest.ProviderEBS || m.Status != manifest.StatusComplete || len(p.Snapshots) != 2 || p.Orchestrator != "" {
		t.Fatalf("manifest %s %s payload %s", m.Provider, m.Status, m.Payload)
	}
	for i, sn := range p.Snapshots {
		paths := []string{s.pgdata}
		if i == 1 {
			paths = []string{filepath.Join(s.mnts[1], "pg_wal")}
		}
		if sn.VolumeID != s.vols[i] || sn.MountPoint != s.mnts[i] || sn.FSType != "ext4" || !slices.Equal(sn.Paths, paths) ||
			!sn.Frozen || sn.SizeGiB != 20 || sn.Type != "gp3" || sn.IOPS != 4000 || sn.AZ != s.az {
			t.Errorf("snapshot %d: %+v", i, sn)
		}
	}
	snaps, err := s.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{m.ID}}}})
	if err != nil || len(snaps.Snapshots) != 2 {
		t.Fatalf("snapshots tagged with the backup id: %+v %v", snaps, err)
	}
	// The freeze is over: thawing again is refused.
	for _, mnt := range s.mnts {
		if out, err := exec.Command("fsfreeze", "-u", mnt).CombinedOutput(); err == nil {
			t.Errorf("%s was left frozen (%s)", mnt, out)
		}
	}

	// restore --dry-run plans every complete backup, here in the
	// instance's zone found with DescribeInstances (no metadata service),
	// with the recovery time of each volume.
	s.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores(s.az, map[string]string{p.Snapshots[0].SnapshotID: "enabled"}))
	root := filepath.Join(testrig.WorkDir(t), "restored")
	dest := root + s.pgdata
	var complete []*manifest.Manifest
	if err := json.Unmarshal([]byte(s.walsnap(t, "backup-list", "--json")), &complete); err != nil {
		t.Fatal(err)
	}
	for _, b := range complete {
		if b.Status != manifest.StatusComplete {
			continue
		}
		plan := s.walsnap(t, "--pgdata", dest, "restore", "--dry-run", "--backup", b.ID, "--mount-root", root)
		for _, want := range []string{
			fmt.Sprintf("create 2 volumes from the snapshots in %s, attach each to %s", s.az, s.instance),
			fmt.Sprintf("%s (of %s, was /dev/sdf at %s): gp3, 20 GiB, 4000 IOPS → mount ext4 at %s%s", p.Snapshots[0].SnapshotID, s.vols[0], s.mnts[0], root, s.mnts[0]),
			fmt.Sprintf("%s (of %s, was /dev/sdg at %s): gp3, 20 GiB, 4000 IOPS → mount ext4 at %s%s", p.Snapshots[1].SnapshotID, s.vols[1], s.mnts[1], root, s.mnts[1]),
			"Fast Snapshot Restore enabled in " + s.az + ": full performance at once",
			"Fast Snapshot Restore not enabled in " + s.az + "; lazy loading",
			"data directory → " + dest,
		} {
			if !strings.Contains(plan, want) {
				t.Errorf("plan of backup %s lacks %q:\n%s", b.ID, want, plan)
			}
		}
	}

	// A real restore, on a host where the attached volume never appears.
	start := time.Now()
	out, err = s.run("--pgdata", dest, "restore", "--backup", m.ID, "--mount-root", root, "--device-timeout", "2s")
	if err == nil || !strings.Contains(out, "its device did not appear within 2s (--device-timeout)") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("restore gave up after %s", time.Since(start).Round(time.Millisecond))
	if n := len(s.proxy.Requests("CreateVolume")); n != 1 {
		t.Errorf("%d volumes created, want 1: the device wait comes before the next", n)
	}
	if !strings.Contains(out, "removing the volumes it created") {
		t.Errorf("restore output:\n%s", out)
	}
	vols, err := s.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{m.ID}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols.Volumes {
		if v.State != types.VolumeStateDeleting && v.State != types.VolumeStateDeleted {
			t.Errorf("restored volume %s left %s", aws.ToString(v.VolumeId), v.State)
		}
	}
}

// TestEBSBackupRefusedBeforeStart: what can fail does before
// pg_backup_start, and PostgreSQL is never put in backup mode: a
// blackholed EC2 endpoint (within ebs.window_timeout), a volume that is
// not the instance's, missing permission to snapshot (EC2's answer to a
// DryRun).
func TestEBSBackupRefusedBeforeStart(t *testing.T) {
	t.Parallel()
	s := newEBSSetup(t, "  window_timeout: 2s\n")
	s.deleteSnapshotsLater(t)

	s.fault.Blackhole(true)
	start := time.Now()
	out, err := s.run("backup", "--fast")
	took := time.Since(start)
	s.fault.Blackhole(false)
	if err == nil || !strings.Contains(out, "EC2 did not answer within ebs.window_timeout (2s), before pg_backup_start") {
		t.Fatalf("backup against a blackholed endpoint: %v\n%s", err, out)
	}
	if took > 15*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	t.Logf("blackholed endpoint: refused after %s", took.Round(time.Millisecond))

	out, err = s.run("--ebs-volumes", s.vols[0]+"="+s.mnts[0]+","+s.vols[1]+"="+s.mnts[1]+",vol-0000000000000dead", "backup", "--fast")
	if err == nil || !strings.Contains(out, "volume vol-0000000000000dead is not attached to instance "+s.instance) {
		t.Fatalf("backup with an unknown volume: %v\n%s", err, out)
	}

	s.proxy.Set(func(_ *http.Request, form url.Values) string {
		if form.Get("DryRun") == "true" {
			return "UnauthorizedOperation"
		}
		return ""
	}, nil)
	out, err = s.run("backup", "--fast")
	s.proxy.Set(nil, nil)
	if err == nil || !strings.Contains(out, "not permitted (checked with DryRun)") {
		t.Fatalf("backup without permission: %v\n%s", err, out)
	}

	s.neverInBackupMode(t)
	if n := len(s.snapshotsOf(t)); n != 0 {
		t.Errorf("%d snapshots", n)
	}
	if list := s.walsnap(t, "backup-list", "--json"); strings.TrimSpace(list) != "[]" {
		t.Errorf("a refused backup left a manifest:\n%s", list)
	}
}

// windowTimeout is ebs.window_timeout for TestEBSWindowDeadline;
// WALSNAP_TEST_EBS_WINDOW_TIMEOUT overrides it (e.g. 60s, the default) to
// measure the window at another setting.
func windowTimeout(t *testing.T) time.Duration {
	v := cmp.Or(os.Getenv("WALSNAP_TEST_EBS_WINDOW_TIMEOUT"), "2s")
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEBSWindowDeadline: the EC2 endpoint becomes a blackhole during the
// snapshot call, with the filesystems frozen. At ebs.window_timeout the
// backup is aborted: the filesystems are thawed, PostgreSQL leaves backup
// mode (the server log measures how long it was in it), and once EC2
// answers again the snapshots it made meanwhile are deleted.
func TestEBSWindowDeadline(t *testing.T) {
	t.Parallel()
	limit := windowTimeout(t)
	s := newEBSSetup(t, fmt.Sprintf("  freeze: true\n  window_timeout: %s\n", limit))
	s.deleteSnapshotsLater(t)
	arrived := make(chan struct{})
	s.proxy.Observe(func(form url.Values) {
		if isCall(form, "CreateSnapshots") {
			s.fault.Blackhole(true) // moto makes the snapshots; its answer is lost
			close(arrived)
		}
	})
	cmd := s.command("backup", "--fast")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-arrived:
	case err := <-done:
		t.Fatalf("backup ended before the snapshot call: %v\n%s", err, out.String())
	case <-time.After(time.Minute):
		t.Fatal("no snapshot call")
	}
	// PostgreSQL leaves backup mode at the deadline, blackhole or not;
	// then EC2 answers again, for the cleanup.
	s.pg.WaitFor(t, limit+30*time.Second, "0", s.sessions)
	s.fault.Blackhole(false)
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("walsnap backup did not end")
	}
	if err == nil || !strings.Contains(out.String(), fmt.Sprintf("the backup window reached its deadline (ebs.window_timeout %s), so the backup is aborted", limit)) ||
		!strings.Contains(out.String(), "deleted the snapshots of the failed backup") {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	windows := s.backupWindows(t)
	if len(windows) != 1 {
		t.Fatalf("backup windows %v, want one", windows)
	}
	t.Logf("backup window under a blackholed endpoint, ebs.window_timeout %s: %s", limit, windows[0])
	if windows[0] < limit || windows[0] > limit+2*time.Second {
		t.Errorf("PostgreSQL was in backup mode for %s, want ebs.window_timeout (%s) and little more", windows[0], limit)
	}
	for _, mnt := range s.mnts {
		if out, err := exec.Command("fsfreeze", "-u", mnt).CombinedOutput(); err == nil {
			t.Errorf("%s was left frozen (%s)", mnt, out)
		}
	}
	if n := len(s.snapshotsOf(t)); n != 0 {
		t.Errorf("%d snapshots left by the aborted backup", n)
	}
	if list := s.walsnap(t, "backup-list", "--json"); strings.TrimSpace(list) != "[]" {
		t.Errorf("an aborted backup left a manifest:\n%s", list)
	}
	// Once EC2 answers, the next backup goes through.
	s.proxy.Observe(nil)
	if out, err := s.run("backup", "--fast"); err != nil || !strings.Contains(out, " complete: ") {
		t.Fatalf("backup after the blackhole: %v\n%s", err, out)
	}
}

// TestEBSBackupCleanup: a backup that fails after its snapshot call and
// before a manifest names it (here the manifest cannot be written) deletes
// the snapshots tagged with its id.
func TestEBSBackupCleanup(t *testing.T) {
	t.Parallel()
	s := newEBSSetup(t, "")
	s.deleteSnapshotsLater(t)
	// A file where the backups' directory would be.
	if err := os.WriteFile(filepath.Join(s.repoDir, "backups"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := s.run("backup", "--fast")
	if err == nil || !strings.Contains(out, "write manifest of backup") || !strings.Contains(out, "deleted the snapshots of the failed backup") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if n := len(s.proxy.Made("CreateSnapshots")); n != 1 {
		t.Fatalf("%d snapshot calls, want 1", n)
	}
	if left := s.snapshotsOf(t); len(left) != 0 {
		t.Errorf("%d snapshots left by the failed backup", len(left))
	}
	if got := s.pg.QueryString(t, s.sessions); got != "0" {
		t.Errorf("%s walsnap sessions after the failure", got)
	}
}

// waitManifest waits until backup id's manifest has status want.
func waitManifest(t *testing.T, c *cluster, id, want string, timeout time.Duration) *manifest.Manifest {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		m, err := c.repo(t).Manifest(ctx, id)
		if err == nil && m.Status == want {
			return m
		}
		select {
		case <-ctx.Done():
			t.Fatalf("backup %s: not %s within %s (last: %+v, %v)", id, want, timeout, m, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
