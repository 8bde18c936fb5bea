package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// blockSetup is a PostgreSQL 15 whose data directory is on one EBS volume
// and whose pg_wal is a symbolic link to a second, archiving into MinIO,
// with backup.provider ebs: volumes of the EBS kit (testrig.BlockEC2),
// images on loop devices behind moto, which walsnap finds by itself as on
// EC2 (no ebs.volumes, no instance id).
type blockSetup struct {
	*cluster
	kit    *testrig.BlockEC2
	vols   [2]string // the PGDATA and pg_wal volumes
	mnts   [2]string // their mount points
	pgdata string
}

// newBlockSetup makes the setup with filesystems of fstype; config is more
// of the ebs section of walsnap.yaml.
func newBlockSetup(t *testing.T, fstype, config string) *blockSetup {
	t.Helper()
	s := &blockSetup{kit: testrig.NewBlockEC2(t)}
	for i, name := range []string{"pg", "wal"} {
		s.mnts[i] = s.kit.Dir(t, name)
		s.vols[i] = s.kit.AddVolume(t, fstype, s.mnts[i])
	}
	s.pgdata = filepath.Join(s.mnts[0], "data")
	s.cluster = newCluster(t, clusterOptions{dataDir: s.pgdata, initdb: []string{"--waldir", filepath.Join(s.mnts[1], "pg_wal")},
		env: s.kit.Environ(), config: "backup:\n  provider: ebs\n  wal_timeout: 1m\n" + s.kit.Config() + "  wait_timeout: 1m\n" + config})
	return s
}

