package basebackup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// The EBS provider runs against moto_server (testrig.Moto), shared by
// every test: each subtest launches its own instance and volumes. A
// testrig.EC2Proxy in front of moto records the API calls in order with the
// freezer's, and refuses, delays or edits calls where moto cannot be made
// to (throttling, snapshots pending or in error, a hanging call).
// Discovery reads copies of the testdata/blockdev fixtures whose NVMe
// serials are the moto volumes' ids and whose mount points hold the test's
// PostgreSQL directories.

// eventLog is the order of API calls and freezer calls.
type eventLog struct {
	mu   sync.Mutex
	list []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, e)
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

// isCall reports whether form is a request for action that is not a
// DryRun check.
func isCall(form url.Values, action string) bool {
	return form.Get("Action") == action && form.Get("DryRun") != "true"
}

// recordingFreezer logs freeze/thaw calls and fails the one named by fail.
type recordingFreezer struct {
	log  *eventLog
	fail string // e.g. "freeze /x"
}

func (f *recordingFreezer) Freeze(mp string) error { return f.call("freeze " + mp) }
func (f *recordingFreezer) Thaw(mp string) error   { return f.call("thaw " + mp) }

func (f *recordingFreezer) call(e string) error {
	f.log.add(e)
	if e == f.fail {
		return errors.New(e + ": refused by the test")
	}
	return nil
}

// ebsRig is one subtest's view of moto: a client of the provider (through
// the proxy, which logs each request as "api <Action>", or "api <Action>
// (DryRun)" for a DryRun check), a direct EC2 client for setup and checks,
// and the event log.
type ebsRig struct {
	t      *testing.T
	client *ebs.Client
	ec2    *ec2.Client
	proxy  *testrig.EC2Proxy
	log    *eventLog
}

