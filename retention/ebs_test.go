package retention

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// TestEBS, against moto: the snapshots of expired EBS backups are
// deleted and the kept backup's are untouched; a snapshot an AMI uses
// keeps its backup as deleting until the AMI is gone; a snapshot tagged
// with the id of a backup that has no manifest goes once a day old (the
// clock is the test's); another cluster's is never touched.
func TestEBS(t *testing.T) {
	env := testrig.Moto(t)
	env.Setenv(t)
	ctx := t.Context()
	ec := env.EC2()
	inst, az := testrig.LaunchInstance(t, ec, "/dev/sda1")
	vol := testrig.NewVolume(t, ec, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(1), VolumeType: types.VolumeTypeGp3})
	sys := rand.Uint64N(1<<62) + 1 // moto is shared: this test's own cluster
	tag := func(id string, backup string, system uint64) {
		t.Helper()
		if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []types.Tag{
			{Key: aws.String(ebs.TagBackupID), Value: aws.String(backup)},
			{Key: aws.String(ebs.TagSystemID), Value: aws.String(strconv.FormatUint(system, 10))}}}); err != nil {
			t.Fatal(err)
		}
	}
	snap := func(backup string, system uint64) string {
		t.Helper()
		out, err := ec.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.SnapshotId)
		tag(id, backup, system)
		t.Cleanup(func() {
			ec.DeleteSnapshot(testrig.CleanupContext(t), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		})
		return id
	}
	s1, s3, orphan, other := snap("E1", sys), snap("E3", sys), snap("E0", sys), snap("E0", sys+1)
	// E2's snapshot is in use by an AMI (moto's AMIs use snapshots of their own).
	img, err := ec.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String("walsnap-retention-" + strconv.FormatUint(sys, 10))})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(img.ImageId)}})
	if err != nil || len(imgs.Images) != 1 {
		t.Fatalf("DescribeImages: %v", err)
	}
	used := aws.ToString(imgs.Images[0].BlockDeviceMappings[0].Ebs.SnapshotId)
	tag(used, "E2", sys)
	t.Cleanup(func() {
		ctx := testrig.CleanupContext(t)
		ec.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: img.ImageId})
		ec.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(used)})
	})

	f := newFixtureOf(t, sys)
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	f.segments(1, 1, 12, t0)
	for i, b := range []struct{ id, snap string }{{"E1", s1}, {"E2", used}, {"E3", s3}} {
		no := uint64(2 + 3*i)
		mf := &manifest.Manifest{ID: b.id, Provider: manifest.ProviderEBS, Status: manifest.StatusComplete, Timeline: 1,
			StartLSN: 0x28, StopLSN: 0x100, StartWAL: seg(1, no), StopWAL: seg(1, no), StartTime: m(int(no)), StopTime: m(int(no)),
			SystemID: sys, SegmentSize: segSize, BackupLabel: "x\n"}
		if err := mf.SetPayload(manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: b.snap}}}); err != nil {
			t.Fatal(err)
		}
		f.manifest(mf)
	}
	client, err := ebs.New(ctx, ebs.Options{Region: env.Region, Endpoint: env.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	o := f.options(time.Now().Add(25*time.Hour), Policy{Full: 1})
	o.Snapshots = func(context.Context) (Snapshots, error) { return client, nil }
	exists := func(ids ...string) map[string]bool {
		t.Helper()
		got, err := client.ExistingSnapshots(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, id := range got {
			out[id] = true
		}
		return out
	}

	p, err := Run(ctx, o, false)
	if err != nil {
		t.Fatal(err)
	}
	left := exists(s1, used, s3, orphan, other)
	if left[s1] || !left[used] || !left[s3] || left[orphan] || !left[other] {
		t.Fatalf("snapshots left %v: want E2's (in use), E3's (kept) and the other cluster's only", left)
	}
	if got := f.backupIDs(); got != "E2:deleting E3" {
		t.Fatalf("backups left: %s", got)
	}
	if len(p.Snaps) != 1 || p.Snaps[0].SnapshotID != orphan || p.Snaps[0].Outcome != "deleted" {
		t.Fatalf("orphan snapshots: %+v", p.Snaps)
	}

	// The AMI goes: the next run finishes E2.
	if _, err := ec.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: img.ImageId}); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, o, false); err != nil {
		t.Fatal(err)
	}
	if got := f.backupIDs(); got != "E3" || exists(used)[used] || !exists(s3)[s3] {
		t.Fatalf("after the AMI went: backups %s, E2's snapshot left %v", got, exists(used)[used])
	}
}
