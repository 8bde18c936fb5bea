package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// The EBS restore runs against moto_server (testrig.Moto), shared by every
// test: each subtest builds its own source volumes, snapshots and target
// instance. The device's appearance and the mounts go through fakes of
// Devices and Mounter; everything else is the real code path. A
// testrig.EC2Proxy in front of moto records requests and refuses those a
// test wants to fail.

// fakeDevices names the device of volume v /dev/fake-v, and fails the
// calls whose number (from 1) is in fail.
type fakeDevices struct {
	mu    sync.Mutex
	calls []string
	fail  int
}

func (d *fakeDevices) WaitDevice(ctx context.Context, volumeID, _ string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, volumeID)
	if len(d.calls) == d.fail {
		return "", errors.New("no device: refused by the test")
	}
	if _, ok := ctx.Deadline(); !ok {
		return "", errors.New("WaitDevice without a deadline")
	}
	return "/dev/fake-" + volumeID, nil
}

// fakeMounter records mounts and "mounts" by creating what a volume
// holds, given by contents for the target; Unmount empties the target.
type fakeMounter struct {
	mu       sync.Mutex
	mounts   []string // "device target fstype options"
	unmounts []string
	contents func(target string) map[string]string // path → file content, or "->target" for a symlink, "/" for a directory
}

func (m *fakeMounter) Mount(_ context.Context, device, target, fstype, options string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounts = append(m.mounts, strings.Join([]string{device, target, fstype, options}, " "))
	for rel, c := range m.contents(target) {
		p := filepath.Join(target, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var err error
		switch {
		case c == "/":
			err = os.MkdirAll(p, 0o700)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], p)
		default:
			err = os.WriteFile(p, []byte(c), 0o600)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *fakeMounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unmounts = append(m.unmounts, target)
	ents, err := os.ReadDir(target)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(target, e.Name()))
	}
	return err
}

// ebsRestoreRig is one subtest's moto world: the source volumes and their
// snapshots, a target instance with an unrelated volume attached, the
// backup's manifest, and clients.
type ebsRestoreRig struct {
	t        *testing.T
	client   *ebs.Client
	ec2      *ec2.Client
	proxy    *testrig.EC2Proxy
	instance string
	az       string
	// bystander is a volume attached to the target, not the restore's.
	bystander string
	// src and snap are the source volumes and their snapshots: data, wal, ts.
	src, snap [3]string
	m         *manifest.Manifest
}

const restoreKMSKey = "arn:aws:kms:us-east-1:123456789012:key/4b1e1c5e-walsnap-restore-test"

// ebsPayloadJSON is the payload basebackup.EBS writes (the keys its test
// pins), for snapshots of PGDATA at /var/lib/postgresql (ext4), pg_wal at
// /pgwal (xfs) and a tablespace at /pgts (ext4).
const ebsPayloadJSON = `{
  "instance_id": "i-0source", "availability_zone": "us-east-1b",
  "pgdata": "/var/lib/postgresql/16/main", "tablespaces": {"16400": "/pgts/fast"},
  "snapshots": [
    {"snapshot_id": "%[1]s", "start_time": "2026-01-02T03:04:05Z", "volume_id": "%[4]s", "device": "/dev/sdf",
     "mount_point": "/var/lib/postgresql", "fs_type": "ext4", "mount_options": "rw,noatime", "paths": ["/var/lib/postgresql/16/main"],
     "frozen": true, "size_gib": 10, "volume_type": "gp3", "iops": 3000, "throughput": 125, "availability_zone": "us-east-1b", "encrypted": false},
    {"snapshot_id": "%[2]s", "start_time": "2026-01-02T03:04:05Z", "volume_id": "%[5]s", "device": "/dev/sdg",
     "mount_point": "/pgwal", "fs_type": "xfs", "mount_options": "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota", "paths": ["/pgwal/16/main"],
     "frozen": true, "size_gib": 10, "volume_type": "io2", "iops": 1000, "availability_zone": "us-east-1b", "encrypted": false},
    {"snapshot_id": "%[3]s", "start_time": "2026-01-02T03:04:05Z", "volume_id": "%[6]s", "device": "/dev/sdh",
     "mount_point": "/pgts", "fs_type": "ext4", "mount_options": "ro,noatime,seclabel", "paths": ["/pgts/fast"],
     "frozen": true, "size_gib": 10, "volume_type": "gp3", "iops": 4000, "throughput": 250, "availability_zone": "us-east-1b",
     "encrypted": true, "kms_key_id": "` + restoreKMSKey + `"}
  ]
}`