// newEBSRig needs the AWS variables of testrig.MotoEnv set by the caller
// (t.Setenv is not allowed in parallel tests). Its client retries a
// snapshot refused with SnapshotCreationPerVolumeRateExceeded at once.
func newEBSRig(t *testing.T, env testrig.MotoEnv) *ebsRig {
	t.Helper()
	r := &ebsRig{t: t, log: &eventLog{}, ec2: env.EC2(), proxy: testrig.NewEC2Proxy(t, env.Endpoint)}
	r.proxy.Observe(func(form url.Values) {
		if form.Get("DryRun") == "true" {
			r.log.add("api " + form.Get("Action") + " (DryRun)")
			return
		}
		r.log.add("api " + form.Get("Action"))
	})
	var err error
	r.client, err = ebs.New(t.Context(), ebs.Options{Region: env.Region, Endpoint: r.proxy.URL, SnapshotBackoff: []time.Duration{time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// launch starts an instance, terminated when the test ends, and returns
// its id, AZ and boot volume.
func (r *ebsRig) launch() (instance, az, root string) {
	t := r.t
	t.Helper()
	instance, az = testrig.LaunchInstance(t, r.ec2, "/dev/sda1")
	root, _, err := r.client.InstanceVolumes(t.Context(), instance)
	if err != nil || root == "" {
		t.Fatalf("boot volume of %s: %q, %v", instance, root, err)
	}
	return instance, az, root
}

// volume creates a 1 GiB volume (removed when the test ends), attached to
// instance as device unless device is "".
func (r *ebsRig) volume(in *ec2.CreateVolumeInput, instance, device string) string {
	t := r.t
	t.Helper()
	id := testrig.NewVolume(t, r.ec2, in)
	if device != "" {
		if err := r.client.AttachVolume(t.Context(), id, instance, device); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// snapshotsTagged returns the snapshots tagged with backup id, and deletes
// them when the test ends.
func (r *ebsRig) snapshotsTagged(backupID string) []types.Snapshot {
	t := r.t
	t.Helper()
	out, err := r.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{
		Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{backupID}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Snapshots
}

// deleteBackupSnapshots deletes the snapshots of backup id when the test
// ends.
func (r *ebsRig) deleteBackupSnapshots(backupID string) {
	r.t.Cleanup(func() {
		out, err := r.ec2.DescribeSnapshots(testrig.CleanupContext(r.t), &ec2.DescribeSnapshotsInput{
			Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{backupID}}},
		})
		if err != nil {
			r.t.Errorf("clean up: %v", err)
			return
		}
		for _, s := range out.Snapshots {
			if _, err := r.ec2.DeleteSnapshot(testrig.CleanupContext(r.t), &ec2.DeleteSnapshotInput{SnapshotId: s.SnapshotId}); err != nil {
				r.t.Errorf("clean up: %v", err)
			}
		}
	})
}

// nitroHost is a copy of the nitro-multi fixture (root disk nvme0n1,
// PGDATA's disk nvme1n1 ext4, pg_wal's nvme2n1p1 xfs, a tablespace's
// nvme3n1 ext4) with the serials replaced by moto volume ids and the mount
// points moved under a temporary directory, where the PostgreSQL
// directories are: PGDATA, its pg_wal symlink's target, and tablespaces
// on the tablespace disk and on the root disk.
type nitroHost struct {
	mountinfo, sys               string
	pgdata, wal, ts, rootTS      string
	dataMount, walMount, tsMount string
}

// newNitroHost maps the fixture's disks to the volume ids root, data, wal
// and ts.
func newNitroHost(t *testing.T, root, data, wal, ts string) nitroHost {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fixture := filepath.Join(dir, "fixture")
	if out, err := exec.Command("cp", "-a", filepath.Join("..", "testdata", "blockdev", "nitro-multi"), fixture).CombinedOutput(); err != nil {
		t.Fatalf("copy fixture: %v\n%s", err, out)
	}
	serials := map[string]string{ // the fixture's made-up ids
		"vol0a1b2c3d4e5f60718": root,
		"vol0123456789abcdef0": data,
		"vol0fedcba9876543210": wal,
		"vol1a2b3c4d":          ts,
	}
	err = filepath.WalkDir(filepath.Join(fixture, "sys", "devices"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "serial" {
			return err
		}
		old, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		id, ok := serials[strings.TrimSpace(string(old))]
		if !ok {
			return fmt.Errorf("%s: unknown serial %q", p, old)
		}
		return os.WriteFile(p, []byte(strings.Replace(id, "-", "", 1)+"\n"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	h := nitroHost{
		mountinfo: filepath.Join(fixture, "mountinfo"),
		sys:       filepath.Join(fixture, "sys"),
		dataMount: filepath.Join(dir, "pg"),
		walMount:  filepath.Join(dir, "wal"),
		tsMount:   filepath.Join(dir, "ts"),
	}
	h.pgdata = filepath.Join(h.dataMount, "16", "main")
	h.wal = filepath.Join(h.walMount, "16", "main")
	h.ts = filepath.Join(h.tsMount, "fast")
	h.rootTS = filepath.Join(dir, "rootts") // on "/" in the fixture
	info, err := os.ReadFile(h.mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.NewReplacer(" /var/lib/postgresql ", " "+h.dataMount+" ", " /pgwal ", " "+h.walMount+" ", " /pgts ", " "+h.tsMount+" ").Replace(string(info))
	if err := os.WriteFile(h.mountinfo, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{h.pgdata, h.wal, h.ts, h.rootTS} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(h.wal, filepath.Join(h.pgdata, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	return h
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ebsJob is a backup job with a unique id whose snapshots are deleted
// when the test ends.
func (r *ebsRig) ebsJob(pgdata string, tablespaces ...string) (*Job, *syncBuffer) {
	id := fmt.Sprintf("T%d", time.Now().UnixNano())
	r.deleteBackupSnapshots(id)
	logs := &syncBuffer{}
	job := &Job{
		ID: id, Label: "ebs test", SystemID: 7312345678901234567, PGData: pgdata,
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	}
	for i, ts := range tablespaces {
		job.Tablespaces = append(job.Tablespaces, manifest.Tablespace{OID: uint32(16400 + i), Name: fmt.Sprintf("ts%d", i), Location: ts})
	}
	return job, logs
}

// multiSetup is an instance with PGDATA, pg_wal and a tablespace on three
// volumes of different kinds, as nitroHost maps them.
type multiSetup struct {
	instance, az, root, data, wal, ts string
	host                              nitroHost
}

const testKMSKey = "arn:aws:kms:us-east-1:123456789012:key/4b1e1c5e-walsnap-ebs-test"

func (r *ebsRig) multi() multiSetup {
	var s multiSetup
	s.instance, s.az, s.root = r.launch()
	s.data = r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az, VolumeType: types.VolumeTypeGp3,
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("role"), Value: aws.String("pgdata")}}}},
	}, s.instance, "/dev/sdf")
	s.wal = r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az, VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(1000)}, s.instance, "/dev/sdg")
	s.ts = r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az, VolumeType: types.VolumeTypeGp3, Iops: aws.Int32(4000), Throughput: aws.Int32(250),
		Encrypted: aws.Bool(true), KmsKeyId: aws.String(testKMSKey)}, s.instance, "/dev/sdh")
	s.host = newNitroHost(r.t, s.root, s.data, s.wal, s.ts)
	return s
}

func (s multiSetup) provider(r *ebsRig) *EBS {
	return &EBS{Client: r.client, InstanceID: s.instance, mountinfo: s.host.mountinfo, sysRoot: s.host.sys, poll: time.Millisecond}
}

func TestEBSCapture(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t) // subtests run in parallel after this returns

	t.Run("several volumes discovered", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		h := s.host
		job, logs := r.ebsJob(h.pgdata, h.ts)
		got, err := s.provider(r).Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := got.Payload.(manifest.EBSPayload)
		if !ok || len(p.Snapshots) != 3 {
			t.Fatalf("payload %#v, want an manifest.EBSPayload of 3 snapshots", got.Payload)
		}
		want := manifest.EBSPayload{InstanceID: s.instance, AZ: s.az, PGData: h.pgdata, Tablespaces: map[uint32]string{16400: h.ts}, Snapshots: []manifest.EBSSnapshot{{
			VolumeID: s.data, Device: "/dev/sdf", MountPoint: h.dataMount, FSType: "ext4", MountOptions: "rw,noatime",
			Paths: []string{h.pgdata}, SizeGiB: 1, Type: "gp3", IOPS: 3000, AZ: s.az,
		}, {
			VolumeID: s.wal, Device: "/dev/sdg", MountPoint: h.walMount, FSType: "xfs", MountOptions: "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota",
			Paths: []string{h.wal}, SizeGiB: 1, Type: "io2", IOPS: 1000, AZ: s.az,
		}, {
			VolumeID: s.ts, Device: "/dev/sdh", MountPoint: h.tsMount, FSType: "ext4", MountOptions: "rw,noatime",
			Paths: []string{h.ts}, SizeGiB: 1, Type: "gp3", IOPS: 4000, Throughput: 250, AZ: s.az, Encrypted: true, KMSKeyID: testKMSKey,
		}}}
		for i := range want.Snapshots {
			want.Snapshots[i].SnapshotID, want.Snapshots[i].StartTime = p.Snapshots[i].SnapshotID, p.Snapshots[i].StartTime
			if !strings.HasPrefix(p.Snapshots[i].SnapshotID, "snap-") || p.Snapshots[i].StartTime.IsZero() {
				t.Errorf("snapshot %d: id %q, start %v", i, p.Snapshots[i].SnapshotID, p.Snapshots[i].StartTime)
			}
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("payload\n%+v\nwant\n%+v", p, want)
		}
		// One crash-consistent call for the set, without the boot volume.
		reqs := r.proxy.Made("CreateSnapshots")
		if len(reqs) != 1 || reqs[0].Get("InstanceSpecification.ExcludeBootVolume") != "true" {
			t.Errorf("CreateSnapshots requests %v, want one excluding the boot volume", reqs)
		}

		byID := map[string]types.Snapshot{}
		for _, sn := range r.snapshotsTagged(job.ID) {
			byID[aws.ToString(sn.SnapshotId)] = sn
		}
		if len(byID) != 3 {
			t.Errorf("%d snapshots tagged %s, want 3", len(byID), job.ID)
		}
		for _, rec := range p.Snapshots {
			sn := byID[rec.SnapshotID]
			tags := map[string]string{}
			for _, tag := range sn.Tags {
				tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			wantTags := map[string]string{
				"walsnap:backup-id":   job.ID,
				"walsnap:system-id":   "7312345678901234567",
				"Name":                "walsnap " + job.ID + " " + rec.MountPoint,
				"walsnap:mount-point": rec.MountPoint,
				"walsnap:device":      rec.Device,
			}
			if rec.VolumeID == s.data {
				wantTags["role"] = "pgdata" // copied from the volume
			}
			if !maps.Equal(tags, wantTags) || aws.ToString(sn.VolumeId) != rec.VolumeID {
				t.Errorf("snapshot %s of %s: tags %v, want %v", rec.SnapshotID, aws.ToString(sn.VolumeId), tags, wantTags)
			}
		}

		if got.Complete == nil {
			t.Fatal("no Complete")
		}
		if payload, err := got.Complete(t.Context()); err != nil || payload != nil {
			t.Errorf("Complete = %v, %v; want nil, nil", payload, err)
		}
		if !strings.Contains(logs.String(), "snapshots completed") {
			t.Errorf("log:\n%s", logs)
		}
		checkPayloadJSON(t, p)
	})

	t.Run("one volume listed explicitly", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		h := s.host
		// PGDATA with pg_wal inside: only the data volume holds PostgreSQL.
		if err := os.Remove(filepath.Join(h.pgdata, "pg_wal")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(h.pgdata, "pg_wal"), 0o700); err != nil {
			t.Fatal(err)
		}
		job, _ := r.ebsJob(h.pgdata)
		e := s.provider(r)
		e.Volumes = []EBSVolume{{ID: s.data}}
		got, err := e.Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		p := got.Payload.(manifest.EBSPayload)
		if len(p.Snapshots) != 1 || p.Snapshots[0].VolumeID != s.data || p.Snapshots[0].MountPoint != h.dataMount || p.Snapshots[0].FSType != "ext4" {
			t.Errorf("payload %+v, want the data volume with its mount", p)
		}
		if n := len(r.proxy.Made("CreateSnapshot")); n != 1 {
			t.Errorf("%d CreateSnapshot requests, want 1", n)
		}
		if n := len(r.snapshotsTagged(job.ID)); n != 1 {
			t.Errorf("%d snapshots, want 1", n)
		}
		if _, err := got.Complete(t.Context()); err != nil {
			t.Error(err)
		}

		t.Run("a PostgreSQL volume missing from the list", func(t *testing.T) {
			job, _ := r.ebsJob(h.pgdata, h.ts)
			_, err := e.Capture(t.Context(), job)
			if err == nil || !strings.Contains(err.Error(), s.ts) || !strings.Contains(err.Error(), "not in ebs.volumes") {
				t.Errorf("Capture = %v, want %s named as missing from ebs.volumes", err, s.ts)
			}
		})
		t.Run("a listed volume not on the instance", func(t *testing.T) {
			stray := r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az}, "", "")
			e := *e
			e.Volumes = []EBSVolume{{ID: s.data}, {ID: stray}}
			job, _ := r.ebsJob(h.pgdata)
			if _, err := e.Capture(t.Context(), job); err == nil || !strings.Contains(err.Error(), stray) {
				t.Errorf("Capture = %v, want %s named", err, stray)
			}
		})
		t.Run("undiscoverable", func(t *testing.T) {
			// PGDATA's filesystem has no block device discovery can map.
			mi := filepath.Join(t.TempDir(), "mountinfo")
			lines := "25 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n" +
				"101 25 0:77 / " + h.dataMount + " rw,noatime shared:55 - tmpfs tmpfs rw\n"
			if err := os.WriteFile(mi, []byte(lines), 0o644); err != nil {
				t.Fatal(err)
			}
			e := *e
			e.mountinfo = mi
			// Without the mount point, nothing ties PGDATA to a snapshot a
			// restore could mount: refused before anything is snapshotted.
			job, _ := r.ebsJob(h.pgdata)
			before := len(r.proxy.Requests("CreateSnapshot"))
			var notEBS *blockdev.NotEBSError
			if _, err := e.Prepare(t.Context(), job); !errors.As(err, &notEBS) || !strings.Contains(err.Error(), "mount: /path") {
				t.Errorf("Prepare = %v, want a *blockdev.NotEBSError and the ebs.volumes form to use", err)
			}
			if n := len(r.proxy.Requests("CreateSnapshot")) - before; n != 0 {
				t.Errorf("%d CreateSnapshot requests after a refusal", n)
			}
			// With the mount point: recorded, and frozen there.
			e.Volumes = []EBSVolume{{ID: s.data, MountPoint: h.dataMount}}
			e.Freeze, e.freezer = true, &recordingFreezer{log: r.log}
			got, err := e.Capture(t.Context(), job)
			if err != nil {
				t.Fatal(err)
			}
			p := got.Payload.(manifest.EBSPayload)
			if len(p.Snapshots) != 1 || p.Snapshots[0].VolumeID != s.data || p.Snapshots[0].MountPoint != h.dataMount ||
				p.Snapshots[0].FSType != "tmpfs" || !slices.Equal(p.Snapshots[0].Paths, []string{h.pgdata}) || !p.Snapshots[0].Frozen {
				t.Errorf("payload %+v, want the data volume at %s, frozen", p, h.dataMount)
			}
		})
	})

	t.Run("xen device names", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		instance, az, _ := r.launch()
		data := r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &az}, instance, "/dev/xvdf") // EC2 may spell it either way
		wal := r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &az}, instance, "/dev/sdg")
		dir, err := filepath.EvalSymlinks(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		pgdata, walDir := filepath.Join(dir, "pgsql", "data"), filepath.Join(dir, "pgwal", "pg_wal")
		for _, d := range []string{pgdata, walDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(walDir, filepath.Join(pgdata, "pg_wal")); err != nil {
			t.Fatal(err)
		}
		fixture := filepath.Join("..", "testdata", "blockdev", "xen")
		info, err := os.ReadFile(filepath.Join(fixture, "mountinfo"))
		if err != nil {
			t.Fatal(err)
		}
		moved := strings.NewReplacer(" /var/lib/pgsql ", " "+filepath.Dir(pgdata)+" ", " /pgwal ", " "+filepath.Dir(walDir)+" ").Replace(string(info))
		mi := filepath.Join(dir, "mountinfo")
		if err := os.WriteFile(mi, []byte(moved), 0o644); err != nil {
			t.Fatal(err)
		}
		job, _ := r.ebsJob(pgdata)
		e := &EBS{Client: r.client, InstanceID: instance, mountinfo: mi, sysRoot: filepath.Join(fixture, "sys")}
		got, err := e.Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		p := got.Payload.(manifest.EBSPayload)
		if len(p.Snapshots) != 2 || p.Snapshots[0].VolumeID != data || p.Snapshots[0].Device != "/dev/xvdf" || p.Snapshots[0].FSType != "xfs" ||
			p.Snapshots[1].VolumeID != wal || p.Snapshots[1].Device != "/dev/sdg" {
			t.Errorf("payload %+v, want %s at /dev/xvdf and %s at /dev/sdg", p, data, wal)
		}
	})

	t.Run("freeze", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		h := s.host
		e := s.provider(r)
		e.Freeze = true
		// A tablespace on the root volume: snapshotted, never frozen.
		job, logs := r.ebsJob(h.pgdata, h.ts, h.rootTS)
		e.freezer = &recordingFreezer{log: r.log}
		got, err := e.Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		var seq []string
		for _, ev := range r.log.get() {
			if strings.HasPrefix(ev, "freeze") || strings.HasPrefix(ev, "thaw") || ev == "api CreateSnapshots" {
				seq = append(seq, ev)
			}
		}
		want := []string{
			"freeze " + h.dataMount, "freeze " + h.walMount, "freeze " + h.tsMount,
			"api CreateSnapshots",
			"thaw " + h.tsMount, "thaw " + h.walMount, "thaw " + h.dataMount,
		}
		if !slices.Equal(seq, want) {
			t.Errorf("sequence %q, want %q", seq, want)
		}
		// Nothing but the snapshot call (and its tagging) while frozen.
		all := r.log.get()
		first := slices.Index(all, want[0])
		last := slices.Index(all, want[len(want)-1])
		for _, ev := range all[first:last] {
			if ev != "api CreateSnapshots" && ev != "api CreateTags" && !strings.HasPrefix(ev, "freeze") && !strings.HasPrefix(ev, "thaw") {
				t.Errorf("%s while frozen", ev)
			}
		}
		p := got.Payload.(manifest.EBSPayload)
		if len(p.Snapshots) != 4 || p.Snapshots[3].VolumeID != s.root || p.Snapshots[3].MountPoint != "/" {
			t.Fatalf("payload %+v, want the root volume last", p)
		}
		for i, sn := range p.Snapshots {
			if sn.Frozen != (i < 3) {
				t.Errorf("snapshot of %s: frozen %t", sn.MountPoint, sn.Frozen)
			}
		}
		if !strings.Contains(logs.String(), "not freezing the root volume") {
			t.Errorf("no warning about the root volume:\n%s", logs)
		}
	})

	t.Run("thaw", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		h := s.host
		frozenThawed := []string{
			"freeze " + h.dataMount, "freeze " + h.walMount, "freeze " + h.tsMount,
			"thaw " + h.tsMount, "thaw " + h.walMount, "thaw " + h.dataMount,
		}
		// freezerCalls returns the freezer's calls since event n.
		freezerCalls := func(n int) []string {
			var out []string
			for _, ev := range r.log.get()[n:] {
				if strings.HasPrefix(ev, "freeze") || strings.HasPrefix(ev, "thaw") {
					out = append(out, ev)
				}
			}
			return out
		}
		capture := func(ctx context.Context, f *recordingFreezer, limit time.Duration) (*Captured, *Job, *syncBuffer, error) {
			e := s.provider(r)
			e.Freeze, e.freezer, e.freezeLimit = true, f, limit
			job, logs := r.ebsJob(h.pgdata, h.ts)
			got, err := e.Capture(ctx, job)
			return got, job, logs, err
		}
		snapshotsHook := func(f func(*http.Request) string) func(*http.Request, url.Values) string {
			return func(req *http.Request, form url.Values) string {
				if isCall(form, "CreateSnapshots") {
					return f(req)
				}
				return ""
			}
		}
		defer r.proxy.Set(nil, nil)

		t.Run("the call fails", func(t *testing.T) {
			r.proxy.Set(snapshotsHook(func(*http.Request) string { return "UnauthorizedOperation" }), nil)
			n := len(r.log.get())
			_, job, _, err := capture(t.Context(), &recordingFreezer{log: r.log}, time.Minute)
			if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
				t.Errorf("Capture = %v, want the API's refusal", err)
			}
			if got := freezerCalls(n); !slices.Equal(got, frozenThawed) {
				t.Errorf("freezer calls %q, want %q", got, frozenThawed)
			}
			if n := len(r.snapshotsTagged(job.ID)); n != 0 {
				t.Errorf("%d snapshots", n)
			}
		})
		t.Run("a freeze fails", func(t *testing.T) {
			r.proxy.Set(nil, nil)
			n, calls := len(r.log.get()), len(r.proxy.Made("CreateSnapshots"))
			_, _, _, err := capture(t.Context(), &recordingFreezer{log: r.log, fail: "freeze " + h.walMount}, time.Minute)
			if err == nil || !strings.Contains(err.Error(), h.walMount) {
				t.Errorf("Capture = %v, want the freeze failure", err)
			}
			want := []string{"freeze " + h.dataMount, "freeze " + h.walMount, "thaw " + h.dataMount}
			if got := freezerCalls(n); !slices.Equal(got, want) {
				t.Errorf("freezer calls %q, want %q", got, want)
			}
			if len(r.proxy.Made("CreateSnapshots")) != calls {
				t.Error("snapshots were requested after a failed freeze")
			}
		})
		t.Run("a thaw fails", func(t *testing.T) {
			r.proxy.Set(nil, nil)
			n := len(r.log.get())
			_, job, _, err := capture(t.Context(), &recordingFreezer{log: r.log, fail: "thaw " + h.walMount}, time.Minute)
			if err == nil || !strings.Contains(err.Error(), "thaw "+h.walMount) {
				t.Errorf("Capture = %v, want the thaw failure", err)
			}
			if got := freezerCalls(n); !slices.Equal(got, frozenThawed) {
				t.Errorf("freezer calls %q, want %q", got, frozenThawed)
			}
			if n := len(r.snapshotsTagged(job.ID)); n != 0 {
				t.Errorf("%d snapshots left; those of a failed capture must be deleted", n)
			}
		})
		t.Run("cancelled during the call", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r.proxy.Set(snapshotsHook(func(req *http.Request) string {
				cancel() // SIGINT/SIGTERM reach Capture as its context's end
				<-req.Context().Done()
				return "RequestCanceled"
			}), nil)
			n := len(r.log.get())
			_, _, _, err := capture(ctx, &recordingFreezer{log: r.log}, time.Minute)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Capture = %v, want context.Canceled", err)
			}
			if got := freezerCalls(n); !slices.Equal(got, frozenThawed) {
				t.Errorf("freezer calls %q, want %q", got, frozenThawed)
			}
		})
		t.Run("the call hangs past the limit", func(t *testing.T) {
			n := len(r.log.get())
			r.proxy.Set(snapshotsHook(func(req *http.Request) string {
				// Let moto answer only once the watchdog has thawed.
				for deadline := time.Now().Add(10 * time.Second); len(freezerCalls(n)) < len(frozenThawed) && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				return ""
			}), nil)
			got, _, logs, err := capture(t.Context(), &recordingFreezer{log: r.log}, 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			all := r.log.get()[n:]
			if i, j := slices.Index(all, "thaw "+h.dataMount), slices.Index(all, "api CreateTags"); i < 0 || j < 0 || i > j {
				t.Errorf("events %q: want the thaw before the call returned", all)
			}
			if got := freezerCalls(n); !slices.Equal(got, frozenThawed) {
				t.Errorf("freezer calls %q, want %q", got, frozenThawed)
			}
			for _, sn := range got.Payload.(manifest.EBSPayload).Snapshots {
				if sn.Frozen {
					t.Errorf("snapshot of %s recorded as frozen", sn.MountPoint)
				}
			}
			if !strings.Contains(logs.String(), "crash-consistent only") {
				t.Errorf("no warning:\n%s", logs)
			}
		})
	})

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		job, logs := r.ebsJob(s.host.pgdata, s.host.ts)
		got, err := s.provider(r).Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		snaps := got.Payload.(manifest.EBSPayload).Snapshots
		wal := snaps[1].SnapshotID
		defer r.proxy.Set(nil, nil)
		describeSnapshots := func(edit func(string) string) func(url.Values, string) string {
			return func(form url.Values, body string) string {
				if form.Get("Action") != "DescribeSnapshots" {
					return body
				}
				return edit(body)
			}
		}

		t.Run("waits until completed", func(t *testing.T) {
			pending := testrig.Countdown(2)
			r.proxy.Set(nil, describeSnapshots(func(body string) string {
				if pending() {
					return testrig.WithSnapshotState(body, wal, "pending", "", "40%")
				}
				return body
			}))
			before := len(r.proxy.Requests("DescribeSnapshots"))
			if _, err := got.Complete(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := len(r.proxy.Requests("DescribeSnapshots")) - before; n != 3 {
				t.Errorf("%d DescribeSnapshots, want 3", n)
			}
			l := logs.String()
			if strings.Count(l, "percent=80") != 1 || !strings.Contains(l, "percent=100") || !strings.Contains(l, "snapshots completed") {
				t.Errorf("progress log:\n%s", l)
			}
		})
		t.Run("a snapshot in error", func(t *testing.T) {
			r.proxy.Set(nil, describeSnapshots(func(body string) string {
				return testrig.WithSnapshotState(body, wal, "error", "source volume unreadable", "0%")
			}))
			_, err := got.Complete(t.Context())
			if err == nil || !strings.Contains(err.Error(), wal) || !strings.Contains(err.Error(), "source volume unreadable") {
				t.Errorf("Complete = %v, want snapshot %s's failure", err, wal)
			}
		})
		t.Run("wait timeout", func(t *testing.T) {
			r.proxy.Set(nil, describeSnapshots(func(body string) string { return testrig.WithSnapshotState(body, wal, "pending", "", "10%") }))
			e := s.provider(r)
			e.WaitTimeout = 100 * time.Millisecond
			start := time.Now()
			err := e.wait(t.Context(), []string{wal}, job)
			if err == nil || !strings.Contains(err.Error(), "ebs.wait_timeout") || time.Since(start) > 10*time.Second {
				t.Errorf("wait = %v after %s, want the wait timeout", err, time.Since(start))
			}
		})
	})

	t.Run("throttled", func(t *testing.T) {
		// The ebs package retries SnapshotCreationPerVolumeRateExceeded
		// after the rig client's short back-off (ebs.Options.SnapshotBackoff).
		t.Parallel()
		r := newEBSRig(t, env)
		s := r.multi()
		refuse := testrig.Countdown(1)
		r.proxy.Set(func(_ *http.Request, form url.Values) string {
			if isCall(form, "CreateSnapshots") && refuse() {
				return "SnapshotCreationPerVolumeRateExceeded"
			}
			return ""
		}, nil)
		job, _ := r.ebsJob(s.host.pgdata, s.host.ts)
		got, err := s.provider(r).Capture(t.Context(), job)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(r.proxy.Made("CreateSnapshots")); n != 2 {
			t.Errorf("%d CreateSnapshots requests, want 2", n)
		}
		if n := len(got.Payload.(manifest.EBSPayload).Snapshots); n != 3 {
			t.Errorf("%d snapshots, want 3", n)
		}
	})
}

