package ebs

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/testrig"
)

// TestRetentionCalls, against moto: the snapshots of one cluster's backups
// are found by their tags (not another cluster's, not untagged ones),
// existence is told by id, and a snapshot an AMI uses is refused as in
// use until the AMI is gone.
func TestRetentionCalls(t *testing.T) {
	c := testClient(t, nil)
	ctx := t.Context()
	inst, az := launch(t, c, "/dev/sda1")
	vol := newVolume(t, c, az, nil)
	// moto is shared: a system id of this test's own.
	sys := rand.Uint64N(1<<62) + 1
	snap := func(tags map[string]string) string {
		t.Helper()
		out, err := c.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol), TagSpecifications: tagSpec(types.ResourceTypeSnapshot, tags)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.SnapshotId)
		t.Cleanup(func() { c.DeleteSnapshots(testrig.CleanupContext(t), []string{id}) })
		return id
	}
	mine := snap(map[string]string{TagBackupID: "B1", TagSystemID: strconv.FormatUint(sys, 10)})
	snap(map[string]string{TagBackupID: "B1", TagSystemID: strconv.FormatUint(sys+1, 10)}) // another cluster's
	snap(map[string]string{TagSystemID: strconv.FormatUint(sys, 10)})                      // no backup id
	found, err := c.BackupSnapshots(ctx, sys)
	if err != nil || len(found) != 1 || found[0].SnapshotID != mine || found[0].Tags[TagBackupID] != "B1" {
		t.Fatalf("BackupSnapshots = %+v, %v; want only %s", found, err, mine)
	}
	const never = "snap-0123456789abcdef0"
	if got, err := c.ExistingSnapshots(ctx, []string{mine, never}); err != nil || !slices.Equal(got, []string{mine}) {
		t.Fatalf("ExistingSnapshots = %v, %v", got, err)
	}

	// An AMI's snapshot is in use.
	img, err := c.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String("walsnap-test-" + strconv.FormatUint(sys, 10))})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(img.ImageId)}})
	if err != nil || len(imgs.Images) != 1 || len(imgs.Images[0].BlockDeviceMappings) == 0 {
		t.Fatalf("DescribeImages: %+v %v", imgs, err)
	}
	used := aws.ToString(imgs.Images[0].BlockDeviceMappings[0].Ebs.SnapshotId)
	t.Cleanup(func() { c.DeleteSnapshots(testrig.CleanupContext(t), []string{used}) })
	if err := c.DeleteSnapshot(ctx, used); !errors.Is(err, ErrSnapshotInUse) {
		t.Fatalf("DeleteSnapshot of an AMI's snapshot = %v, want ErrSnapshotInUse", err)
	}
	if _, err := c.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: img.ImageId}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{used, mine, mine} { // the second time it is gone already
		if err := c.DeleteSnapshot(ctx, id); err != nil {
			t.Fatalf("DeleteSnapshot(%s): %v", id, err)
		}
	}
	if got, err := c.ExistingSnapshots(ctx, []string{mine, used}); err != nil || len(got) != 0 {
		t.Fatalf("after deleting: ExistingSnapshots = %v, %v", got, err)
	}
}
