package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/restore"
)

// The EBS drill runs against moto (testrig.Moto) with restore's Devices
// and Mounter seams, as restore's own EBS tests do: moto's volumes hold
// no data, so the "device" of a volume built from the snapshot is a copy
// of the data directory that the backup's snapshot command took, and
// "mounting" it copies that in place. Everything else is the product
// path: a real PostgreSQL 15 archiving into a repository with walsnap
// wal-push, the volumes created, tagged, attached and deleted in moto,
// recovery with walsnap wal-fetch, the checks and the teardown.

// fakeDevices names the device of volume v /dev/fake-v.
type fakeDevices struct{}

func (fakeDevices) WaitDevice(_ context.Context, volumeID, _ string) (string, error) {
	return "/dev/fake-" + volumeID, nil
}

// copyMounter "mounts" a volume built from the snapshot by copying the
// snapshot's data directory to data/ under the mount point, and
// "unmounts" by emptying the mount point.
type copyMounter struct {
	from     string
	mu       sync.Mutex
	mounts   []string
	unmounts []string
}

func (m *copyMounter) Mount(ctx context.Context, device, target, _, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounts = append(m.mounts, target)
	if err := os.MkdirAll(filepath.Join(target, "data"), 0o700); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", m.from+"/.", filepath.Join(target, "data")).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s: %v: %s", device, err, out)
	}
	return nil
}

func (m *copyMounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unmounts = append(m.unmounts, target)
	ents, err := os.ReadDir(target)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(target, e.Name()))
	}
	return err
}

