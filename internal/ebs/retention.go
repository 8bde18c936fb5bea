package ebs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// The tags the ebs provider puts on every snapshot of a backup, by which
// retention finds the snapshots of backups that have no manifest.
const (
	TagBackupID = "walsnap:backup-id"
	TagSystemID = "walsnap:system-id"
)

// ErrSnapshotInUse means EC2 refuses to delete a snapshot because
// something uses it, such as an AMI registered from it.
var ErrSnapshotInUse = errors.New("snapshot in use")

// DeleteSnapshot deletes snapshot id. One already gone is not an error;
// one in use gives an error matching ErrSnapshotInUse, with EC2's reason.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	_, err := c.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	switch code := apiErrorCode(err); {
	case err == nil, code == "InvalidSnapshot.NotFound":
		return nil
	case code == "InvalidSnapshot.InUse":
		return fmt.Errorf("delete snapshot %s: %w: %w", id, ErrSnapshotInUse, err)
	}
	return fmt.Errorf("delete snapshot %s: %w", id, err)
}

// BackupSnapshots lists this account's snapshots of the backups of the
// cluster systemID: those tagged with a backup id and that system id, in
// any state.
func (c *Client) BackupSnapshots(ctx context.Context, systemID uint64) ([]SnapshotInfo, error) {
	found, err := c.snapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters: []types.Filter{
			{Name: aws.String("tag-key"), Values: []string{TagBackupID}},
			{Name: aws.String("tag:" + TagSystemID), Values: []string{strconv.FormatUint(systemID, 10)}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of the backups of system %d: %w", systemID, err)
	}
	return found, nil
}

// ExistingSnapshots returns those of ids that exist, in any state: a
// snapshot deleted (or never seen) is simply not among them.
func (c *Client) ExistingSnapshots(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	found, err := c.snapshots(ctx, &ec2.DescribeSnapshotsInput{
		Filters: []types.Filter{{Name: aws.String("snapshot-id"), Values: ids}},
	})
	if err != nil {
		return nil, fmt.Errorf("look for snapshots %s: %w", strings.Join(ids, ", "), err)
	}
	out := make([]string, len(found))
	for i, s := range found {
		out[i] = s.SnapshotID
	}
	return out, nil
}
