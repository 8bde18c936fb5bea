package basebackup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/freeze"
	"github.com/walsnap/walsnap/internal/manifest"
)

// Defaults of the EBS provider.
const (
	defaultSnapshotWait = 6 * time.Hour
	// defaultFreezeLimit bounds how long filesystems stay frozen, even if
	// the snapshot call hangs: writes to them block meanwhile.
	defaultFreezeLimit = 30 * time.Second
	// snapshotCleanupTimeout bounds the deletion of snapshots that a
	// failed capture leaves.
	snapshotCleanupTimeout = 2 * time.Minute
)

// EBS snapshots the EBS volumes that hold the data directory, the pg_wal
// target and the tablespaces, all in one crash-consistent set (DESIGN.md
// rule 2: the capture ends when the create call returns; Complete waits
// until the snapshots are completed).
type EBS struct {
	Client *ebs.Client
	// InstanceID is this instance's id; "" asks the instance metadata
	// service.
	InstanceID string
	// Volumes, when set, are the volume ids to snapshot instead of those
	// discovered from the mount table and sysfs.
	Volumes []string
	// Freeze freezes the PostgreSQL filesystems (FIFREEZE) around the
	// snapshot call, for application-consistent snapshots. The root
	// filesystem is never frozen.
	Freeze bool
	// WaitTimeout bounds Complete's wait for the snapshots (default 6 h).
	WaitTimeout time.Duration

	// mountinfo and sysRoot are the mount table and the sysfs root that
	// discovery reads; "" means the real ones.
	mountinfo, sysRoot string
	// freezer freezes filesystems; nil means freeze.Kernel.
	freezer freeze.Freezer
	// freezeLimit is the watchdog's bound on a freeze (default 30 s).
	freezeLimit time.Duration
	// poll is WaitSnapshots' interval (0: the ebs package's default).
	poll time.Duration
}

// ebsTarget is a volume to snapshot: what EC2 says of it, and where it is
// mounted when discovery found it.
type ebsTarget struct {
	info ebs.VolumeInfo
	vol  *blockdev.Volume // nil for an explicit volume discovery did not map
}

// Name implements Provider.
func (*EBS) Name() manifest.Provider { return manifest.ProviderEBS }

