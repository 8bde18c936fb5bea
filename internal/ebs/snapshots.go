package ebs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// SnapshotSpec says what to snapshot and how to tag it.
type SnapshotSpec struct {
	// InstanceID is the instance the volumes are attached to; required
	// with more than one volume.
	InstanceID string
	// Volumes hold the PostgreSQL data (VolumeID and Tags are used).
	Volumes []VolumeInfo
	// Tags go on every snapshot (backup id, system id, Name, ...), over
	// the tags of its volume, which snapshots get too (but for aws: ones).
	Tags map[string]string
	// PerVolumeTags go on the snapshot of the volume id they are keyed by
	// (mount point, device, ...), over Tags.
	PerVolumeTags map[string]map[string]string
	Description   string
}

// Snapshot is one snapshot just started.
type Snapshot struct {
	SnapshotID string
	VolumeID   string
	StartTime  time.Time
}

// codeSnapshotRate is EC2's refusal of a snapshot that follows another of
// the same volume too closely; the SDK does not retry it.
const codeSnapshotRate = "SnapshotCreationPerVolumeRateExceeded"

// SnapshotCall is a snapshot call made ready by PrepareSnapshots, before
// the backup window: checked against the instance and EC2's permissions,
// so that CreateSnapshots has only the call itself to make.
type SnapshotCall struct {
	spec SnapshotSpec
	ids  []string
	// single is one volume's CreateSnapshot; else CreateSnapshots on the
	// instance, with the boot volume and the volumes not in spec excluded.
	single      bool
	excludeBoot bool
	exclude     []string
}

// PrepareSnapshots checks the snapshots of s and returns the call that
// takes them: one volume is snapshotted by CreateSnapshot; several by a
// single CreateSnapshots on the instance, which makes the set
// crash-consistent across them, with the instance's other volumes (boot
// volume included unless it is one of s.Volumes) excluded. It describes
// the instance and asks EC2 whether the call would be permitted (DryRun),
// so that nothing of this can fail once PostgreSQL is in backup mode.
func (c *Client) PrepareSnapshots(ctx context.Context, s SnapshotSpec) (*SnapshotCall, error) {
	ids := make([]string, len(s.Volumes))
	for i, v := range s.Volumes {
		ids[i] = v.VolumeID
	}
	switch {
	case len(ids) == 0:
		return nil, errors.New("create snapshots: no volumes")
	case len(ids) != len(slices.Compact(slices.Sorted(slices.Values(ids)))):
		return nil, fmt.Errorf("create snapshots: volumes repeat: %s", strings.Join(ids, ", "))
	case len(ids) == 1:
		call := &SnapshotCall{spec: s, ids: ids, single: true}
		out, err := c.ec2.CreateSnapshot(ctx, call.singleInput(true))
		var created []string
		if out != nil {
			created = append(created, aws.ToString(out.SnapshotId))
		}
		if err := c.dryRun(ctx, err, "create snapshot of "+ids[0], created); err != nil {
			return nil, err
		}
		return call, nil
	case s.InstanceID == "":
		return nil, fmt.Errorf("create snapshots of %s: no instance id", strings.Join(ids, ", "))
	}
	what := fmt.Sprintf("create snapshots of %s on %s", strings.Join(ids, ", "), s.InstanceID)
	root, attached, err := c.InstanceVolumes(ctx, s.InstanceID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	onInstance := slices.Collect(maps.Values(attached))
	for _, id := range ids {
		if !slices.Contains(onInstance, id) {
			return nil, fmt.Errorf("%s: %s is not attached to the instance", what, id)
		}
	}
	call := &SnapshotCall{spec: s, ids: ids, excludeBoot: !slices.Contains(ids, root)}
	for _, id := range onInstance {
		if id != root && !slices.Contains(ids, id) {
			call.exclude = append(call.exclude, id)
		}
	}
	slices.Sort(call.exclude)
	out, err := c.ec2.CreateSnapshots(ctx, call.instanceInput(true))
	var created []string
	if out != nil {
		for _, si := range out.Snapshots {
			created = append(created, aws.ToString(si.SnapshotId))
		}
	}
	if err := c.dryRun(ctx, err, what, created); err != nil {
		return nil, err
	}
	return call, nil
}

// dryRun interprets the answer to a DryRun call: EC2 says DryRunOperation
// when the call would have been permitted. An endpoint that ignores DryRun
// (an EC2-compatible API) took the snapshots: they are deleted.
func (c *Client) dryRun(ctx context.Context, err error, what string, created []string) error {
	switch code := apiErrorCode(err); {
	case code == "DryRunOperation":
		return nil
	case err == nil:
		return c.deleteCreated(ctx, created)
	case code == "UnauthorizedOperation":
		return fmt.Errorf("%s: not permitted (checked with DryRun): give the instance role ec2:CreateSnapshot, ec2:CreateSnapshots and ec2:CreateTags: %w", what, err)
	}
	return fmt.Errorf("%s (checked with DryRun): %w", what, err)
}

func (call *SnapshotCall) singleInput(dryRun bool) *ec2.CreateSnapshotInput {
	s, v := call.spec, call.spec.Volumes[0]
	in := &ec2.CreateSnapshotInput{
		VolumeId:          aws.String(v.VolumeID),
		TagSpecifications: tagSpec(types.ResourceTypeSnapshot, s.tags(v)),
		DryRun:            aws.Bool(dryRun),
	}
	if s.Description != "" {
		in.Description = aws.String(s.Description)
	}
	return in
}

func (call *SnapshotCall) instanceInput(dryRun bool) *ec2.CreateSnapshotsInput {
	s := call.spec
	in := &ec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{
			InstanceId:           aws.String(s.InstanceID),
			ExcludeBootVolume:    aws.Bool(call.excludeBoot),
			ExcludeDataVolumeIds: call.exclude,
		},
		CopyTagsFromSource: types.CopyTagsFromSourceVolume,
		TagSpecifications:  tagSpec(types.ResourceTypeSnapshot, s.Tags),
		DryRun:             aws.Bool(dryRun),
	}
	if s.Description != "" {
		in.Description = aws.String(s.Description)
	}
	return in
}

