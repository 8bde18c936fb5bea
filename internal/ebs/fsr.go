package ebs

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// FastRestoreStates returns the Fast Snapshot Restore state (enabling,
// optimizing, enabled, disabling) of each of the snapshots ids that has
// one in availability zone az; the others are absent from the map. A
// volume created from a snapshot whose state is enabled is fully
// initialized at creation.
//
// It only informs a plan, so it is asked once, without the retries of
// other calls: an EC2-compatible API that lacks it answers with an error
// at once, and the caller shows the state as unknown.
func (c *Client) FastRestoreStates(ctx context.Context, az string, ids []string) (map[string]string, error) {
	states := make(map[string]string)
	pages := ec2.NewDescribeFastSnapshotRestoresPaginator(c.ec2, &ec2.DescribeFastSnapshotRestoresInput{
		Filters: []types.Filter{
			{Name: aws.String("snapshot-id"), Values: ids},
			{Name: aws.String("availability-zone"), Values: []string{az}},
		},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
		if err != nil {
			return nil, fmt.Errorf("describe fast snapshot restores in %s: %w", az, err)
		}
		for _, r := range page.FastSnapshotRestores {
			if aws.ToString(r.AvailabilityZone) == az && r.State != types.FastSnapshotRestoreStateCodeDisabled {
				states[aws.ToString(r.SnapshotId)] = string(r.State)
			}
		}
	}
	return states, nil
}
