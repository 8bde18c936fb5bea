package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/drillresult"
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
	calls := func(action string) int { return len(s.kit.Proxy.Made(action)) }
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
	for _, f := range s.kit.Proxy.Made("DeleteVolume")[deletedBefore:] {
		deleted = append(deleted, f.Get("VolumeId"))
	}
	for _, f := range s.kit.Proxy.Made("DetachVolume")[detachedBefore:] {
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
	var left []string
	for _, v := range taggedVolumes(t, s.kit.EC2, "walsnap:backup-id", id) {
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

// TestEBSBlocksDrill: walsnap drill of an ebs backup on the EBS kit.
// `walsnap backup` snapshots the PGDATA and pg_wal volumes; the drill
// builds a volume from each snapshot in the instance's zone, tagged
// walsnap:drill, attaches both as new loop devices and mounts them under
// its scratch directory, while the source volumes stay mounted at theirs
// and the production server runs on (the test looks while a --check-sql
// holds the drill in its checks); the copy recovers to the end of the
// archived WAL and its checks find every row there. The drill then
// unmounts, detaches and deletes both volumes, leaving no mount, loop
// device or image; status shows it and backup-list marks the backup
// drilled. A drill whose --check-sql is false (the rows as at the
// backup) fails, and leaves nothing behind either.
func TestEBSBlocksDrill(t *testing.T) {
	t.Parallel()
	b := newBlockSetup(t, "ext4", "")
	s := drillOn(t, b.cluster, b.kit.Dir(t, "drill"))
	_, p := b.manifest(t, s.backup)
	sources := b.kit.Volumes() // the backup's two volumes, attached and mounted
	kitDir := filepath.Dir(filepath.Dir(sources[0].Image))
	attached := loops(sources)
	slices.Sort(attached)
	began := b.pg.QueryString(t, "SELECT pg_postmaster_start_time()::text")

	// kitAsBefore checks, after a drill, that the kit holds only the
	// source volumes again, attached as before, with no other loop device
	// or image, that no volume tagged for the drill is left in EC2, and
	// that the production server has run on since before the drills.
	kitAsBefore := func(t *testing.T, id string) {
		t.Helper()
		if after := b.kit.Volumes(); !slices.Equal(after, sources) {
			t.Errorf("volumes after drill %s:\n%+v\nwant the sources only:\n%+v", id, after, sources)
		}
		left, err := testrig.LoopsUnder(kitDir)
		if slices.Sort(left); err != nil || !slices.Equal(left, attached) {
			t.Errorf("loop devices after drill %s: %v (%v), want the sources' %v", id, left, err, attached)
		}
		if images, err := filepath.Glob(filepath.Join(kitDir, "volumes", "*")); err != nil || len(images) != len(sources) {
			t.Errorf("volume images after drill %s: %v (%v)", id, images, err)
		}
		if tagged := taggedVolumes(t, b.kit.EC2, "walsnap:drill", id); len(tagged) != 0 {
			t.Errorf("volumes of drill %s left in EC2: %+v", id, tagged)
		}
		if got := b.pg.QueryString(t, "SELECT pg_postmaster_start_time()::text"); got != began {
			t.Errorf("the production server started again at %s (first %s)", got, began)
		}
	}

	// While the copy is checked: what the drill built, where.
	look := func(t *testing.T) {
		dirs, err := filepath.Glob(filepath.Join(s.scratch, "walsnap-drill-*"))
		if err != nil || len(dirs) != 1 {
			t.Errorf("scratch directories during the drill: %v (%v)", dirs, err)
			return
		}
		id, root := strings.TrimPrefix(filepath.Base(dirs[0]), "walsnap-drill-"), filepath.Join(dirs[0], "mnt")
		tagged := taggedVolumes(t, b.kit.EC2, "walsnap:drill", id)
		var built []testrig.BlockVolume
		for _, v := range b.kit.Volumes() {
			if !slices.ContainsFunc(sources, func(src testrig.BlockVolume) bool { return src.ID == v.ID }) {
				built = append(built, v)
			}
		}
		if len(tagged) != 2 || len(built) != 2 {
			t.Errorf("drill %s: volumes tagged in EC2 %+v, built in the kit %+v; want 2", id, tagged, built)
			return
		}
		for _, sn := range p.Snapshots {
			i := slices.IndexFunc(tagged, func(v types.Volume) bool { return aws.ToString(v.SnapshotId) == sn.SnapshotID })
			if i < 0 || aws.ToString(tagged[i].AvailabilityZone) != b.kit.AZ || len(tagged[i].Attachments) != 1 ||
				aws.ToString(tagged[i].Attachments[0].InstanceId) != b.kit.Instance {
				t.Errorf("no volume of drill %s from snapshot %s in %s attached to %s: %+v", id, sn.SnapshotID, b.kit.AZ, b.kit.Instance, tagged)
				continue
			}
			j := slices.IndexFunc(built, func(v testrig.BlockVolume) bool { return v.ID == aws.ToString(tagged[i].VolumeId) })
			if j < 0 || built[j].Loop == "" || slices.Contains(attached, built[j].Loop) {
				t.Errorf("volume %s of drill %s is not attached as a new loop device: %+v", aws.ToString(tagged[i].VolumeId), id, built)
				continue
			}
			if at, err := testrig.MountsOf([]string{built[j].Loop}); err != nil || !slices.Equal(at, []string{root + sn.MountPoint}) {
				t.Errorf("volume %s (%s) is mounted at %v (%v), want %s", built[j].ID, built[j].Loop, at, err, root+sn.MountPoint)
				continue
			}
			t.Logf("during the checks: volume %s from %s is %s, mounted at %s", built[j].ID, sn.SnapshotID, built[j].Loop, root+sn.MountPoint)
		}
		for _, v := range sources {
			mnt := b.mnts[slices.Index(b.vols[:], v.ID)]
			if at, err := testrig.MountsOf([]string{v.Loop}); err != nil || !slices.Equal(at, []string{mnt}) {
				t.Errorf("source volume %s is mounted at %v (%v) during the drill, want %s only", v.ID, at, err, mnt)
			}
		}
		if link, err := os.Readlink(filepath.Join(root+b.pgdata, "pg_wal")); err != nil || link != filepath.Join(root+b.mnts[1], "pg_wal") {
			t.Errorf("the copy's pg_wal links to %q (%v), want %s", link, err, filepath.Join(root+b.mnts[1], "pg_wal"))
		}
	}

	t.Run("passes", func(t *testing.T) {
		hold, looked := holdChecks(t, func() { look(t) })
		rows := sqlFile(t, "rows.sql", fmt.Sprintf("SELECT count(*) = 1500 AS all_rows FROM t;\n"+
			"SELECT current_setting('data_directory') LIKE '%s/walsnap-drill-%%/mnt%s' AS on_the_drill_volume;\n", s.scratch, b.pgdata))
		res, progress, err := s.drill(t, "--device-timeout", "1m", "--check-sql", rows, "--check-sql", hold)
		if !looked() {
			t.Errorf("the drill did not run its checks on what it built")
		}
		if err != nil {
			t.Fatalf("drill: %v", err)
		}
		checkPassed(t, res, s.backup, b.pg.HasBin("pg_amcheck"))
		var steps []string
		for _, st := range res.Phase(drillresult.PhaseMaterialize).Steps {
			steps = append(steps, st.Name)
		}
		if want := []string{"create", "attach", "device", "mount", "prepare"}; !slices.Equal(steps, want) {
			t.Errorf("materialize steps %v, want %v", steps, want)
		}
		for _, want := range []string{"materialize: ", "2 volumes (", "mounted under " + filepath.Join(res.Scratch, "mnt"), "replay: ",
			"check check-sql " + rows + ": pass", "drill passed: backup " + s.backup} {
			if !strings.Contains(progress, want) {
				t.Errorf("progress lacks %q", want)
			}
		}
		if td := res.Phase(drillresult.PhaseTeardown); td == nil || !strings.Contains(td.Detail, "unmounted, detached and deleted") {
			t.Errorf("teardown %+v, want the volumes unmounted, detached and deleted", td)
		}
		kitAsBefore(t, res.ID)
		s.checkStored(t, res)
	})

	t.Run("check-sql false", func(t *testing.T) {
		res, progress, err := s.drill(t, "--device-timeout", "1m", "--check-sql", sqlFile(t, "backup.sql", "SELECT count(*) = 1000 AS as_at_backup FROM t"))
		if err == nil || res.OK || !strings.Contains(res.Error, "as_at_backup is false") || !strings.Contains(progress, "drill FAILED") {
			t.Fatalf("a drill with a false check: %v; ok %v, error %q", err, res.OK, res.Error)
		}
		if td := res.Phase(drillresult.PhaseTeardown); td == nil || !strings.Contains(td.Detail, "unmounted, detached and deleted") {
			t.Errorf("teardown %+v, want the volumes unmounted, detached and deleted", td)
		}
		kitAsBefore(t, res.ID)
		if st := s.walsnap(t, "status"); !strings.Contains(st, "last drill:        FAILED") {
			t.Errorf("status does not show the failed drill:\n%s", st)
		}
	})
}

// taggedVolumes are the volumes in EC2 tagged key=value.
func taggedVolumes(t *testing.T, c *ec2.Client, key, value string) []types.Volume {
	t.Helper()
	out, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("tag:" + key), Values: []string{value}}}})
	if err != nil {
		t.Error(err)
		return nil
	}
	return out.Volumes
}

// holdChecks returns a --check-sql file that holds the drill in its
// checks, on the copy it built and promoted, until look has run; and a
// function to call once the drill has ended, which says whether look ran
// (it does not when the drill ended before that check).
func holdChecks(t *testing.T, look func()) (string, func() bool) {
	t.Helper()
	fifo := filepath.Join(testrig.WorkDir(t), "hold")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	over, looked := make(chan struct{}), make(chan bool, 1)
	release := sync.OnceValue(func() bool {
		close(over)
		// A reader that lets the writer's open return, if no check did.
		if r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		return <-looked
	})
	t.Cleanup(func() { release() }) // when the test ends before the drill
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // until a reader opens it
		if err != nil {
			looked <- false
			return
		}
		defer f.Close() // the end of the file ends the check
		select {
		case <-over:
			looked <- false
		default:
			look()
			looked <- true
		}
	}()
	sql := fmt.Sprintf("CREATE TEMP TABLE held (line text);\nCOPY held FROM PROGRAM '/bin/cat %s';\nSELECT count(*) = 0 AS released FROM held;\n", fifo)
	return sqlFile(t, "hold.sql", sql), release
}