// TestDrillEBS: a drill of an ebs backup builds its volume in moto with
// the walsnap:drill tag, mounts it under its scratch directory (never at
// the recorded mount point), recovers, checks, and deletes every volume
// it created, on success and on failure.
func TestDrillEBS(t *testing.T) {
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "the drill runs as root (PostgreSQL as postgres)")
	}
	env := testrig.Moto(t)
	env.Setenv(t) // the drill's EC2 client takes moto's credentials from the environment
	bin := testrig.Walsnap(t)
	work := testrig.WorkDir(t)
	repoDir, snapDir := filepath.Join(work, "repo"), filepath.Join(work, "snapshots")
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	p := testrig.NewPG(t, testrig.PGOptions{Major: 15, Conf: map[string]string{
		"archive_mode": "on", "archive_command": bin + " --config " + cfg + " wal-push %p", "archive_timeout": "0",
	}})
	if out, err := p.Command(t.Context(), "/bin/mkdir", repoDir).CombinedOutput(); err != nil {
		t.Fatalf("mkdir %s: %v %s", repoDir, err, out)
	}
	if err := os.Mkdir(snapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.Start(t)
	// The backup's "snapshot" is a copy of the data directory, taken
	// between pg_backup_start and pg_backup_stop like any file copy.
	conf := fmt.Sprintf("repo: file://%s\npg:\n  host: %s\n  port: %d\nbackup:\n  provider: command\ncommand:\n  snapshot: 'cp -a \"$WALSNAP_PGDATA\" %s/$WALSNAP_BACKUP_ID && echo %s/$WALSNAP_BACKUP_ID'\n",
		repoDir, p.SockDir, p.Port, snapDir, snapDir)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g")
	var stderr strings.Builder
	cmd := exec.Command(bin, "--config", cfg, "backup", "--fast")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("walsnap backup: %v\n%s%s", err, out, stderr.String())
	}
	copied := strings.Fields(string(out))[1]
	p.Exec(t, "INSERT INTO t SELECT g FROM generate_series(101, 150) g")
	archiveAll(t, p)

	// The same backup, recorded as an ebs one: PGDATA at /srv/pg/data on
	// a volume mounted at /srv/pg, snapshotted in moto.
	ec2c := env.EC2()
	proxy := testrig.NewEC2Proxy(t, env.Endpoint)
	client, err := ebs.New(t.Context(), ebs.Options{Region: env.Region, Endpoint: proxy.URL})
	if err != nil {
		t.Fatal(err)
	}
	instance, az := testrig.LaunchInstance(t, ec2c, "/dev/sda1")
	src := testrig.NewVolume(t, ec2c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), VolumeType: types.VolumeTypeGp3})
	snap, err := ec2c.CreateSnapshot(t.Context(), &ec2.CreateSnapshotInput{VolumeId: aws.String(src)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ec2c.DeleteSnapshot(testrig.CleanupContext(t), &ec2.DeleteSnapshotInput{SnapshotId: snap.SnapshotId})
	})
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	m, err := r.Manifest(t.Context(), copied)
	if err != nil {
		t.Fatal(err)
	}
	m.ID, m.Provider, m.PGData = manifest.NewID(time.Now()), manifest.ProviderEBS, "/srv/pg/data"
	if err := m.SetPayload(manifest.EBSPayload{InstanceID: "i-0source", AZ: az, PGData: "/srv/pg/data", Snapshots: []manifest.EBSSnapshot{{
		SnapshotID: aws.ToString(snap.SnapshotId), VolumeID: src, Device: "/dev/sdf", MountPoint: "/srv/pg", FSType: "ext4",
		MountOptions: "rw,noatime", SizeGiB: 1, Type: "gp3", IOPS: 3000, Throughput: 125, AZ: az,
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutManifest(t.Context(), m); err != nil {
		t.Fatal(err)
	}

	drill := func(t *testing.T, check string) (*drillresult.Result, *copyMounter, error) {
		t.Helper()
		mounter := &copyMounter{from: filepath.Join(snapDir, copied)}
		before := len(proxy.Requests("CreateVolume"))
		var progress strings.Builder
		res, err := Run(t.Context(), Options{
			Repo: r, BackupID: m.ID, RestoreCommand: restore.CommandLine(bin, cfg, nil), PGBin: p.BinDir,
			Scratch: work, CheckSQL: []SQLCheck{{Name: "rows.sql", SQL: check}}, Out: &progress, Log: slog.New(slog.DiscardHandler),
			Providers: restore.ProviderSettings{Repo: r, Log: slog.New(slog.DiscardHandler),
				EBS: restore.EBS{Client: client, InstanceID: instance, AZ: az, Devices: fakeDevices{}, Mounter: mounter}},
		})
		t.Logf("drill:\n%s", progress.String())
		// Whatever the verdict: every volume the drill created carried its
		// tag, and none is left; nothing is mounted or left in the
		// scratch directory.
		creates := proxy.Requests("CreateVolume")[before:]
		if len(creates) == 0 {
			t.Fatal("the drill created no volume")
		}
		for _, c := range creates {
			if !hasTag(c, TagDrill, res.ID) || aws.ToString(snap.SnapshotId) != c.Get("SnapshotId") || c.Get("AvailabilityZone") != az {
				t.Errorf("CreateVolume %v: want the snapshot's volume in %s, tagged %s=%s", c, az, TagDrill, res.ID)
			}
		}
		if left := drillVolumes(t, ec2c, res.ID); len(left) != 0 {
			t.Errorf("volumes left by drill %s: %v", res.ID, left)
		}
		want := []string{filepath.Join(work, "walsnap-drill-"+res.ID, "mnt", "srv", "pg")}
		if !slices.Equal(mounter.mounts, want) || !slices.Equal(mounter.unmounts, want) {
			t.Errorf("mounted %v and unmounted %v, want %v (under the scratch directory, never /srv/pg)", mounter.mounts, mounter.unmounts, want)
		}
		if ents, _ := os.ReadDir(work); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), "walsnap-drill-") }) {
			t.Errorf("scratch directory left in %s: %v", work, ents)
		}
		if _, err := os.Stat(filepath.Join(os.TempDir(), "walsnap-drill-"+res.ID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket directory of drill %s left (%v)", res.ID, err)
		}
		return res, mounter, err
	}

	t.Run("passes", func(t *testing.T) {
		res, _, err := drill(t, "SELECT count(*) = 150 FROM t")
		if err != nil || !res.OK {
			t.Fatalf("drill: %v (%+v)", err, res)
		}
		var steps []string
		for _, s := range res.Phase(drillresult.PhaseMaterialize).Steps {
			steps = append(steps, s.Name)
		}
		if !slices.Equal(steps, []string{"create", "attach", "device", "mount", "prepare"}) {
			t.Errorf("materialize steps %v", steps)
		}
		if res.Replay == nil || res.Replay.Segments == 0 || res.Reached == nil || res.RecoverySeconds <= 0 {
			t.Errorf("replay %+v, reached %+v, recovery %vs", res.Replay, res.Reached, res.RecoverySeconds)
		}
		if got, err := r.Manifest(t.Context(), m.ID); err != nil || got.Drilled == nil {
			t.Errorf("backup %s not marked drilled: %+v, %v", m.ID, got, err)
		}
	})
	t.Run("fails", func(t *testing.T) {
		res, _, err := drill(t, "SELECT count(*) = 99 FROM t")
		if err == nil || res.OK || !strings.Contains(err.Error(), "check-sql rows.sql") || !strings.Contains(err.Error(), "is false") {
			t.Fatalf("drill with a false check: %v", err)
		}
		stored, lerr := r.LatestResult(t.Context(), repo.ResultDrill)
		if lerr != nil || !strings.Contains(string(stored.Data), res.ID) || !strings.Contains(string(stored.Data), `"ok": false`) {
			t.Errorf("stored result: %s (%v)", stored.Data, lerr)
		}
	})
}

// hasTag reports whether an EC2 request's TagSpecification holds key=value.
func hasTag(form map[string][]string, key, value string) bool {
	for k, v := range form {
		if strings.HasPrefix(k, "TagSpecification.") && strings.HasSuffix(k, ".Key") && len(v) == 1 && v[0] == key {
			if val := form[strings.TrimSuffix(k, ".Key")+".Value"]; len(val) == 1 && val[0] == value {
				return true
			}
		}
	}
	return false
}

// drillVolumes are the live volumes tagged walsnap:drill=id.
func drillVolumes(t *testing.T, c *ec2.Client, id string) []string {
	t.Helper()
	out, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + TagDrill), Values: []string{id}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, v := range out.Volumes {
		if v.State != types.VolumeStateDeleting && v.State != types.VolumeStateDeleted {
			live = append(live, aws.ToString(v.VolumeId))
		}
	}
	return live
}

// archiveAll switches WAL and waits until everything written so far is
// archived.
func archiveAll(t *testing.T, p *testrig.PG) {
	t.Helper()
	last := p.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	p.Exec(t, "SELECT pg_switch_wal()")
	p.WaitFor(t, 2*time.Minute, "true", "SELECT coalesce(last_archived_wal >= $1, false)::text FROM pg_stat_archiver", last)
}
