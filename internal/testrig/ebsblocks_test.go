package testrig

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/blockdev"
)

// TestBlockEC2: the kit's blocks follow EC2's calls. An ext4 and an XFS
// volume, which walsnap's discovery maps to their volume ids through the
// kit's sysfs, get a file; one CreateSnapshots copies both, and a file
// written after it is not in the snapshots. Volumes made from them appear
// once attached as the NVMe disks of their volume ids, where walsnap's
// device wait looks, and hold the files as they were (the XFS clone
// mounts next to its source only with nouuid). A snapshot of a volume the
// caller froze records it. Detached and deleted, the volumes leave no
// loop device or image.
func TestBlockEC2(t *testing.T) {
	t.Parallel()
	b := NewBlockEC2(t)
	ctx := t.Context()
	fstypes := []string{"ext4", "xfs"}
	var ids, mnts []string
	for _, fs := range fstypes {
		mnt := b.Dir(t, fs)
		ids = append(ids, b.AddVolume(t, fs, mnt))
		mnts = append(mnts, mnt)
		write(t, filepath.Join(mnt, "before"))
	}
	vols, err := blockdev.Discover(mnts, blockdev.DefaultMountinfo, b.SysRoot)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vols {
		if v.VolumeID != ids[i] || v.MountPoint != mnts[i] || v.FSType != fstypes[i] || v.Root {
			t.Errorf("discovered %+v, want %s on %s", v, ids[i], mnts[i])
		}
	}

	out, err := b.EC2.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{InstanceSpecification: &types.InstanceSpecification{
		InstanceId: aws.String(b.Instance), ExcludeBootVolume: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, mnt := range mnts {
		write(t, filepath.Join(mnt, "after"))
	}
	snaps := map[string]string{}
	for _, s := range out.Snapshots {
		snaps[aws.ToString(s.VolumeId)] = aws.ToString(s.SnapshotId)
	}
	calls := b.SnapshotCalls()
	if len(calls) != 1 || calls[0].Action != "CreateSnapshots" || len(calls[0].Snapshots) != 2 ||
		calls[0].Snapshots[ids[0]] != snaps[ids[0]] || calls[0].Snapshots[ids[1]] != snaps[ids[1]] || len(calls[0].CallerFroze) != 0 {
		t.Fatalf("snapshot calls %+v, want one of %v", calls, snaps)
	}

	// The caller freezes the ext4 filesystem for one volume's snapshot.
	run(t, "fsfreeze", "-f", mnts[0])
	_, err = b.EC2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(ids[0])})
	run(t, "fsfreeze", "-u", mnts[0])
	if err != nil {
		t.Fatal(err)
	}
	if calls := b.SnapshotCalls(); len(calls) != 2 || calls[1].Action != "CreateSnapshot" || !slices.Equal(calls[1].CallerFroze, ids[:1]) {
		t.Fatalf("snapshot calls %+v, want a second of %s, frozen by its caller", calls, ids[0])
	}

	var clones []string
	for i, id := range ids {
		v, err := b.EC2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(b.AZ), SnapshotId: aws.String(snaps[id])})
		if err != nil {
			t.Fatal(err)
		}
		clone := aws.ToString(v.VolumeId)
		clones = append(clones, clone)
		if _, err := b.EC2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(clone), InstanceId: aws.String(b.Instance), Device: aws.String([]string{"/dev/sdh", "/dev/sdi"}[i])}); err != nil {
			t.Fatal(err)
		}
		loop := b.Device(t, clone)
		dev, err := blockdev.DeviceForVolume(clone, b.SysRoot, b.DevRoot)
		if err != nil {
			t.Fatal(err)
		}
		if target, err := filepath.EvalSymlinks(dev); err != nil || target != loop {
			t.Fatalf("%s of %s is %s (%v), want %s", dev, clone, target, err, loop)
		}
		mnt := b.Dir(t, "clone-"+fstypes[i])
		if fstypes[i] == "xfs" {
			if out, err := exec.Command("mount", "-t", "xfs", dev, mnt).CombinedOutput(); err == nil {
				t.Fatalf("the XFS clone mounted next to its source without nouuid:\n%s", out)
			}
			run(t, "mount", "-t", "xfs", "-o", "nouuid", dev, mnt)
		} else {
			run(t, "mount", "-t", fstypes[i], dev, mnt)
		}
		if _, err := os.Stat(filepath.Join(mnt, "before")); err != nil {
			t.Errorf("%s clone: %v", fstypes[i], err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "after")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s clone holds a file written after the snapshot (%v)", fstypes[i], err)
		}
		WaitUnused(t, mnt)
		run(t, "umount", mnt)
	}

	for _, id := range clones {
		if _, err := b.EC2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(b.Instance)}); err != nil {
			t.Fatal(err)
		}
		if _, err := blockdev.DeviceForVolume(id, b.SysRoot, b.DevRoot); !errors.Is(err, blockdev.ErrNotFound) {
			t.Errorf("detached %s: its disk is still there (%v)", id, err)
		}
		if _, err := b.EC2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
	}
	var left []string
	for _, v := range b.Volumes() {
		left = append(left, v.ID)
		if _, err := os.Stat(v.Image); err != nil || v.Loop == "" {
			t.Errorf("volume %+v: %v", v, err)
		}
	}
	if !slices.Equal(left, slices.Sorted(slices.Values(ids))) {
		t.Errorf("volumes left: %v, want %v", left, ids)
	}
	if loops, err := LoopsUnder(b.layer.dir); err != nil || len(loops) != 2 {
		t.Errorf("loop devices left: %v (%v), want the two of %v", loops, err, ids)
	}
	for _, id := range snaps {
		b.layer.mu.Lock()
		image := b.layer.snapshots[id]
		b.layer.mu.Unlock()
		if _, err := b.EC2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(image); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted snapshot %s: its image %s is still there (%v)", id, image, err)
		}
	}
}

// write creates a small file at path.
func write(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(path); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// run runs a program; failure is fatal.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
