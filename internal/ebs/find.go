package ebs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// SnapshotInfo is a snapshot as EC2 describes it.
type SnapshotInfo struct {
	SnapshotID string
	VolumeID   string
	StartTime  time.Time
	State      string // pending, completed, error, ...
	Tags       map[string]string
}

// DescribeSnapshots describes the snapshots ids, in that order; a missing
// one is an error.
func (c *Client) DescribeSnapshots(ctx context.Context, ids []string) ([]SnapshotInfo, error) {
	found, err := c.snapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describe snapshots %s: %w", strings.Join(ids, ", "), err)
	}
	out := make([]SnapshotInfo, len(ids))
	for i, id := range ids {
		j := slices.IndexFunc(found, func(s SnapshotInfo) bool { return s.SnapshotID == id })
		if j < 0 {
			return nil, fmt.Errorf("describe snapshots: %s not found", id)
		}
		out[i] = found[j]
	}
	return out, nil
}

// VolumeSnapshots lists this account's snapshots of the volumes ids, in
// any state.
func (c *Client) VolumeSnapshots(ctx context.Context, ids []string) ([]SnapshotInfo, error) {
	found, err := c.snapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{{Name: aws.String("volume-id"), Values: ids}},
	})
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of %s: %w", strings.Join(ids, ", "), err)
	}
	return found, nil
}

// DeleteTaggedSnapshots deletes this account's snapshots tagged key=value
// and returns their ids.
func (c *Client) DeleteTaggedSnapshots(ctx context.Context, key, value string) ([]string, error) {
	found, err := c.snapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{{Name: aws.String("tag:" + key), Values: []string{value}}},
	})
	if err != nil {
		return nil, fmt.Errorf("find the snapshots tagged %s=%s: %w", key, value, err)
	}
	ids := make([]string, len(found))
	for i, s := range found {
		ids[i] = s.SnapshotID
	}
	return ids, c.DeleteSnapshots(ctx, ids)
}

func (c *Client) snapshots(ctx context.Context, in *ec2.DescribeSnapshotsInput) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	pages := ec2.NewDescribeSnapshotsPaginator(c.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range page.Snapshots {
			out = append(out, SnapshotInfo{
				SnapshotID: aws.ToString(s.SnapshotId),
				VolumeID:   aws.ToString(s.VolumeId),
				StartTime:  aws.ToTime(s.StartTime),
				State:      string(s.State),
				Tags:       tagMap(s.Tags),
			})
		}
	}
	return out, nil
}