func TestEBSCaptureInstanceFromIMDS(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t)
	r := newEBSRig(t, env)
	s := r.multi()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", testrig.FakeIMDS(t, s.instance, s.az))

	e := s.provider(r)
	e.InstanceID = ""
	job, _ := r.ebsJob(s.host.pgdata, s.host.ts)
	got, err := e.Capture(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Payload.(manifest.EBSPayload); p.InstanceID != s.instance || len(p.Snapshots) != 3 {
		t.Errorf("payload %+v, want 3 snapshots on %s", p, s.instance)
	}
}

// checkPayloadJSON pins the payload's JSON names, which restore.EBS reads.
func checkPayloadJSON(t *testing.T, p manifest.EBSPayload) {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(m))
	if want := []string{"availability_zone", "instance_id", "pgdata", "snapshots", "tablespaces"}; !slices.Equal(keys, want) {
		t.Errorf("payload keys %v, want %v", keys, want)
	}
	snap := m["snapshots"].([]any)[2].(map[string]any)
	keys = slices.Sorted(maps.Keys(snap))
	want := []string{"availability_zone", "device", "encrypted", "frozen", "fs_type", "iops", "kms_key_id", "mount_options", "mount_point",
		"paths", "size_gib", "snapshot_id", "start_time", "throughput", "volume_id", "volume_type"}
	if !slices.Equal(keys, want) {
		t.Errorf("snapshot keys %v, want %v", keys, want)
	}
}

