package ebs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// VolumeInfo is what a backup manifest records of a volume.
type VolumeInfo struct {
	VolumeID string
	Device   string // attachment device name as EC2 reports it, e.g. /dev/sdf ("" when detached)
	AZ       string
	Type     string // gp3, io2, ...
	KMSKeyID string // ARN of the key, when Encrypted
	SizeGiB  int32
	IOPS     int32 // 0 when not applicable
	// Throughput is in MiB/s (gp3), 0 when not applicable.
	Throughput int32
	Encrypted  bool
	Tags       map[string]string
}

// DescribeVolumes describes the volumes ids, in that order; a missing one
// is an error.
func (c *Client) DescribeVolumes(ctx context.Context, ids []string) ([]VolumeInfo, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := c.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describe volumes %s: %w", strings.Join(ids, ", "), err)
	}
	byID := make(map[string]types.Volume, len(out.Volumes))
	for _, v := range out.Volumes {
		byID[aws.ToString(v.VolumeId)] = v
	}
	infos := make([]VolumeInfo, len(ids))
	for i, id := range ids {
		v, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("describe volumes: %s not found", id)
		}
		infos[i] = volumeInfo(v)
	}
	return infos, nil
}

func volumeInfo(v types.Volume) VolumeInfo {
	info := VolumeInfo{
		VolumeID:   aws.ToString(v.VolumeId),
		AZ:         aws.ToString(v.AvailabilityZone),
		Type:       string(v.VolumeType),
		KMSKeyID:   aws.ToString(v.KmsKeyId),
		SizeGiB:    aws.ToInt32(v.Size),
		IOPS:       aws.ToInt32(v.Iops),
		Throughput: aws.ToInt32(v.Throughput),
		Encrypted:  aws.ToBool(v.Encrypted),
		Tags:       tagMap(v.Tags),
	}
	for _, a := range v.Attachments {
		if a.State == types.VolumeAttachmentStateAttached || a.State == types.VolumeAttachmentStateAttaching {
			info.Device = aws.ToString(a.Device)
			break
		}
	}
	return info
}

// InstanceVolumes returns the EBS volumes attached to an instance by
// device name as EC2 reports them (the boot volume included), and which of
// them is the boot volume ("" when the instance boots from instance
// store). The root device name may differ in Xen spelling from its
// mapping (/dev/xvda vs /dev/sda1); see SameDevice.
func (c *Client) InstanceVolumes(ctx context.Context, instanceID string) (root string, attached map[string]string, err error) {
	inst, err := c.instance(ctx, instanceID)
	if err != nil {
		return "", nil, err
	}
	attached = make(map[string]string)
	rootName := aws.ToString(inst.RootDeviceName)
	var rootGuess string // a Xen-equivalent name, if no exact match
	for _, m := range inst.BlockDeviceMappings {
		if m.Ebs == nil || m.Ebs.VolumeId == nil {
			continue
		}
		dev, id := aws.ToString(m.DeviceName), aws.ToString(m.Ebs.VolumeId)
		attached[dev] = id
		switch {
		case dev == rootName:
			root = id
		case SameDevice(dev, rootName):
			rootGuess = id
		}
	}
	if root == "" {
		root = rootGuess
	}
	return root, attached, nil
}

// InstanceZone returns the availability zone of an instance, for hosts
// that cannot ask the instance metadata service.
func (c *Client) InstanceZone(ctx context.Context, instanceID string) (string, error) {
	inst, err := c.instance(ctx, instanceID)
	if err != nil {
		return "", err
	}
	if inst.Placement == nil || aws.ToString(inst.Placement.AvailabilityZone) == "" {
		return "", fmt.Errorf("describe instance %s: no availability zone", instanceID)
	}
	return aws.ToString(inst.Placement.AvailabilityZone), nil
}

func (c *Client) instance(ctx context.Context, instanceID string) (types.Instance, error) {
	out, err := c.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		return types.Instance{}, fmt.Errorf("describe instance %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			if aws.ToString(inst.InstanceId) == instanceID {
				return inst, nil
			}
		}
	}
	return types.Instance{}, fmt.Errorf("describe instance %s: not found", instanceID)
}