// CreateSnapshots starts the snapshots of a prepared call, one of each
// volume, in the order of its spec's Volumes, and makes no other call but
// the tagging of CreateSnapshots' results. The snapshots' point in time is
// fixed when it returns; they are complete only once WaitSnapshots says
// so.
//
// A call refused with SnapshotCreationPerVolumeRateExceeded is retried
// after each wait of Options.SnapshotBackoff (by default 15 s, 30 s, 60 s,
// 120 s), bounded by ctx. If EC2 does not return exactly one snapshot per
// volume, or tagging fails, what was created is deleted and an error
// returned. Every snapshot carries the spec's Tags from its creation on,
// so that what a call cut short by ctx created can be found by them.
func (c *Client) CreateSnapshots(ctx context.Context, call *SnapshotCall) ([]Snapshot, error) {
	if call.single {
		var out *ec2.CreateSnapshotOutput
		err := c.retrySnapshotRate(ctx, func() (err error) {
			out, err = c.ec2.CreateSnapshot(ctx, call.singleInput(false))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("create snapshot of %s: %w", call.ids[0], err)
		}
		return []Snapshot{{
			SnapshotID: aws.ToString(out.SnapshotId),
			VolumeID:   aws.ToString(out.VolumeId),
			StartTime:  aws.ToTime(out.StartTime),
		}}, nil
	}
	s := call.spec
	what := fmt.Sprintf("create snapshots of %s on %s", strings.Join(call.ids, ", "), s.InstanceID)
	var out *ec2.CreateSnapshotsOutput
	err := c.retrySnapshotRate(ctx, func() (err error) {
		out, err = c.ec2.CreateSnapshots(ctx, call.instanceInput(false))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	byVolume := make(map[string]Snapshot)
	var created, got []string
	for _, si := range out.Snapshots {
		snap := Snapshot{
			SnapshotID: aws.ToString(si.SnapshotId),
			VolumeID:   aws.ToString(si.VolumeId),
			StartTime:  aws.ToTime(si.StartTime),
		}
		created = append(created, snap.SnapshotID)
		got = append(got, snap.VolumeID)
		byVolume[snap.VolumeID] = snap
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(call.ids)); !slices.Equal(got, want) {
		err := fmt.Errorf("%s: EC2 snapshotted volumes [%s], want [%s]", what, strings.Join(got, " "), strings.Join(want, " "))
		return nil, errors.Join(err, c.deleteCreated(ctx, created))
	}

	// The per-volume tags, and s.Tags again over the copied volume tags
	// they may clash with.
	snaps := make([]Snapshot, len(call.ids))
	for i, v := range s.Volumes {
		snaps[i] = byVolume[v.VolumeID]
		_, err := c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snaps[i].SnapshotID}, Tags: tagList(s.tags(v))})
		if err != nil {
			err = fmt.Errorf("%s: tag %s: %w", what, snaps[i].SnapshotID, err)
			return nil, errors.Join(err, c.deleteCreated(ctx, created))
		}
	}
	return snaps, nil
}