func newEBSRestoreRig(t *testing.T, env testrig.MotoEnv) *ebsRestoreRig {
	t.Helper()
	r := &ebsRestoreRig{t: t, proxy: testrig.NewEC2Proxy(t, env.Endpoint), ec2: env.EC2()}
	var err error
	if r.client, err = ebs.New(t.Context(), ebs.Options{Region: env.Region, Endpoint: r.proxy.URL}); err != nil {
		t.Fatal(err)
	}
	r.instance, r.az = testrig.LaunchInstance(t, r.ec2, "/dev/sda1")
	r.bystander = r.volume(&ec2.CreateVolumeInput{})
	if err := r.client.AttachVolume(t.Context(), r.bystander, r.instance, "/dev/sdf"); err != nil {
		t.Fatal(err)
	}
	r.src = [3]string{
		r.volume(&ec2.CreateVolumeInput{VolumeType: types.VolumeTypeGp3}),
		r.volume(&ec2.CreateVolumeInput{VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(1000)}),
		r.volume(&ec2.CreateVolumeInput{VolumeType: types.VolumeTypeGp3, Iops: aws.Int32(4000), Throughput: aws.Int32(250),
			Encrypted: aws.Bool(true), KmsKeyId: aws.String(restoreKMSKey)}),
	}
	for i, v := range r.src {
		call, err := r.client.PrepareSnapshots(t.Context(), ebs.SnapshotSpec{Volumes: []ebs.VolumeInfo{{VolumeID: v}}})
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := r.client.CreateSnapshots(t.Context(), call)
		if err != nil {
			t.Fatal(err)
		}
		r.snap[i] = snaps[0].SnapshotID
		t.Cleanup(func() {
			if err := r.client.DeleteSnapshots(testrig.CleanupContext(t), []string{snaps[0].SnapshotID}); err != nil {
				t.Errorf("clean up: %v", err)
			}
		})
	}
	id := fmt.Sprintf("T%d", time.Now().UnixNano())
	r.m = &manifest.Manifest{
		ID: id, Provider: "ebs", PGData: "/var/lib/postgresql/16/main",
		Tablespaces: []manifest.Tablespace{{OID: 16400, Name: "fast", Location: "/pgts/fast"}},
		Payload:     []byte(fmt.Sprintf(ebsPayloadJSON, r.snap[0], r.snap[1], r.snap[2], r.src[0], r.src[1], r.src[2])),
	}
	t.Cleanup(func() { // whatever a restore left
		if err := r.client.DetachAndDelete(testrig.CleanupContext(t), r.restored()); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	return r
}

// volume creates a 10 GiB volume in the target's AZ, removed when the
// test ends.
func (r *ebsRestoreRig) volume(in *ec2.CreateVolumeInput) string {
	r.t.Helper()
	in.AvailabilityZone, in.Size = aws.String(r.az), aws.Int32(10)
	return testrig.NewVolume(r.t, r.ec2, in)
}

// restoredVolumes are the live volumes the restore of r.m created.
func (r *ebsRestoreRig) restoredVolumes() []types.Volume {
	out, err := r.ec2.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{
		Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{r.m.ID}}},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	var live []types.Volume
	for _, v := range out.Volumes {
		if v.State != types.VolumeStateDeleting && v.State != types.VolumeStateDeleted {
			live = append(live, v)
		}
	}
	return live
}

func (r *ebsRestoreRig) restored() []string {
	var ids []string
	for _, v := range r.restoredVolumes() {
		ids = append(ids, aws.ToString(v.VolumeId))
	}
	return ids
}

// provider is an EBS restore into a temporary mount root, with fakes
// that "mount" the backup's files.
func (r *ebsRestoreRig) provider() (*EBS, *fakeDevices, *fakeMounter, string) {
	root, err := filepath.EvalSymlinks(r.t.TempDir())
	if err != nil {
		r.t.Fatal(err)
	}
	mounter := &fakeMounter{contents: func(target string) map[string]string {
		switch strings.TrimPrefix(target, root) {
		case "/var/lib/postgresql":
			return map[string]string{"16/main/PG_VERSION": "16\n", "16/main/pg_wal": "->/pgwal/16/main", "16/main/postmaster.pid": "4242\n"}
		case "/pgwal":
			return map[string]string{"16/main/000000010000000000000003": "wal"}
		case "/pgts":
			return map[string]string{"fast/PG_16_202307071": "/"}
		}
		return nil
	}}
	devices := &fakeDevices{}
	e := &EBS{
		Client: r.client, InstanceID: r.instance, AZ: r.az, InitializationRate: 200, MountRoot: root,
		Devices: devices, Mounter: mounter, Log: slog.New(slog.DiscardHandler),
	}
	return e, devices, mounter, root
}

func dests(root string) Destinations {
	return Destinations{
		PGData:      root + "/var/lib/postgresql/16/main",
		Tablespaces: map[uint32]string{16400: root + "/pgts/fast"},
	}
}

func tags(list []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range list {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func TestEBSRestore(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t) // subtests run in parallel after this returns

	t.Run("volumes built, attached and mounted", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, devices, mounter, root := r.provider()
		dest := dests(root)
		// Fast Snapshot Restore (which moto lacks) is enabled for the
		// pg_wal snapshot in the target zone and being enabled for the
		// tablespace's.
		r.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores(r.az, map[string]string{r.snap[1]: "enabled", r.snap[2]: "optimizing"}))

		plan, err := e.Plan(t.Context(), r.m, dest)
		if err != nil {
			t.Fatal(err)
		}
		initialized := "initialized at 200 MiB/s: full performance in about 51s (10 GiB)"
		wantPlan := []string{
			fmt.Sprintf("create 3 volumes from the snapshots in %s, attach each to %s at the first free device name in /dev/sdf-/dev/sdp, and mount it:", r.az, r.instance),
			fmt.Sprintf("  %s (of %s, was /dev/sdg at /pgwal): io2, 10 GiB, 1000 IOPS, initialized at 200 MiB/s → mount xfs at %s/pgwal (rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota,nouuid)", r.snap[1], r.src[1], root),
			fmt.Sprintf("    Fast Snapshot Restore enabled in %s but not used (the initialization rate applies instead); %s", r.az, initialized),
			fmt.Sprintf("  %s (of %s, was /dev/sdh at /pgts): gp3, 10 GiB, 4000 IOPS, 250 MiB/s, encrypted with %s, initialized at 200 MiB/s → mount ext4 at %s/pgts (rw,noatime,seclabel)", r.snap[2], r.src[2], restoreKMSKey, root),
			fmt.Sprintf("    Fast Snapshot Restore optimizing in %s; %s", r.az, initialized),
			fmt.Sprintf("  %s (of %s, was /dev/sdf at /var/lib/postgresql): gp3, 10 GiB, 3000 IOPS, 125 MiB/s, initialized at 200 MiB/s → mount ext4 at %s/var/lib/postgresql (rw,noatime)", r.snap[0], r.src[0], root),
			fmt.Sprintf("    Fast Snapshot Restore not enabled in %s; %s", r.az, initialized),
			"  full performance of every volume: in about 51s",
			fmt.Sprintf("  data directory → %s/var/lib/postgresql/16/main (was /var/lib/postgresql/16/main)", root),
			fmt.Sprintf("  tablespace fast (oid 16400, was /pgts/fast) → %s/pgts/fast", root),
		}
		if !slices.Equal(plan, wantPlan) {
			t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(plan, "\n"), strings.Join(wantPlan, "\n"))
		}
		if n := len(r.proxy.Requests("CreateVolume")); n != 0 {
			t.Errorf("Plan made %d volumes", n)
		}

		built, err := e.Materialize(t.Context(), r.m, dest)
		if err != nil {
			t.Fatal(err)
		}
		vols := r.restoredVolumes()
		if len(vols) != 3 {
			t.Fatalf("%d restored volumes, want 3", len(vols))
		}
		bySnap := map[string]types.Volume{}
		for _, v := range vols {
			bySnap[aws.ToString(v.SnapshotId)] = v
		}
		for i, want := range []struct {
			typ              types.VolumeType
			iops, throughput int32
			kms              string
			mountPoint       string
		}{
			{types.VolumeTypeGp3, 3000, 125, "", "/var/lib/postgresql"},
			{types.VolumeTypeIo2, 1000, 0, "", "/pgwal"},
			{types.VolumeTypeGp3, 4000, 250, restoreKMSKey, "/pgts"},
		} {
			v, ok := bySnap[r.snap[i]]
			if !ok {
				t.Errorf("no volume from %s", r.snap[i])
				continue
			}
			id := aws.ToString(v.VolumeId)
			if v.VolumeType != want.typ || aws.ToInt32(v.Iops) != want.iops || aws.ToInt32(v.Throughput) != want.throughput ||
				aws.ToString(v.KmsKeyId) != want.kms || aws.ToBool(v.Encrypted) != (want.kms != "") || aws.ToString(v.AvailabilityZone) != r.az {
				t.Errorf("volume %s from %s: %s, %d IOPS, %d MiB/s, key %q, encrypted %t in %s; want %+v in %s", id, r.snap[i], v.VolumeType,
					aws.ToInt32(v.Iops), aws.ToInt32(v.Throughput), aws.ToString(v.KmsKeyId), aws.ToBool(v.Encrypted), aws.ToString(v.AvailabilityZone), want, r.az)
			}
			wantTags := map[string]string{"walsnap:restored-from": r.snap[i], "walsnap:backup-id": r.m.ID, "Name": "walsnap restore " + r.m.ID + " " + want.mountPoint}
			if got := tags(v.Tags); !maps.Equal(got, wantTags) {
				t.Errorf("volume %s: tags %v, want %v", id, got, wantTags)
			}
			if len(v.Attachments) != 1 || aws.ToString(v.Attachments[0].InstanceId) != r.instance {
				t.Errorf("volume %s: attachments %+v, want one to %s", id, v.Attachments, r.instance)
			}
		}
		for _, req := range r.proxy.Requests("CreateVolume") {
			if got := req.Get("VolumeInitializationRate"); got != "200" {
				t.Errorf("CreateVolume: VolumeInitializationRate = %q", got)
			}
		}
		_, attached, err := r.client.InstanceVolumes(t.Context(), r.instance)
		if err != nil {
			t.Fatal(err)
		}
		wantAttached := map[string]string{"/dev/sdf": r.bystander,
			"/dev/sdg": aws.ToString(bySnap[r.snap[1]].VolumeId), // mounted first: /pgwal is shallower
			"/dev/sdh": aws.ToString(bySnap[r.snap[2]].VolumeId),
			"/dev/sdi": aws.ToString(bySnap[r.snap[0]].VolumeId),
		}
		delete(attached, "/dev/sda1")
		if !maps.Equal(attached, wantAttached) {
			t.Errorf("attached %v, want %v", attached, wantAttached)
		}

		order := []string{aws.ToString(bySnap[r.snap[1]].VolumeId), aws.ToString(bySnap[r.snap[2]].VolumeId), aws.ToString(bySnap[r.snap[0]].VolumeId)}
		if !slices.Equal(devices.calls, order) {
			t.Errorf("WaitDevice calls %v, want %v", devices.calls, order)
		}
		wantMounts := []string{
			"/dev/fake-" + order[0] + " " + root + "/pgwal xfs rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota,nouuid",
			"/dev/fake-" + order[1] + " " + root + "/pgts ext4 rw,noatime,seclabel",
			"/dev/fake-" + order[2] + " " + root + "/var/lib/postgresql ext4 rw,noatime",
		}
		if !slices.Equal(mounter.mounts, wantMounts) {
			t.Errorf("mounts:\n%s\nwant:\n%s", strings.Join(mounter.mounts, "\n"), strings.Join(wantMounts, "\n"))
		}
		if link, err := os.Readlink(filepath.Join(dest.PGData, "pg_wal")); err != nil || link != root+"/pgwal/16/main" {
			t.Errorf("pg_wal links to %q (%v), want the restored %s/pgwal/16/main", link, err, root)
		}
		if len(mounter.unmounts) != 0 {
			t.Errorf("unmounted %v", mounter.unmounts)
		}
		// What was built, and its removal.
		var steps []string
		for _, s := range built.Steps {
			steps = append(steps, s.Name)
		}
		wantMounted := []string{root + "/pgwal", root + "/pgts", root + "/var/lib/postgresql"}
		if !slices.Equal(built.Volumes, order) || built.Instance != r.instance || !slices.Equal(built.Mounts, wantMounted) ||
			!slices.Equal(steps, []string{"create", "attach", "device", "mount"}) {
			t.Errorf("built %+v, want volumes %v on %s mounted at %v, and four steps", built, order, r.instance, wantMounted)
		}
		if err := built.Undo(t.Context()); err != nil {
			t.Fatal(err)
		}
		if left := r.restoredVolumes(); len(left) != 0 {
			t.Errorf("volumes left after Undo: %v", r.restored())
		}
		if want := []string{root + "/var/lib/postgresql", root + "/pgts", root + "/pgwal"}; !slices.Equal(mounter.unmounts, want) {
			t.Errorf("Undo unmounted %v, want %v (deepest last mounted first)", mounter.unmounts, want)
		}
	})

	t.Run("overrides", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, _, root := r.provider()
		e.VolumeType, e.IOPS = "io2", 5000
		e.Tags = map[string]string{"walsnap:drill": "D1"}
		if _, err := e.Materialize(t.Context(), r.m, dests(root)); err != nil {
			t.Fatal(err)
		}
		vols := r.restoredVolumes()
		if len(vols) != 3 {
			t.Fatalf("%d restored volumes, want 3", len(vols))
		}
		for _, v := range vols {
			if got := tags(v.Tags); got["walsnap:drill"] != "D1" || got["walsnap:backup-id"] != r.m.ID {
				t.Errorf("volume %s: tags %v, want walsnap:drill D1 beside the restore's own", aws.ToString(v.VolumeId), got)
			}
			if v.VolumeType != types.VolumeTypeIo2 || aws.ToInt32(v.Iops) != 5000 || aws.ToInt32(v.Throughput) != 0 {
				t.Errorf("volume from %s: %s, %d IOPS, %d MiB/s; want io2, 5000 IOPS, no throughput",
					aws.ToString(v.SnapshotId), v.VolumeType, aws.ToInt32(v.Iops), aws.ToInt32(v.Throughput))
			}
		}
		for _, req := range r.proxy.Requests("CreateVolume") {
			if req.Has("Throughput") {
				t.Errorf("CreateVolume of io2 with a throughput: %v", req)
			}
		}
	})

	// failed checks that a failed restore removed exactly the volumes it
	// created, and nothing else.
	failed := func(t *testing.T, r *ebsRestoreRig, err error, created int) {
		t.Helper()
		if err == nil {
			t.Fatal("Materialize succeeded")
		}
		if n := len(r.proxy.Requests("CreateVolume")); n != created {
			t.Errorf("%d volumes created, want %d", n, created)
		}
		if left := r.restoredVolumes(); len(left) != 0 {
			t.Errorf("volumes left after the failure: %v", r.restored())
		}
		_, attached, ierr := r.client.InstanceVolumes(t.Context(), r.instance)
		if ierr != nil || attached["/dev/sdf"] != r.bystander || len(attached) != 2 {
			t.Errorf("attached to the target: %v (%v), want the boot volume and %s", attached, ierr, r.bystander)
		}
		if infos, derr := r.client.DescribeVolumes(t.Context(), append(r.src[:], r.bystander)); derr != nil || len(infos) != 4 {
			t.Errorf("source or unrelated volumes gone: %v", derr)
		}
	}

	t.Run("a device does not appear", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, devices, mounter, root := r.provider()
		devices.fail = 2
		_, err := e.Materialize(t.Context(), r.m, dests(root))
		if err == nil || !strings.Contains(err.Error(), "refused by the test") {
			t.Errorf("Materialize = %v, want the device failure", err)
		}
		failed(t, r, err, 2)
		if !slices.Equal(mounter.unmounts, []string{root + "/pgwal"}) {
			t.Errorf("unmounted %v, want %s/pgwal", mounter.unmounts, root)
		}
	})

	t.Run("an attachment fails", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, mounter, root := r.provider()
		var mu sync.Mutex
		attaches := 0
		r.proxy.Set(func(_ *http.Request, form url.Values) string {
			mu.Lock()
			defer mu.Unlock()
			if form.Get("Action") == "AttachVolume" {
				if attaches++; attaches == 3 {
					return "IncorrectState"
				}
			}
			return ""
		}, nil)
		_, err := e.Materialize(t.Context(), r.m, dests(root))
		r.proxy.Set(nil, nil)
		if err == nil || !strings.Contains(err.Error(), "IncorrectState") {
			t.Errorf("Materialize = %v, want the attach failure", err)
		}
		failed(t, r, err, 3)
		if want := []string{root + "/pgts", root + "/pgwal"}; !slices.Equal(mounter.unmounts, want) {
			t.Errorf("unmounted %v, want %v", mounter.unmounts, want)
		}
	})

	t.Run("no data directory on the volumes", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, mounter, root := r.provider()
		contents := mounter.contents
		mounter.contents = func(target string) map[string]string {
			if strings.HasSuffix(target, "/var/lib/postgresql") {
				return nil
			}
			return contents(target)
		}
		_, err := e.Materialize(t.Context(), r.m, dests(root))
		if err == nil || !strings.Contains(err.Error(), "no data directory") {
			t.Errorf("Materialize = %v, want no data directory", err)
		}
		failed(t, r, err, 3)
		if len(mounter.unmounts) != 3 {
			t.Errorf("unmounted %v, want all 3", mounter.unmounts)
		}
	})

	t.Run("refused before creating anything", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, _, root := r.provider()
		wrongPG := dests(root)
		wrongPG.PGData = "/srv/restored"
		wrongTS := dests(root)
		wrongTS.Tablespaces = map[uint32]string{16400: "/pgts/fast"}
		rootFS := *r.m
		rootFS.Payload = bytes.Replace(r.m.Payload, []byte(`"mount_point": "/var/lib/postgresql"`), []byte(`"mount_point": "/"`), 1)
		noMount := *r.m
		noMount.Payload = bytes.Replace(r.m.Payload, []byte(`"mount_point": "/var/lib/postgresql"`), []byte(`"mount_point": ""`), 1)
		for _, tc := range []struct {
			name      string
			mountRoot string
			m         *manifest.Manifest
			dest      Destinations
			want      string
		}{
			{"pgdata elsewhere", root, r.m, wrongPG, "restore with --pgdata " + root + "/var/lib/postgresql/16/main"},
			{"tablespace elsewhere", root, r.m, wrongTS, "restore with --tablespace-map /pgts/fast=" + root + "/pgts/fast"},
			{"root filesystem without a mount root", "", &rootFS, Destinations{PGData: "/var/lib/postgresql/16/main"}, "root filesystem"},
			{"data directory on no recorded mount", root, &noMount, dests(root), "restore them by hand"},
			{"relative mount root", "mnt", r.m, dests(root), "not absolute"},
		} {
			e := *e
			e.MountRoot = tc.mountRoot
			_, perr := e.Plan(t.Context(), tc.m, tc.dest)
			_, merr := e.Materialize(t.Context(), tc.m, tc.dest)
			if perr == nil || merr == nil || !strings.Contains(perr.Error(), tc.want) || !strings.Contains(merr.Error(), tc.want) {
				t.Errorf("%s: Plan = %v, Materialize = %v; want %q", tc.name, perr, merr, tc.want)
			}
		}
		// A file where a volume would be mounted.
		if err := os.MkdirAll(filepath.Join(root, "pgts"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "pgts", "precious"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Materialize(t.Context(), r.m, dests(root)); err == nil || !strings.Contains(err.Error(), "precious") {
			t.Errorf("Materialize = %v, want a refusal to hide %s/pgts/precious", err, root)
		}
		if n := len(r.proxy.Requests("CreateVolume")); n != 0 {
			t.Errorf("%d volumes created", n)
		}
	})

	t.Run("overrides beyond EC2's limits", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		attaches := len(r.proxy.Requests("AttachVolume")) // the bystander's
		for _, tc := range []struct {
			name string
			edit func(e *EBS)
			want string
		}{
			{"initialization rate too low", func(e *EBS) { e.InitializationRate = 50 }, "--initialization-rate: initialization rate 50 MiB/s: EC2 takes 100-300"},
			{"initialization rate too high", func(e *EBS) { e.InitializationRate = 301 }, "EC2 takes 100-300"},
			{"IOPS for gp2", func(e *EBS) { e.VolumeType, e.IOPS = "gp2", 5000 }, "gp2 volumes take no IOPS setting"},
			{"IOPS out of range", func(e *EBS) { e.IOPS = 999999 }, "999999 IOPS: gp3 volumes take 3000-80000"},
			{"IOPS per GiB", func(e *EBS) { e.VolumeType, e.IOPS = "io2", 20000 }, "20000 IOPS on 10 GiB of io2: at most 1000 IOPS per GiB, 10000"},
			{"throughput for io2", func(e *EBS) { e.VolumeType, e.Throughput = "io2", 500 }, "io2 volumes take no throughput setting"},
			{"throughput out of range", func(e *EBS) { e.Throughput = 3000 }, "3000 MiB/s: gp3 volumes take 125-2000"},
			{"throughput per IOPS", func(e *EBS) { e.Throughput = 1000 }, "1000 MiB/s with 3000 IOPS: gp3 volumes have at most 0.25 MiB/s per IOPS, 750"},
			{"size for st1", func(e *EBS) { e.VolumeType = "st1" }, "st1 volumes are 125-16384 GiB, not 10 GiB"},
			{"unknown type", func(e *EBS) { e.VolumeType = "gp9" }, `volume type "gp9"`},
		} {
			e, _, _, root := r.provider()
			tc.edit(e)
			_, perr := e.Plan(t.Context(), r.m, dests(root))
			_, merr := e.Materialize(t.Context(), r.m, dests(root))
			if perr == nil || merr == nil || !strings.Contains(perr.Error(), tc.want) || !strings.Contains(merr.Error(), tc.want) {
				t.Errorf("%s: Plan = %v, Materialize = %v; want %q", tc.name, perr, merr, tc.want)
			}
		}
		if n, m := len(r.proxy.Requests("CreateVolume")), len(r.proxy.Requests("AttachVolume"))-attaches; n != 0 || m != 0 {
			t.Errorf("%d CreateVolume and %d AttachVolume requests, want none", n, m)
		}
	})

	t.Run("a device that never appears", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, mounter, root := r.provider()
		empty := t.TempDir()
		if err := os.Mkdir(filepath.Join(empty, "block"), 0o755); err != nil {
			t.Fatal(err)
		}
		e.Devices, e.DeviceTimeout = ec2Devices{sysRoot: empty, devRoot: empty}, time.Second
		start := time.Now()
		_, err := e.Materialize(t.Context(), r.m, dests(root))
		if err == nil || !strings.Contains(err.Error(), "its device did not appear within 1s (--device-timeout)") {
			t.Errorf("Materialize = %v, want the device timeout", err)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("gave up after %s", took)
		}
		failed(t, r, err, 1)
		if len(mounter.mounts) != 0 {
			t.Errorf("mounted %v", mounter.mounts)
		}
	})

	t.Run("recovery time", func(t *testing.T) {
		t.Parallel()
		r := newEBSRestoreRig(t, env)
		e, _, _, root := r.provider()
		e.InitializationRate = 0
		plan := func() []string {
			t.Helper()
			lines, err := e.Plan(t.Context(), r.m, dests(root))
			if err != nil {
				t.Fatal(err)
			}
			return lines
		}
		has := func(lines []string, want string) bool {
			return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) })
		}
		// moto has no DescribeFastSnapshotRestores: the plan says so.
		if lines := plan(); !has(lines, "Fast Snapshot Restore state unknown (describe fast snapshot restores in "+r.az) || !has(lines, "not predictable with lazy loading") {
			t.Errorf("plan without Fast Snapshot Restore states:\n%s", strings.Join(lines, "\n"))
		}
		r.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores(r.az, nil))
		lines := plan()
		if !has(lines, "    Fast Snapshot Restore not enabled in "+r.az+"; lazy loading: each block is slow on its first read, full performance once all 10 GiB were read (with --initialization-rate 300: about 34s)") ||
			!has(lines, "full performance of every volume: not predictable with lazy loading (give --initialization-rate, or enable Fast Snapshot Restore in "+r.az+")") {
			t.Errorf("lazy plan:\n%s", strings.Join(lines, "\n"))
		}
		r.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores(r.az, map[string]string{r.snap[0]: "enabled", r.snap[1]: "enabled", r.snap[2]: "enabled"}))
		lines = plan()
		if n := len(slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
			return l != "    Fast Snapshot Restore enabled in "+r.az+": full performance at once"
		})); n != 3 || !has(lines, "full performance of every volume: at once") {
			t.Errorf("plan with Fast Snapshot Restore:\n%s", strings.Join(lines, "\n"))
		}
		// Another zone's Fast Snapshot Restore does not count.
		r.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores("us-east-1z", map[string]string{r.snap[0]: "enabled"}))
		if lines := plan(); has(lines, "at once") {
			t.Errorf("Fast Snapshot Restore of another zone counted:\n%s", strings.Join(lines, "\n"))
		}
	})

	t.Run("instance from the config, zone from EC2", func(t *testing.T) {
		// No t.Parallel: the metadata service endpoint is set in the
		// environment, to one that does not answer.
		r := newEBSRestoreRig(t, env)
		e, _, _, root := r.provider()
		e.AZ = ""
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
		lines, err := e.Plan(t.Context(), r.m, dests(root))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("create 3 volumes from the snapshots in %s, attach each to %s ", r.az, r.instance); !strings.HasPrefix(lines[0], want) {
			t.Errorf("plan starts %q, want %q", lines[0], want)
		}
		if n := len(r.proxy.Requests("DescribeInstances")); n == 0 {
			t.Error("the zone did not come from DescribeInstances")
		}
		e.InstanceID = ""
		if _, err := e.Plan(t.Context(), r.m, dests(root)); err == nil || !strings.Contains(err.Error(), "give --instance-id or ebs.instance_id") {
			t.Errorf("Plan off EC2 without an instance = %v", err)
		}
	})

	t.Run("recorded mount points and the metadata service", func(t *testing.T) {
		// No t.Parallel: the metadata service endpoint is set in the
		// environment.
		r := newEBSRestoreRig(t, env)
		e, _, _, _ := r.provider()
		e.MountRoot, e.InstanceID, e.AZ = "", "", ""
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", testrig.FakeIMDS(t, r.instance, r.az))
		m := *r.m
		m.Tablespaces = nil
		m.Payload = []byte(fmt.Sprintf(`{"pgdata": "/srv/pg/data", "snapshots": [{"snapshot_id": %q, "volume_id": %q, "device": "/dev/sdf",
			"mount_point": "/srv/pg", "fs_type": "ext4", "mount_options": "rw", "size_gib": 1, "volume_type": "gp2", "iops": 100}]}`, r.snap[0], r.src[0]))
		r.proxy.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores(r.az, nil))
		plan, err := e.Plan(t.Context(), &m, Destinations{PGData: "/srv/pg/data"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			fmt.Sprintf("create 1 volume from the snapshots in %s, attach each to %s at the first free device name in /dev/sdf-/dev/sdp, and mount it:", r.az, r.instance),
			fmt.Sprintf("  %s (of %s, was /dev/sdf at /srv/pg): gp2, 1 GiB, initialized at 200 MiB/s → mount ext4 at /srv/pg (rw)", r.snap[0], r.src[0]),
			fmt.Sprintf("    Fast Snapshot Restore not enabled in %s; initialized at 200 MiB/s: full performance in about 5s (1 GiB)", r.az),
			"  full performance of every volume: in about 5s",
			"  data directory → /srv/pg/data (was /var/lib/postgresql/16/main)",
		}
		if !slices.Equal(plan, want) {
			t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(plan, "\n"), strings.Join(want, "\n"))
		}
		_, err = e.Plan(t.Context(), &m, Destinations{PGData: "/srv/pg/other"})
		if err == nil || !strings.Contains(err.Error(), "--pgdata /srv/pg/data") {
			t.Errorf("Plan = %v, want the --pgdata to use", err)
		}
	})
}