// FreeDeviceName returns the first of /dev/sdf…/dev/sdp that no volume
// of the instance uses, in either Xen spelling (sdX or xvdX).
func (c *Client) FreeDeviceName(ctx context.Context, instanceID string) (string, error) {
	inst, err := c.instance(ctx, instanceID)
	if err != nil {
		return "", err
	}
	used := make(map[string]bool)
	for _, m := range inst.BlockDeviceMappings {
		used[canonicalDevice(aws.ToString(m.DeviceName))] = true
	}
	for l := 'f'; l <= 'p'; l++ {
		if name := "/dev/sd" + string(l); !used[canonicalDevice(name)] {
			return name, nil
		}
	}
	return "", fmt.Errorf("instance %s: no free device name in /dev/sdf-/dev/sdp", instanceID)
}

// SameDevice reports whether two EC2 device names denote the same disk:
// /dev/sdX, /dev/xvdX and their partition forms (/dev/sda1) are one, with
// or without /dev/.
func SameDevice(a, b string) bool { return canonicalDevice(a) == canonicalDevice(b) }

// canonicalDevice reduces an sd/xvd device name to "sd" + its disk
// letters; other names pass through without /dev/.
func canonicalDevice(name string) string {
	n := strings.TrimPrefix(name, "/dev/")
	switch {
	case strings.HasPrefix(n, "xvd"):
		n = "sd" + n[3:]
	case !strings.HasPrefix(n, "sd"):
		return n
	}
	return strings.TrimRight(n, "0123456789")
}

// VolumeSpec describes a volume to build from a snapshot.
type VolumeSpec struct {
	SnapshotID string
	AZ         string
	Type       string // "" = EC2's default
	KMSKeyID   string // encrypts with this key; "" = the snapshot's encryption
	IOPS       int32  // 0 = the type's default
	Throughput int32  // MiB/s; 0 = the type's default
	SizeGiB    int32  // 0 = the snapshot's size
	Tags       map[string]string
	// InitializationRate is the rate in MiB/s (100-300) at which EBS
	// fetches the snapshot's blocks (VolumeInitializationRate); 0 = the
	// default, lazy, rate.
	InitializationRate int32
}

// CreateVolume creates a volume from a snapshot and waits until it is
// available. When the volume was created but never became available, its
// id is returned with the error so that the caller can remove it.
func (c *Client) CreateVolume(ctx context.Context, v VolumeSpec) (volumeID string, err error) {
	in := &ec2.CreateVolumeInput{
		AvailabilityZone:  aws.String(v.AZ),
		SnapshotId:        aws.String(v.SnapshotID),
		VolumeType:        types.VolumeType(v.Type),
		TagSpecifications: tagSpec(types.ResourceTypeVolume, v.Tags),
	}
	if v.KMSKeyID != "" {
		in.Encrypted, in.KmsKeyId = aws.Bool(true), aws.String(v.KMSKeyID)
	}
	in.Iops = optInt32(v.IOPS)
	in.Throughput = optInt32(v.Throughput)
	in.Size = optInt32(v.SizeGiB)
	in.VolumeInitializationRate = optInt32(v.InitializationRate)
	out, err := c.ec2.CreateVolume(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create volume from %s in %s: %w", v.SnapshotID, v.AZ, err)
	}
	id := aws.ToString(out.VolumeId)
	if err := c.waitAvailable(ctx, id); err != nil {
		return id, fmt.Errorf("create volume from %s: %w", v.SnapshotID, err)
	}
	return id, nil
}

// waitAvailable waits until volume id is available.
func (c *Client) waitAvailable(ctx context.Context, id string) error {
	w := ec2.NewVolumeAvailableWaiter(c.ec2, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = c.waitMinDelay, c.waitMaxDelay
		o.Retryable = func(_ context.Context, _ *ec2.DescribeVolumesInput, out *ec2.DescribeVolumesOutput, err error) (bool, error) {
			if err != nil {
				return false, err
			}
			v, err := oneVolume(out, id)
			if err != nil {
				return false, err
			}
			return v.State != types.VolumeStateAvailable, nil
		}
	})
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, volumeWaitTimeout); err != nil {
		return fmt.Errorf("wait for %s to be available: %w", id, err)
	}
	return nil
}

// oneVolume returns volume id from out, or an error when it is missing or
// in a state it cannot leave (error, deleting, deleted).
func oneVolume(out *ec2.DescribeVolumesOutput, id string) (types.Volume, error) {
	for _, v := range out.Volumes {
		if aws.ToString(v.VolumeId) != id {
			continue
		}
		switch v.State {
		case types.VolumeStateError, types.VolumeStateDeleting, types.VolumeStateDeleted:
			return v, fmt.Errorf("volume %s is %s", id, v.State)
		}
		return v, nil
	}
	return types.Volume{}, fmt.Errorf("volume %s not found", id)
}