// Capture implements Provider: it finds the volumes, optionally freezes
// their filesystems, starts the snapshots and thaws at once. Its Complete
// waits until every snapshot is completed (one in error fails it).
func (e *EBS) Capture(ctx context.Context, job *Job) (*Captured, error) {
	if e.Client == nil {
		return nil, errors.New("ebs: no EC2 client")
	}
	locs := make([]string, len(job.Tablespaces))
	tsLocs := make(map[uint32]string, len(job.Tablespaces)) // resolved
	for i, ts := range job.Tablespaces {
		locs[i] = ts.Location
		loc, err := filepath.EvalSymlinks(ts.Location)
		if err != nil {
			return nil, fmt.Errorf("ebs: tablespace %s: %w", ts.Name, err)
		}
		tsLocs[ts.OID] = loc
	}
	paths, err := blockdev.PostgreSQLPaths(job.PGData, locs)
	if err != nil {
		return nil, fmt.Errorf("ebs: %w", err)
	}
	instance := e.InstanceID
	if instance == "" {
		if instance, _, err = ebs.InstanceIdentity(ctx); err != nil {
			return nil, fmt.Errorf("ebs: %w (set ebs.instance_id)", err)
		}
	}
	targets, err := e.targets(ctx, instance, paths, job)
	if err != nil {
		return nil, fmt.Errorf("ebs: %w", err)
	}

	spec := ebs.SnapshotSpec{
		InstanceID: instance,
		Tags: map[string]string{
			"walsnap:backup-id": job.ID,
			"walsnap:system-id": strconv.FormatUint(job.SystemID, 10),
		},
		PerVolumeTags: make(map[string]map[string]string),
		Description:   "walsnap backup " + job.ID,
	}
	var frozen []string
	for _, t := range targets {
		id := t.info.VolumeID
		spec.Volumes = append(spec.Volumes, t.info)
		tags := map[string]string{"walsnap:device": t.info.Device, "Name": "walsnap " + job.ID + " " + id}
		if t.vol != nil {
			tags["walsnap:mount-point"] = t.vol.MountPoint
			tags["Name"] = "walsnap " + job.ID + " " + t.vol.MountPoint
		}
		spec.PerVolumeTags[id] = tags
		switch {
		case !e.Freeze:
		case t.vol == nil:
			return nil, fmt.Errorf("ebs: ebs.freeze: volume %s was not found in the mount table, so its filesystem cannot be frozen", id)
		case t.vol.Root || t.vol.MountPoint == "/":
			job.Log.Warn("not freezing the root volume: its snapshot is crash-consistent only", "volume", id, "mount_point", t.vol.MountPoint)
		default:
			frozen = append(frozen, t.vol.MountPoint)
		}
	}

	snaps, stayedFrozen, err := e.snapshot(ctx, spec, frozen, job)
	if err != nil {
		return nil, fmt.Errorf("ebs: %w", err)
	}
	ids := make([]string, len(snaps))
	payload := manifest.EBSPayload{InstanceID: instance, AZ: targets[0].info.AZ, PGData: paths[0], Tablespaces: tsLocs}
	for i, s := range snaps {
		ids[i] = s.SnapshotID
		v := targets[i].info
		rec := manifest.EBSSnapshot{
			SnapshotID: s.SnapshotID, StartTime: s.StartTime, VolumeID: v.VolumeID, Device: v.Device,
			SizeGiB: v.SizeGiB, Type: v.Type, IOPS: v.IOPS, Throughput: v.Throughput, AZ: v.AZ,
			Encrypted: v.Encrypted, KMSKeyID: v.KMSKeyID,
		}
		if mv := targets[i].vol; mv != nil {
			rec.MountPoint, rec.FSType, rec.MountOptions, rec.Paths = mv.MountPoint, mv.FSType, mv.MountOptions, mv.Paths
			rec.Frozen = stayedFrozen && slices.Contains(frozen, mv.MountPoint)
		}
		payload.Snapshots = append(payload.Snapshots, rec)
	}
	return &Captured{Payload: payload, Complete: func(ctx context.Context) (any, error) {
		return nil, e.wait(ctx, ids, job)
	}}, nil
}

// targets finds the volumes to snapshot: e.Volumes or the discovered ones,
// each attached to instance, described by EC2, in a stable order.
func (e *EBS) targets(ctx context.Context, instance string, paths []string, job *Job) ([]ebsTarget, error) {
	root, attached, err := e.Client.InstanceVolumes(ctx, instance)
	if err != nil {
		return nil, err
	}
	onInstance := make(map[string]bool, len(attached))
	for _, id := range attached {
		onInstance[id] = true
	}
	found, derr := blockdev.Discover(paths, cmp.Or(e.mountinfo, blockdev.DefaultMountinfo), cmp.Or(e.sysRoot, blockdev.DefaultSysRoot))
	if derr != nil && len(e.Volumes) == 0 {
		return nil, fmt.Errorf("find the volumes of %s: %w", strings.Join(paths, ", "), derr)
	}
	// Discovered volumes by id (Xen disks resolved through their
	// attachment names).
	discovered := make(map[string]*blockdev.Volume)
	var order []string
	for i := range found {
		v := &found[i]
		id := v.VolumeID
		if id == "" {
			if id = attachedAs(attached, v.DeviceName); id == "" {
				return nil, fmt.Errorf("%s (%s, disk %s) is not an EBS volume attached to %s", v.MountPoint, v.DeviceName, v.Device, instance)
			}
		}
		if id == root {
			v.Root = true
		}
		discovered[id] = v
		order = append(order, id)
	}

	ids := order
	if len(e.Volumes) > 0 {
		ids = slices.Clone(e.Volumes)
		if derr != nil {
			job.Log.Warn("ebs.volumes: the PostgreSQL directories could not be mapped to volumes, so the snapshots record no mount points and a restore cannot mount them", "error", derr)
		}
		for _, id := range order {
			if !slices.Contains(ids, id) {
				v := discovered[id]
				return nil, fmt.Errorf("%s holds %s but is not in ebs.volumes (%s)", id, strings.Join(v.Paths, ", "), strings.Join(ids, ", "))
			}
		}
	}
	for _, id := range ids {
		if !onInstance[id] {
			return nil, fmt.Errorf("volume %s is not attached to instance %s", id, instance)
		}
	}
	infos, err := e.Client.DescribeVolumes(ctx, ids)
	if err != nil {
		return nil, err
	}
	targets := make([]ebsTarget, len(infos))
	for i, info := range infos {
		targets[i] = ebsTarget{info: info, vol: discovered[info.VolumeID]}
	}
	return targets, nil
}