// listed returns backup id's manifest as backup-list --json shows it, or
// nil if it lists none.
func (s *blockSetup) listed(t *testing.T, id string) *manifest.Manifest {
	t.Helper()
	var list []*manifest.Manifest
	if err := json.Unmarshal([]byte(s.walsnap(t, "backup-list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(list, func(m *manifest.Manifest) bool { return m.ID == id }); i >= 0 {
		return list[i]
	}
	return nil
}

// manifest returns backup id's manifest and ebs payload, as backup-list
// --json shows them.
func (s *blockSetup) manifest(t *testing.T, id string) (*manifest.Manifest, *manifest.EBSPayload) {
	t.Helper()
	m := s.listed(t, id)
	if m == nil {
		t.Fatalf("no manifest of backup %s", id)
	}
	p, err := manifest.PayloadOf[manifest.EBSPayload](m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Provider != manifest.ProviderEBS || len(p.Snapshots) != 2 || p.InstanceID != s.kit.Instance || p.PGData != s.pgdata {
		t.Fatalf("backup %s: provider %s, payload %s", id, m.Provider, m.Payload)
	}
	for i, sn := range p.Snapshots {
		if sn.VolumeID != s.vols[i] || sn.MountPoint != s.mnts[i] || sn.SizeGiB != testrig.BlockVolumeGiB || sn.AZ != s.kit.AZ {
			t.Errorf("snapshot %d: %+v, want one of %s mounted at %s", i, sn, s.vols[i], s.mnts[i])
		}
	}
	return m, p
}

// oneInstant checks that the snapshots of p come from one CreateSnapshots
// call, which copied both volumes at one instant, and whether walsnap had
// frozen both filesystems for it.
func (s *blockSetup) oneInstant(t *testing.T, p *manifest.EBSPayload, frozen bool) {
	t.Helper()
	calls := s.kit.SnapshotCalls()
	i := slices.IndexFunc(calls, func(c testrig.SnapshotCall) bool { return c.Snapshots[s.vols[0]] == p.Snapshots[0].SnapshotID })
	if i < 0 {
		t.Fatalf("no snapshot call made %s: %+v", p.Snapshots[0].SnapshotID, calls)
	}
	c := calls[i]
	if c.Action != "CreateSnapshots" || len(c.Snapshots) != 2 || c.Snapshots[s.vols[1]] != p.Snapshots[1].SnapshotID {
		t.Fatalf("snapshots %s and %s: not both from one CreateSnapshots: %+v", p.Snapshots[0].SnapshotID, p.Snapshots[1].SnapshotID, c)
	}
	if got := len(c.CallerFroze) == 2; got != frozen {
		t.Fatalf("filesystems frozen by the caller for the snapshot call: %v, want both: %v", c.CallerFroze, frozen)
	}
}

// pitr restores backup p, as it stood at target, under a new mount root
// with --start and promotes it, and checks that the data is exactly as at
// the target and that the restored volumes are new kit volumes made from
// p's snapshots, attached and mounted under the mount root where the
// backup's were, with fstype and the mount option option. It returns the
// server and those volumes.
func (s *blockSetup) pitr(t *testing.T, p *manifest.EBSPayload, target, fstype, option string) (*restored, []testrig.BlockVolume) {
	t.Helper()
	before := s.kit.Volumes()
	root := s.kit.Dir(t, "restored")
	r := s.restoreSock(t, root+s.pgdata, testrig.WorkDir(t), "--mount-root", root, "--device-timeout", "1m",
		"--target-time", target, "--target-action", "promote")
	if !strings.Contains(r.out, "promoted") {
		t.Fatalf("restore output does not report the promotion:\n%s", r.out)
	}
	r.checkAtTarget()
	var made []testrig.BlockVolume
	for _, v := range s.kit.Volumes() {
		if !slices.ContainsFunc(before, func(b testrig.BlockVolume) bool { return b.ID == v.ID }) {
			made = append(made, v)
		}
	}
	if len(made) != 2 {
		t.Fatalf("restore made volumes %+v, want 2", made)
	}
	mounts, err := testrig.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range p.Snapshots {
		i := slices.IndexFunc(made, func(v testrig.BlockVolume) bool { return v.Snapshot == sn.SnapshotID })
		if i < 0 || made[i].Loop == "" {
			t.Fatalf("no attached volume from snapshot %s: %+v", sn.SnapshotID, made)
		}
		at, err := testrig.MountsOf([]string{made[i].Loop})
		if err != nil || !slices.Equal(at, []string{root + sn.MountPoint}) {
			t.Fatalf("volume %s (%s) is mounted at %v (%v), want %s", made[i].ID, made[i].Loop, at, err, root+sn.MountPoint)
		}
		m, err := blockdev.MountFor(mounts, root+sn.MountPoint)
		if err != nil || m.FSType != fstype || !slices.Contains(strings.Split(m.Options, ","), option) {
			t.Fatalf("%s is mounted as %+v (%v), want %s with %s", root+sn.MountPoint, m, err, fstype, option)
		}
	}
	// pg_wal points into the restored WAL volume, not the source's.
	if link, err := os.Readlink(filepath.Join(root+s.pgdata, "pg_wal")); err != nil || link != filepath.Join(root+s.mnts[1], "pg_wal") {
		t.Fatalf("restored pg_wal links to %q (%v), want %s", link, err, filepath.Join(root+s.mnts[1], "pg_wal"))
	}
	return r, made
}

// TestEBSBlocksPITR: the ebs provider end to end on real blocks.
// `walsnap backup` (ebs.freeze) under pgbench finds the two volumes
// itself and snapshots both in one CreateSnapshots call, with their
// filesystems frozen (`walsnap check` finds the same two); after a mistake past a recorded time T, `walsnap
// restore --target-time T --mount-root … --start` creates two volumes from
// the snapshots, attaches them, waits for their devices by volume id,
// mounts them, and recovers: the data is exactly as at T. Then a restore
// whose second volume fails to attach unmounts, detaches and deletes the
// first, and leaves no loop device or image behind.
func TestEBSBlocksPITR(t *testing.T) {
	t.Parallel()
	s := newBlockSetup(t, "ext4", "  freeze: true\n")
	id := s.backupUnderLoad(t)
	m, p := s.manifest(t, id)
	if m.Status != manifest.StatusComplete || p.Orchestrator != "" {
		t.Fatalf("backup %s: %s, orchestrator %q", id, m.Status, p.Orchestrator)
	}
	for i, sn := range p.Snapshots {
		if sn.FSType != "ext4" || !sn.Frozen {
			t.Errorf("snapshot %d: %+v, want a frozen ext4", i, sn)
		}
	}
	s.oneInstant(t, p, true)
	// walsnap check finds the same volumes, through the same discovery.
	lines, _ := s.check(t, "--timeout", "30s")
	want(t, lines, "ebs volumes", inspect.Pass, s.vols[0]+", "+s.vols[1])
	r, restored := s.pitr(t, p, s.goodThenBad(t).time, "ext4", "rw")

	// The second volume's attachment is refused.
	before := s.kit.Volumes()
	first := testrig.Countdown(1)
	s.kit.Proxy.Set(func(_ *http.Request, form url.Values) string {
		if isCall(form, "AttachVolume") && !first() {
			return "AttachmentLimitExceeded"
		}
		return ""
	}, nil)
	failed := s.kit.Dir(t, "failed")
	calls := func(action string) int { return len(made(s.kit.Proxy, action)) }
	created, detachedBefore, deletedBefore := calls("CreateVolume"), calls("DetachVolume"), calls("DeleteVolume")
	out, err := s.run("--pgdata", failed+s.pgdata, "restore", "--backup", id, "--mount-root", failed, "--device-timeout", "1m")
	s.kit.Proxy.Set(nil, nil)
	if err == nil || !strings.Contains(out, "AttachmentLimitExceeded") || !strings.Contains(out, "removing the volumes it created") {
		t.Fatalf("restore with a refused attachment: %v\n%s", err, out)
	}
	if n := calls("CreateVolume") - created; n != 2 {
		t.Fatalf("the failed restore created %d volumes, want 2", n)
	}
	var deleted, detached []string
	for _, f := range made(s.kit.Proxy, "DeleteVolume")[deletedBefore:] {
		deleted = append(deleted, f.Get("VolumeId"))
	}
	for _, f := range made(s.kit.Proxy, "DetachVolume")[detachedBefore:] {
		detached = append(detached, f.Get("VolumeId"))
	}
	if len(deleted) != 2 || len(detached) != 1 || !slices.Contains(deleted, detached[0]) {
		t.Errorf("the failed restore detached %v and deleted %v: want its attached volume detached, and both deleted", detached, deleted)
	}
	if after := s.kit.Volumes(); !slices.Equal(after, before) {
		t.Errorf("volumes after the failed restore:\n%+v\nwant as before it:\n%+v", after, before)
	}
	if at, err := testrig.MountsOf(loops(s.kit.Volumes())); err != nil || slices.ContainsFunc(at, func(mp string) bool { return strings.HasPrefix(mp, failed+"/") }) {
		t.Errorf("mounted after the failed restore: %v (%v)", at, err)
	}
	// In EC2, the backup's restored volumes are the first restore's.
	tagged, err := s.kit.EC2.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{id}}}})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, v := range tagged.Volumes {
		left = append(left, aws.ToString(v.VolumeId))
	}
	slices.Sort(left)
	if want := []string{restored[0].ID, restored[1].ID}; !slices.Equal(left, want) {
		t.Errorf("volumes of backup %s in EC2: %v, want the first restore's %v", id, left, want)
	}
	// The first restore's server is untouched.
	if got := r.query("SELECT count(*)::text FROM t"); got != "100" {
		t.Errorf("the first restore's server has %s rows", got)
	}
}