// TestEBSPrepare: everything that can fail is found before pg_backup_start
// (Prepare): a volume that is not the instance's, a PostgreSQL directory
// on a filesystem no listed or discovered volume holds, a mount point
// that contradicts discovery or is not mounted, a freeze target that
// cannot be frozen, missing permissions (DryRun), an EC2 endpoint that
// never answers. None of them freezes or snapshots anything.
func TestEBSPrepare(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t)
	r := newEBSRig(t, env)
	s := r.multi()
	h := s.host
	stray := r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az}, s.instance, "/dev/sdi")
	gone := filepath.Join(t.TempDir(), "gone")
	withMount := func(line string) string {
		info, err := os.ReadFile(h.mountinfo)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "mountinfo")
		if err := os.WriteFile(p, append(info, line...), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	walOnTmpfs := withMount("120 1 0:90 / " + h.walMount + " rw shared:60 - tmpfs tmpfs rw\n")
	goneMounted := withMount("121 1 259:9 / " + gone + " rw shared:61 - ext4 /dev/nvme9n1 rw\n")

	for _, tc := range []struct {
		name string
		edit func(e *EBS)
		want string
	}{
		{"volume not on the instance", func(e *EBS) {
			e.Volumes = []EBSVolume{{ID: s.data}, {ID: s.wal}, {ID: s.ts}, {ID: "vol-0000000000000dead"}}
		}, "volume vol-0000000000000dead is not attached to instance " + s.instance},
		{"pg_wal on no EBS volume", func(e *EBS) { e.mountinfo = walOnTmpfs }, h.wal + " is on tmpfs"},
		{"pg_wal on a volume missing from the list", func(e *EBS) { e.Volumes = []EBSVolume{{ID: s.data}, {ID: s.ts}} }, s.wal + " holds " + h.wal + " but is not in ebs.volumes"},
		{"a mount point that is another volume's", func(e *EBS) {
			e.Volumes = []EBSVolume{{ID: s.data, MountPoint: h.walMount}, {ID: s.ts}}
		}, "ebs.volumes gives " + s.data + " as the volume mounted at " + h.walMount + ", but it is " + s.wal},
		{"a mount point not mounted", func(e *EBS) {
			e.Volumes = []EBSVolume{{ID: s.data}, {ID: s.wal}, {ID: s.ts}, {ID: stray, MountPoint: gone}}
		}, "nothing is mounted at " + gone},
		{"a freeze target that cannot be opened", func(e *EBS) {
			e.mountinfo, e.Freeze = goneMounted, true
			e.Volumes = []EBSVolume{{ID: s.data}, {ID: s.wal}, {ID: s.ts}, {ID: stray, MountPoint: gone}}
		}, "ebs.freeze: cannot freeze " + gone},
		{"no permission to snapshot", func(e *EBS) {
			r.proxy.Set(func(_ *http.Request, form url.Values) string {
				if form.Get("DryRun") == "true" {
					return "UnauthorizedOperation"
				}
				return ""
			}, nil)
		}, "not permitted (checked with DryRun)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer r.proxy.Set(nil, nil)
			e := s.provider(r)
			e.freezer = &recordingFreezer{log: r.log}
			tc.edit(e)
			job, _ := r.ebsJob(h.pgdata, h.ts)
			n, calls := len(r.log.get()), len(r.proxy.Made("CreateSnapshots"))+len(r.proxy.Made("CreateSnapshot"))
			_, err := e.Prepare(t.Context(), job)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Prepare = %v, want %q", err, tc.want)
			}
			if got := len(r.proxy.Made("CreateSnapshots")) + len(r.proxy.Made("CreateSnapshot")); got != calls {
				t.Error("snapshots were requested")
			}
			for _, ev := range r.log.get()[n:] {
				if strings.HasPrefix(ev, "freeze") {
					t.Errorf("%s during Prepare", ev)
				}
			}
		})
	}

	t.Run("blackholed endpoint", func(t *testing.T) {
		fp := testrig.StartFaultProxy(t, strings.TrimPrefix(r.proxy.URL, "http://"))
		client, err := ebs.New(t.Context(), ebs.Options{Region: env.Region, Endpoint: fp.URL()})
		if err != nil {
			t.Fatal(err)
		}
		e := s.provider(r)
		e.Client, e.WindowTimeout = client, time.Second
		fp.Blackhole(true)
		job, _ := r.ebsJob(h.pgdata, h.ts)
		start := time.Now()
		_, err = e.Prepare(t.Context(), job)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "did not answer within ebs.window_timeout (1s), before pg_backup_start") {
			t.Errorf("Prepare = %v, want the window's deadline", err)
		}
		fp.WaitCount(t, testrig.FaultBlackholed, 1, 10*time.Second)
		if took < time.Second || took > 3*time.Second {
			t.Errorf("Prepare gave up after %s, want ebs.window_timeout (1s)", took)
		}
	})
}

