package basebackup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/testrig"
)

// TestEBSBackupCLI runs `walsnap backup` with backup.provider ebs through
// the binary: a real PostgreSQL 15, the EC2 API of moto (endpoint from the
// config, as for any EC2-compatible endpoint), an explicit volume list.
func TestEBSBackupCLI(t *testing.T) {
	bin := testrig.Walsnap(t)
	moto := testrig.Moto(t)
	moto.Setenv(t)
	ctx := context.Background()
	ec := moto.EC2()
	instanceID, az := testrig.LaunchInstance(t, ec, "/dev/sda1")
	volID := testrig.NewVolume(t, ec, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(20), VolumeType: types.VolumeTypeGp3, Iops: aws.Int32(4000)})
	if _, err := ec.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volID), InstanceId: aws.String(instanceID), Device: aws.String("/dev/sdf")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ec.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{instanceID}})
	})

	work := testrig.WorkDir(t)
	repoDir := filepath.Join(work, "repo")
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	pg := testrig.NewPG(t, testrig.PGOptions{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": bin + " --config " + cfg + " wal-push %p",
	}})
	if out, err := pg.Command(ctx, "/bin/mkdir", repoDir).CombinedOutput(); err != nil {
		t.Fatalf("mkdir: %v %s", err, out)
	}
	os.WriteFile(cfg, []byte(fmt.Sprintf(`repo: file://%s
pg:
  host: %s
  port: %d
backup:
  provider: ebs
  wal_timeout: 1m
ebs:
  endpoint: %s
  region: %s
  instance_id: %s
  volumes: [%s]
  wait_timeout: 1m
`, repoDir, pg.SockDir, pg.Port, moto.Endpoint, moto.Region, instanceID, volID)), 0o644)
	pg.Start(t)

	cmd := exec.Command(bin, "--config", cfg, "backup", "--fast")
	cmd.Env = append(os.Environ(), moto.Environ()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("walsnap backup (ebs): %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " complete: ") {
		t.Fatalf("backup output:\n%s", out.String())
	}
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := repo.New(st).Backups(ctx)
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