// tags are the tags of v's snapshot: v's own (less the reserved aws:
// ones), then s.Tags, then s.PerVolumeTags[v].
func (s SnapshotSpec) tags(v VolumeInfo) map[string]string {
	m := make(map[string]string)
	for k, val := range v.Tags {
		if !strings.HasPrefix(k, "aws:") {
			m[k] = val
		}
	}
	maps.Copy(m, s.Tags)
	maps.Copy(m, s.PerVolumeTags[v.VolumeID])
	return m
}

// deleteCreated deletes snapshots just created by a failed call, even when
// ctx has ended.
func (c *Client) deleteCreated(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := c.DeleteSnapshots(ctx, ids); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	return nil
}

// retrySnapshotRate calls create, retrying it after c.snapshotBackoff's
// waits while it fails with SnapshotCreationPerVolumeRateExceeded.
func (c *Client) retrySnapshotRate(ctx context.Context, create func() error) error {
	for i := 0; ; i++ {
		err := create()
		if apiErrorCode(err) != codeSnapshotRate || i == len(c.snapshotBackoff) {
			return err
		}
		if serr := sleep(ctx, c.snapshotBackoff[i]); serr != nil {
			return fmt.Errorf("%w; gave up retrying: %w", err, serr)
		}
	}
}

// WaitSnapshots polls the snapshots every poll (default 15 s) until all
// are completed (nil), one is in error (an error naming it and EC2's
// message), or ctx ends. progress, if not nil, gets their average
// percentage after each poll.
func (c *Client) WaitSnapshots(ctx context.Context, ids []string, poll time.Duration, progress func(pct int)) error {
	if len(ids) == 0 {
		return nil
	}
	if poll <= 0 {
		poll = defaultSnapshotPoll
	}
	for {
		done, pct, err := c.snapshotsDone(ctx, ids)
		if err != nil {
			return err
		}
		if progress != nil {
			progress(pct)
		}
		if done {
			return nil
		}
		if err := sleep(ctx, poll); err != nil {
			return fmt.Errorf("wait for snapshots %s (%d%%): %w", strings.Join(ids, ", "), pct, err)
		}
	}
}

// snapshotsDone reports whether all snapshots ids are completed, and
// their average progress; an error when any failed or is missing.
func (c *Client) snapshotsDone(ctx context.Context, ids []string) (done bool, pct int, err error) {
	states := make(map[string]types.Snapshot, len(ids))
	pages := ec2.NewDescribeSnapshotsPaginator(c.ec2, &ec2.DescribeSnapshotsInput{SnapshotIds: ids})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return false, 0, fmt.Errorf("describe snapshots %s: %w", strings.Join(ids, ", "), err)
		}
		for _, s := range page.Snapshots {
			states[aws.ToString(s.SnapshotId)] = s
		}
	}
	var failed []error
	done, sum := true, 0
	for _, id := range ids {
		s, ok := states[id]
		switch {
		case !ok:
			failed = append(failed, fmt.Errorf("snapshot %s not found", id))
		case s.State == types.SnapshotStateError:
			failed = append(failed, fmt.Errorf("snapshot %s of %s failed: %s", id, aws.ToString(s.VolumeId), aws.ToString(s.StateMessage)))
		case s.State == types.SnapshotStateCompleted:
			sum += 100
		default:
			done = false
			p, _ := strconv.Atoi(strings.TrimSuffix(aws.ToString(s.Progress), "%"))
			sum += min(p, 99)
		}
	}
	if err := errors.Join(failed...); err != nil {
		return false, 0, err
	}
	return done, sum / len(ids), nil
}

// DeleteSnapshots deletes snapshots; those already gone are fine. It goes
// on past failures and returns them all.
func (c *Client) DeleteSnapshots(ctx context.Context, ids []string) error {
	var errs []error
	for _, id := range ids {
		_, err := c.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		if err != nil && apiErrorCode(err) != "InvalidSnapshot.NotFound" {
			errs = append(errs, fmt.Errorf("delete snapshot %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