// TestEBSWindow: inside the window only the freeze and the snapshot call
// run, under ebs.window_timeout: a snapshot call that does not return in
// time is cut short, the filesystems are thawed, and the snapshots EC2
// made meanwhile (the answer was lost) are found by the backup's tag and
// deleted by the window's Cleanup.
func TestEBSWindow(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t)
	r := newEBSRig(t, env)
	s := r.multi()
	h := s.host
	e := s.provider(r)
	e.Freeze, e.freezer, e.WindowTimeout = true, &recordingFreezer{log: r.log}, 500*time.Millisecond
	job, _ := r.ebsJob(h.pgdata, h.ts)
	win, err := e.Prepare(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if win.Timeout != 500*time.Millisecond || win.Setting != "ebs.window_timeout" {
		t.Fatalf("window %+v", win)
	}
	answered, release := make(chan struct{}), make(chan struct{})
	r.proxy.Set(nil, func(form url.Values, body string) string {
		if isCall(form, "CreateSnapshots") {
			close(answered) // moto has made the snapshots
			<-release
		}
		return body
	})
	defer func() {
		close(release)
		r.proxy.Set(nil, nil)
	}()
	n := len(r.log.get())
	start := time.Now()
	_, err = (&Backup{}).capture(t.Context(), win)
	took := time.Since(start)
	if !errors.Is(err, ErrWindowTimeout) || !strings.Contains(err.Error(), "ebs.window_timeout 500ms") {
		t.Fatalf("capture = %v, want ErrWindowTimeout", err)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("the window lasted %s, want 500ms", took)
	}
	var freezer []string
	for _, ev := range r.log.get()[n:] {
		if strings.HasPrefix(ev, "freeze") || strings.HasPrefix(ev, "thaw") {
			freezer = append(freezer, ev)
		}
	}
	if want := []string{"freeze " + h.dataMount, "freeze " + h.walMount, "freeze " + h.tsMount,
		"thaw " + h.tsMount, "thaw " + h.walMount, "thaw " + h.dataMount}; !slices.Equal(freezer, want) {
		t.Errorf("freezer calls %q, want %q", freezer, want)
	}
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("moto never answered the snapshot call")
	}
	if n := len(r.snapshotsTagged(job.ID)); n != 3 {
		t.Fatalf("%d snapshots tagged %s, want the 3 of the lost answer", n, job.ID)
	}
	if err := win.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(r.snapshotsTagged(job.ID)); n != 0 {
		t.Errorf("%d snapshots left after the cleanup", n)
	}

	// A window without a deadline and a capture that keeps its own error.
	boom := errors.New("boom")
	if _, err := (&Backup{}).capture(t.Context(), &Window{Capture: func(context.Context) (*Captured, error) { return nil, boom }}); err != boom {
		t.Errorf("capture = %v, want the capture's error as is", err)
	}
}