// snapshot starts the snapshots, with the filesystems at mountPoints
// frozen for the duration of the create call, and reports whether they
// stayed frozen until it returned. The thaw is guaranteed: on return, on
// a panic (deferred), and by the watchdog when ctx ends (as on
// SIGINT/SIGTERM) or the freeze lasts e.freezeLimit. Nothing is logged
// while frozen: the log may be on a frozen filesystem.
func (e *EBS) snapshot(ctx context.Context, spec ebs.SnapshotSpec, mountPoints []string, job *Job) (snaps []ebs.Snapshot, frozen bool, err error) {
	if len(mountPoints) == 0 {
		if snaps, err = e.Client.CreateSnapshots(ctx, spec); err != nil {
			return nil, false, err
		}
		job.Log.Info("snapshots started", "snapshots", snapshotIDs(snaps))
		return snaps, false, nil
	}
	f := e.freezer
	if f == nil {
		f = freeze.Kernel{}
	}
	limit := cmp.Or(e.freezeLimit, defaultFreezeLimit)
	job.Log.Info("freezing filesystems for the snapshots", "mount_points", mountPoints, "limit", limit)
	start := time.Now()
	held, err := freeze.Hold(ctx, f, mountPoints, limit)
	if err != nil {
		return nil, false, err
	}
	defer held.Thaw()
	snaps, err = e.Client.CreateSnapshots(ctx, spec)
	thawErr := held.Thaw()
	frozenFor := time.Since(start).Round(time.Millisecond)
	if err != nil {
		return nil, false, errors.Join(err, thawErr)
	}
	if thawErr != nil {
		// The snapshots are good, but a backup must not leave a
		// filesystem frozen unnoticed; no manifest will name them.
		return nil, false, errors.Join(thawErr, deleteSnapshots(ctx, e.Client, snaps))
	}
	if early := held.Early(); early != nil {
		job.Log.Warn("the filesystems were thawed before the snapshot call returned: the snapshots are crash-consistent only",
			"reason", early, "frozen_for", frozenFor, "snapshots", snapshotIDs(snaps))
		return snaps, false, nil
	}
	job.Log.Info("snapshots started; filesystems thawed", "snapshots", snapshotIDs(snaps), "frozen_for", frozenFor)
	return snaps, true, nil
}

// wait waits until the snapshots are completed, logging their progress.
func (e *EBS) wait(ctx context.Context, ids []string, job *Job) error {
	timeout := cmp.Or(e.WaitTimeout, defaultSnapshotWait)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, last := time.Now(), -1
	err := e.Client.WaitSnapshots(wctx, ids, e.poll, func(pct int) {
		if pct != last {
			job.Log.Info("snapshots in progress", "percent", pct)
			last = pct
		}
	})
	switch {
	case err != nil && ctx.Err() == nil && wctx.Err() != nil:
		return fmt.Errorf("ebs: snapshots not completed within ebs.wait_timeout (%s): %w", timeout, err)
	case err != nil:
		return fmt.Errorf("ebs: %w", err)
	}
	job.Log.Info("snapshots completed", "snapshots", ids, "duration", time.Since(start).Round(time.Second))
	return nil
}

// attachedAs returns the volume id attached as the EC2 device name dev,
// taking the Xen spellings as one (see ebs.SameDevice); "" when none is.
func attachedAs(attached map[string]string, dev string) string {
	for name, id := range attached {
		if ebs.SameDevice(name, dev) {
			return id
		}
	}
	return ""
}

func snapshotIDs(snaps []ebs.Snapshot) []string {
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		ids[i] = s.SnapshotID
	}
	return ids
}

// deleteSnapshots removes snapshots that no manifest will name, even when
// ctx has ended.
func deleteSnapshots(ctx context.Context, c *ebs.Client, snaps []ebs.Snapshot) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotCleanupTimeout)
	defer cancel()
	if err := c.DeleteSnapshots(ctx, snapshotIDs(snaps)); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	return nil
}