func TestMountOptions(t *testing.T) {
	for _, tc := range []struct{ fstype, recorded, want string }{
		{"ext4", "rw,noatime", "rw,noatime"},
		{"ext4", "ro,relatime,errors=remount-ro", "rw,relatime,errors=remount-ro"},
		{"xfs", "rw,noatime,attr2,inode64,noquota", "rw,noatime,attr2,inode64,noquota,nouuid"},
		{"xfs", "rw,nouuid", "rw,nouuid"},
		{"ext4", "", "rw"},
	} {
		if got := mountOptions(tc.fstype, tc.recorded); got != tc.want {
			t.Errorf("mountOptions(%q, %q) = %q, want %q", tc.fstype, tc.recorded, got, tc.want)
		}
	}
}

// TestEC2Devices: the device of an attached volume is found by its NVMe
// serial on Nitro, and by its attachment name on Xen; one that never
// appears is waited for until the context's deadline.
func TestEC2Devices(t *testing.T) {
	nitro := filepath.Join("..", "testdata", "blockdev", "nitro-single")
	d := ec2Devices{sysRoot: filepath.Join(nitro, "sys"), devRoot: filepath.Join(nitro, "dev")}
	dev, err := d.WaitDevice(t.Context(), "vol-0123456789abcdef0", "/dev/sdf")
	if err != nil || dev != filepath.Join(nitro, "dev", "nvme1n1") {
		t.Errorf("WaitDevice on Nitro = %q, %v; want nvme1n1", dev, err)
	}
	xen := filepath.Join("..", "testdata", "blockdev", "xen")
	d = ec2Devices{sysRoot: filepath.Join(xen, "sys"), devRoot: filepath.Join(xen, "dev")}
	dev, err = d.WaitDevice(t.Context(), "vol-0123456789abcdef0", "/dev/sdg")
	if err != nil || dev != filepath.Join(xen, "dev", "xvdg") {
		t.Errorf("WaitDevice on Xen = %q, %v; want xvdg", dev, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 1200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.WaitDevice(ctx, "vol-0000000000000dead", "/dev/sdp")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < time.Second || !strings.Contains(err.Error(), "xvdp") {
		t.Errorf("WaitDevice of an absent volume = %v after %s, want the deadline after polling for both names", err, time.Since(start))
	}
}

// TestKernelMounter mounts two clones of one XFS filesystem at once (same
// UUID: nouuid) and an ext4 filesystem with an option the kernel shows but
// does not take back.
func TestKernelMounter(t *testing.T) {
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "mounting needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.xfs", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrig.Unavailable(t, "%s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	image := func(name, mkfs string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		run(mkfs, "-q", p)
		return p
	}
	loop := func(img string) string {
		dev := run("losetup", "--find", "--show", img)
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		return dev
	}
	var logs bytes.Buffer
	k := kernelMounter{log: slog.New(slog.NewTextHandler(&logs, nil))}
	mount := func(dev, fstype, options string) (string, error) {
		target := filepath.Join(dir, "mnt-"+filepath.Base(dev))
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		err := k.Mount(t.Context(), dev, target, fstype, options)
		if err == nil {
			t.Cleanup(func() {
				if err := k.Unmount(target); err != nil {
					t.Error(err)
				}
			})
		}
		return target, err
	}

	xfs := image("xfs.img", "mkfs.xfs", 300<<20)
	clone := filepath.Join(dir, "clone.img")
	run("cp", "--sparse=always", xfs, clone)
	src, cl := loop(xfs), loop(clone)
	srcMnt, err := mount(src, "xfs", "rw,noatime,inode64,noquota") // as on the source host
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mount(cl, "xfs", "rw,noatime"); err == nil {
		t.Fatal("a clone with the same UUID mounted without nouuid")
	}
	clMnt, err := mount(cl, "xfs", mountOptions("xfs", "rw,noatime,inode64,noquota"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(clMnt, "f"), []byte("x"), 0o644); err != nil {
		t.Errorf("clone not writable: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srcMnt, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the clone's file is on the source: %v", err)
	}
	if opts := mountedWith(t, clMnt); !strings.Contains(opts, "noatime") || !strings.HasPrefix(opts, "rw") {
		t.Errorf("clone mounted with %q, want rw and noatime", opts)
	}

	ext4 := loop(image("ext4.img", "mkfs.ext4", 32<<20))
	extMnt, err := mount(ext4, "ext4", "rw,noatime,seclabel,nosuid")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "seclabel") {
		t.Errorf("no warning about the options left out:\n%s", logs.String())
	}
	if opts := mountedWith(t, extMnt); !strings.Contains(opts, "noatime") || !strings.Contains(opts, "nosuid") {
		t.Errorf("ext4 mounted with %q, want noatime and nosuid kept", opts)
	}
}

// mountedWith returns the per-mount options of target from
// /proc/self/mountinfo.
func mountedWith(t *testing.T, target string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == target {
			return f[5]
		}
	}
	t.Fatalf("%s is not mounted", target)
	return ""
}