// AttachVolume attaches a volume to an instance as device and waits until
// the attachment (not just the volume) is attached.
func (c *Client) AttachVolume(ctx context.Context, volumeID, instanceID, device string) error {
	_, err := c.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId:   aws.String(volumeID),
		InstanceId: aws.String(instanceID),
		Device:     aws.String(device),
	})
	if err != nil {
		return fmt.Errorf("attach %s to %s as %s: %w", volumeID, instanceID, device, err)
	}
	w := ec2.NewVolumeInUseWaiter(c.ec2, func(o *ec2.VolumeInUseWaiterOptions) {
		o.MinDelay, o.MaxDelay = c.waitMinDelay, c.waitMaxDelay
		o.Retryable = func(_ context.Context, _ *ec2.DescribeVolumesInput, out *ec2.DescribeVolumesOutput, err error) (bool, error) {
			if err != nil {
				return false, err
			}
			v, err := oneVolume(out, volumeID)
			if err != nil {
				return false, err
			}
			for _, a := range v.Attachments {
				if aws.ToString(a.InstanceId) == instanceID && a.State == types.VolumeAttachmentStateAttached {
					return false, nil
				}
			}
			return true, nil
		}
	})
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volumeID}}, volumeWaitTimeout); err != nil {
		return fmt.Errorf("attach %s to %s as %s: wait for the attachment: %w", volumeID, instanceID, device, err)
	}
	return nil
}

// DetachAndDelete removes volumes after a failed restore: each one is
// detached (forced if a plain detach does not finish in time), awaited
// until available, and deleted. Volumes already gone are fine. It goes on
// past failures and returns them all.
func (c *Client) DetachAndDelete(ctx context.Context, volumeIDs []string) error {
	var errs []error
	for _, id := range volumeIDs {
		if err := c.detachAndDelete(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Client) detachAndDelete(ctx context.Context, id string) error {
	out, err := c.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if apiErrorCode(err) == "InvalidVolume.NotFound" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	v, err := oneVolume(out, id)
	switch {
	case v.State == types.VolumeStateDeleting || v.State == types.VolumeStateDeleted:
		return nil
	case err != nil:
		return err
	case v.State == types.VolumeStateCreating:
		if err := c.waitAvailable(ctx, id); err != nil {
			return err
		}
	case v.State == types.VolumeStateInUse:
		if err := c.detach(ctx, v); err != nil {
			return err
		}
	}
	_, err = c.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)})
	if err != nil && apiErrorCode(err) != "InvalidVolume.NotFound" {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// detach ends every attachment of v and waits until v is available,
// forcing the detach if it has not finished within detachGrace.
func (c *Client) detach(ctx context.Context, v types.Volume) error {
	id := aws.ToString(v.VolumeId)
	if err := c.detachVolume(ctx, v.Attachments, false); err != nil {
		return err
	}
	graceCtx, cancel := context.WithTimeout(ctx, detachGrace)
	err := c.waitAvailable(graceCtx, id)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	if err := c.detachVolume(ctx, v.Attachments, true); err != nil {
		return err
	}
	return c.waitAvailable(ctx, id)
}

// detachVolume asks EC2 to end attachments.
func (c *Client) detachVolume(ctx context.Context, attachments []types.VolumeAttachment, force bool) error {
	for _, a := range attachments {
		_, err := c.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{
			VolumeId:   a.VolumeId,
			InstanceId: a.InstanceId,
			Device:     a.Device,
			Force:      aws.Bool(force),
		})
		// An attachment that went away meanwhile is what we want.
		if err != nil && apiErrorCode(err) != "IncorrectState" && apiErrorCode(err) != "InvalidAttachment.NotFound" {
			return fmt.Errorf("detach from %s (force=%t): %w", aws.ToString(a.InstanceId), force, err)
		}
	}
	return nil
}

func optInt32(v int32) *int32 {
	if v == 0 {
		return nil
	}
	return aws.Int32(v)
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func tagList(m map[string]string) []types.Tag {
	keys := slices.Sorted(maps.Keys(m))
	tags := make([]types.Tag, len(keys))
	for i, k := range keys {
		tags[i] = types.Tag{Key: aws.String(k), Value: aws.String(m[k])}
	}
	return tags
}

// tagSpec tags a resource being created, or is nil without tags.
func tagSpec(rt types.ResourceType, m map[string]string) []types.TagSpecification {
	if len(m) == 0 {
		return nil
	}
	return []types.TagSpecification{{ResourceType: rt, Tags: tagList(m)}}
}
