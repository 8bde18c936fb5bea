package ebs

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// SnapshotState is a snapshot as walsnap verify and status see it.
type SnapshotState struct {
	SnapshotID string
	State      string // pending, completed, error, recoverable, ...
	Progress   string // e.g. "45%"
	Message    string // EC2's reason for an error state
	SizeGiB    int32  // the size of the volume it was taken of
}

// filterValues bounds the values of one DescribeSnapshots filter.
const filterValues = 200

// SnapshotStates describes the snapshots ids. A snapshot that does not
// exist (deleted, or never taken in this account and region) is absent
// from the result rather than an error: the snapshots are looked up by a
// filter, which unlike SnapshotIds does not fail the whole call on one
// unknown id.
func (c *Client) SnapshotStates(ctx context.Context, ids []string) (map[string]SnapshotState, error) {
	out := make(map[string]SnapshotState, len(ids))
	for start := 0; start < len(ids); start += filterValues {
		chunk := ids[start:min(start+filterValues, len(ids))]
		pages := ec2.NewDescribeSnapshotsPaginator(c.ec2, &ec2.DescribeSnapshotsInput{
			Filters: []types.Filter{{Name: aws.String("snapshot-id"), Values: chunk}},
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describe snapshots: %w", err)
			}
			for _, s := range page.Snapshots {
				id := aws.ToString(s.SnapshotId)
				out[id] = SnapshotState{SnapshotID: id, State: string(s.State), Progress: aws.ToString(s.Progress),
					Message: aws.ToString(s.StateMessage), SizeGiB: aws.ToInt32(s.VolumeSize)}
			}
		}
	}
	return out, nil
}

// CanSnapshot asks EC2, with DryRun, whether walsnap may snapshot the
// volumes ids of instance the way a backup does (CreateSnapshot for one
// volume, CreateSnapshots on the instance for several); nil means
// permitted. It creates nothing.
func (c *Client) CanSnapshot(ctx context.Context, instance string, ids []string) error {
	spec := SnapshotSpec{InstanceID: instance, Description: "walsnap check"}
	for _, id := range ids {
		spec.Volumes = append(spec.Volumes, VolumeInfo{VolumeID: id})
	}
	_, err := c.PrepareSnapshots(ctx, spec)
	return err
}