// loops are the loop devices of vols that are attached.
func loops(vols []testrig.BlockVolume) []string {
	var out []string
	for _, v := range vols {
		if v.Loop != "" {
			out = append(out, v.Loop)
		}
	}
	return out
}

// TestEBSBlocksOrchestrator: backup-start and backup-stop around
// snapshots that an orchestrator (the test) takes with CreateSnapshots,
// on XFS volumes, under pgbench. backup-stop finds them and records an
// ebs backup; restore --target-time T --start builds the volumes from
// them and mounts the XFS clones next to their mounted sources (nouuid):
// the data is exactly as at T.
func TestEBSBlocksOrchestrator(t *testing.T) {
	t.Parallel()
	s := newBlockSetup(t, "xfs", "")
	var taken map[string]string
	id := s.underLoad(t, func() string {
		out := s.walsnap(t, "backup-start", "--fast")
		id := strings.Fields(out)[1]
		snaps, err := s.kit.EC2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &types.InstanceSpecification{
			InstanceId: aws.String(s.kit.Instance), ExcludeBootVolume: aws.Bool(true)}})
		if err != nil {
			t.Fatal(err)
		}
		taken = map[string]string{}
		for _, sn := range snaps.Snapshots {
			taken[aws.ToString(sn.VolumeId)] = aws.ToString(sn.SnapshotId)
		}
		out = s.walsnap(t, "backup-stop", "--orchestrator", "e2e")
		if !strings.Contains(out, "backup "+id+" ") {
			t.Fatalf("backup-stop: %s", out)
		}
		t.Logf("backup under load: %s", strings.TrimSpace(out))
		return id
	})
	// The holder marks the backup complete once the snapshots are: it
	// replaces the pending manifest (removed first, so for a moment there
	// is none) with the complete one.
	deadline := time.Now().Add(time.Minute)
	for m := s.listed(t, id); (m == nil || m.Status == manifest.StatusPending) && time.Now().Before(deadline); m = s.listed(t, id) {
		time.Sleep(100 * time.Millisecond)
	}
	m, p := s.manifest(t, id)
	if m.Status != manifest.StatusComplete || p.Orchestrator != "e2e" {
		t.Fatalf("backup %s: %s, orchestrator %q; want complete, e2e", id, m.Status, p.Orchestrator)
	}
	for i, sn := range p.Snapshots {
		if sn.SnapshotID != taken[s.vols[i]] || sn.FSType != "xfs" || sn.Frozen {
			t.Errorf("snapshot %d: %+v, want the orchestrator's %s of an xfs filesystem", i, sn, taken[s.vols[i]])
		}
	}
	s.oneInstant(t, p, false)
	s.pitr(t, p, s.goodThenBad(t).time, "xfs", "nouuid")
}
