package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// TestEBSBackupCLI runs `walsnap backup` with backup.provider ebs through
// the binary: a real PostgreSQL 15, the EC2 API of moto (endpoint from the
// config, as for any EC2-compatible endpoint), an explicit volume list.
func TestEBSBackupCLI(t *testing.T) {
	t.Parallel()
	moto := testrig.Moto(t)
	ctx := t.Context()
	ec := moto.EC2()
	// Both are removed when the test ends.
	instanceID, az := testrig.LaunchInstance(t, ec, "/dev/sda1")
	volID := testrig.NewVolume(t, ec, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(20), VolumeType: types.VolumeTypeGp3, Iops: aws.Int32(4000)})
	if _, err := ec.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volID), InstanceId: aws.String(instanceID), Device: aws.String("/dev/sdf")}); err != nil {
		t.Fatal(err)
	}

	c := newCluster(t, clusterOptions{localRepo: true, env: moto.Environ(), config: fmt.Sprintf(`backup:
  provider: ebs
  wal_timeout: 1m
ebs:
  endpoint: %s
  region: %s
  instance_id: %s
  volumes: [%s]
  wait_timeout: 1m
`, moto.Endpoint, moto.Region, instanceID, volID)})

	if out, err := c.run("backup", "--fast"); err != nil || !strings.Contains(out, " complete: ") {
		t.Fatalf("walsnap backup (ebs): %v\n%s", err, out)
	}
	list, _, err := c.repo(t).Backups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("manifests: %v %v", list, err)
	}
	m := list[0]
	var payload struct {
		Snapshots []struct {
			SnapshotID string `json:"snapshot_id"`
			VolumeID   string `json:"volume_id"`
			IOPS       int32  `json:"iops"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(m.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if m.Provider != "ebs" || m.Status != manifest.StatusComplete || len(payload.Snapshots) != 1 ||
		payload.Snapshots[0].VolumeID != volID || payload.Snapshots[0].IOPS != 4000 {
		t.Fatalf("manifest %s %s payload %s", m.Provider, m.Status, m.Payload)
	}
	snaps, err := ec.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []types.Filter{{Name: aws.String("tag:walsnap:backup-id"), Values: []string{m.ID}}}})
	if err != nil || len(snaps.Snapshots) != 1 || aws.ToString(snaps.Snapshots[0].SnapshotId) != payload.Snapshots[0].SnapshotID {
		t.Fatalf("snapshots tagged with the backup id: %+v %v", snaps, err)
	}
}