// TestEBSRecord: the snapshots an orchestrator takes of the PostgreSQL
// volumes between backup-start and backup-stop are recorded with the
// details walsnap records of its own; snapshots from before the backup,
// of other volumes, or missing a volume are not.
func TestEBSRecord(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t)
	r := newEBSRig(t, env)
	s := r.multi()
	h := s.host
	other := r.volume(&ec2.CreateVolumeInput{AvailabilityZone: &s.az}, s.instance, "/dev/sdi")
	snapshot := func(vol string) string {
		t.Helper()
		out, err := r.ec2.CreateSnapshot(t.Context(), &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.SnapshotId)
		t.Cleanup(func() {
			r.ec2.DeleteSnapshot(testrig.CleanupContext(t), &ec2.DeleteSnapshotInput{SnapshotId: out.SnapshotId})
		})
		return id
	}
	old := snapshot(s.data) // before the backup: not consistent with it

	e := s.provider(r)
	job, logs := r.ebsJob(h.pgdata, h.ts)
	record, err := e.PrepareRecord(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.proxy.Made("CreateSnapshots")) + len(r.proxy.Made("CreateSnapshot")); n != 0 {
		t.Fatalf("PrepareRecord requested %d snapshots", n)
	}
	from := time.Now() // pg_backup_start returned
	data, wal, ts, unrelated := snapshot(s.data), snapshot(s.wal), snapshot(s.ts), snapshot(other)
	to := time.Now()

	got, err := record(t.Context(), "dlm", nil, from, to)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Payload.(manifest.EBSPayload)
	want := manifest.EBSPayload{Orchestrator: "dlm", InstanceID: s.instance, AZ: s.az, PGData: h.pgdata, Tablespaces: map[uint32]string{16400: h.ts}, Snapshots: []manifest.EBSSnapshot{{
		SnapshotID: data, VolumeID: s.data, Device: "/dev/sdf", MountPoint: h.dataMount, FSType: "ext4", MountOptions: "rw,noatime",
		Paths: []string{h.pgdata}, SizeGiB: 1, Type: "gp3", IOPS: 3000, AZ: s.az,
	}, {
		SnapshotID: wal, VolumeID: s.wal, Device: "/dev/sdg", MountPoint: h.walMount, FSType: "xfs", MountOptions: "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota",
		Paths: []string{h.wal}, SizeGiB: 1, Type: "io2", IOPS: 1000, AZ: s.az,
	}, {
		SnapshotID: ts, VolumeID: s.ts, Device: "/dev/sdh", MountPoint: h.tsMount, FSType: "ext4", MountOptions: "rw,noatime",
		Paths: []string{h.ts}, SizeGiB: 1, Type: "gp3", IOPS: 4000, Throughput: 250, AZ: s.az, Encrypted: true, KMSKeyID: testKMSKey,
	}}}
	for i := range p.Snapshots {
		want.Snapshots[i].StartTime = p.Snapshots[i].StartTime
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("payload\n%+v\nwant\n%+v", p, want)
	}
	if got.Complete == nil {
		t.Fatal("no Complete: the backup would not wait for the snapshots")
	}
	if _, err := got.Complete(t.Context()); err != nil {
		t.Error(err)
	}
	if strings.Contains(logs.String(), old) {
		t.Errorf("the snapshot from before the backup was considered:\n%s", logs)
	}

	// Ids given by the orchestrator: checked against the window and the
	// volumes; a snapshot of another volume is left out.
	got, err = record(t.Context(), "n2w", []string{unrelated, ts, wal, data}, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Payload.(manifest.EBSPayload); p.Orchestrator != "n2w" || len(p.Snapshots) != 3 || p.Snapshots[0].SnapshotID != data {
		t.Errorf("payload %+v, want the three given snapshots of the PostgreSQL volumes", p)
	}
	if _, err := record(t.Context(), "n2w", []string{old, wal, ts}, from, to); err == nil || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "outside the backup window") {
		t.Errorf("record with a snapshot from before the backup = %v", err)
	}
	if _, err := record(t.Context(), "", []string{data, ts}, from, to); err == nil || !strings.Contains(err.Error(), "no snapshot of "+s.wal+" ("+h.walMount+")") {
		t.Errorf("record without the pg_wal volume's snapshot = %v", err)
	}
	// A window that ended before the snapshots: none found.
	if _, err := record(t.Context(), "", nil, from.Add(-time.Hour), from.Add(-time.Minute)); err == nil || !strings.Contains(err.Error(), "started within the backup window") {
		t.Errorf("record of an empty window = %v", err)
	}
}
