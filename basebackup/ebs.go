package basebackup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/freeze"
	"github.com/walsnap/walsnap/internal/manifest"
)

// Defaults of the EBS provider.
const (
	defaultSnapshotWait = 6 * time.Hour
	// defaultWindowTimeout is ebs.window_timeout's default.
	defaultWindowTimeout = time.Minute
	// defaultFreezeLimit bounds how long filesystems stay frozen, even if
	// the snapshot call hangs: writes to them block meanwhile.
	defaultFreezeLimit = 30 * time.Second
	// snapshotCleanupTimeout bounds the deletion of snapshots that a
	// failed backup leaves.
	snapshotCleanupTimeout = 2 * time.Minute
	// unnamedOrchestrator records snapshots an orchestrator took when
	// backup-stop named none.
	unnamedOrchestrator = "external"
)

// EBS snapshots the EBS volumes that hold the data directory, the pg_wal
// target and the tablespaces, all in one crash-consistent set (DESIGN.md
// rule 2: the capture ends when the create call returns; Complete waits
// until the snapshots are completed). Everything that can fail before the
// snapshot call (the instance, the volumes and where they are mounted,
// the freeze targets, the permission to snapshot) is done by Prepare,
// before pg_backup_start (rule 12).
//
// As a Recorder it records the snapshots an external orchestrator takes of
// the same volumes between backup-start and backup-stop.
type EBS struct {
	Client *ebs.Client
	// InstanceID is this instance's id; "" asks the instance metadata
	// service.
	InstanceID string
	// Volumes, when set, are the volumes to snapshot instead of those
	// discovered from the mount table and sysfs.
	Volumes []EBSVolume
	// Freeze freezes the PostgreSQL filesystems (FIFREEZE) around the
	// snapshot call, for application-consistent snapshots. The root
	// filesystem is never frozen.
	Freeze bool
	// WaitTimeout bounds Complete's wait for the snapshots (default 6 h).
	WaitTimeout time.Duration
	// WindowTimeout is the deadline of the backup window: the freeze and
	// the snapshot call (default 1 min). It also bounds the EC2 calls of
	// Prepare: an EC2 that cannot answer them in that time would not
	// answer the snapshot call either.
	WindowTimeout time.Duration

	// mountinfo and sysRoot are the mount table and the sysfs root that
	// discovery reads; "" means the real mount table and blockdev.SysRoot.
	mountinfo, sysRoot string
	// freezer freezes filesystems; nil means freeze.Kernel.
	freezer freeze.Freezer
	// freezeLimit is the watchdog's bound on a freeze (default 30 s).
	freezeLimit time.Duration
	// poll is WaitSnapshots' interval (0: the ebs package's default).
	poll time.Duration
}

// EBSVolume is a volume of ebs.volumes: its id and, where discovery
// cannot map the PostgreSQL directories to volumes, the mount point of its
// filesystem.
type EBSVolume struct {
	ID         string
	MountPoint string // "" = as discovered
}

// ebsTarget is a volume to snapshot: what EC2 says of it, and where it is
// mounted (nil for a listed volume that holds no PostgreSQL directory and
// that discovery did not map).
type ebsTarget struct {
	info  ebs.VolumeInfo
	mount *blockdev.Volume
}

// ebsSet is what Prepare and PrepareRecord resolve before the backup
// window: the instance and the volumes of the PostgreSQL directories.
type ebsSet struct {
	instance string
	// pgdata and tablespaces are the data directory and each
	// tablespace's location, with symbolic links resolved.
	pgdata      string
	tablespaces map[uint32]string
	targets     []ebsTarget
}

// Name implements Provider and Recorder.
func (*EBS) Name() manifest.Provider { return manifest.ProviderEBS }

// Capture implements Provider: Prepare, then the window's capture.
func (e *EBS) Capture(ctx context.Context, job *Job) (*Captured, error) {
	w, err := e.Prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	return w.Capture(ctx)
}

// Prepare implements Preparer. Before pg_backup_start it resolves the
// instance, the volumes and their mount points (refusing a PostgreSQL
// directory on no volume with a known mount point, which could not be
// restored), checks the freeze targets and asks EC2 whether the snapshot
// call would be permitted (DryRun). The window it returns only freezes,
// snapshots and thaws, within WindowTimeout; its Cleanup deletes the
// snapshots tagged with the backup's id.
func (e *EBS) Prepare(ctx context.Context, job *Job) (*Window, error) {
	if e.Client == nil {
		return nil, errors.New("no EC2 client")
	}
	ctx, cancel := context.WithTimeout(ctx, e.windowTimeout())
	defer cancel()
	set, err := e.resolve(ctx, job)
	if err != nil {
		return nil, err
	}
	spec := ebs.SnapshotSpec{
		InstanceID: set.instance,
		Tags: map[string]string{
			ebs.TagBackupID: job.ID,
			ebs.TagSystemID: strconv.FormatUint(job.SystemID, 10),
		},
		PerVolumeTags: make(map[string]map[string]string),
		Description:   "walsnap backup " + job.ID,
	}
	var frozen []string
	for _, t := range set.targets {
		id := t.info.VolumeID
		spec.Volumes = append(spec.Volumes, t.info)
		tags := map[string]string{"walsnap:device": t.info.Device, "Name": "walsnap " + job.ID + " " + id}
		if t.mount != nil {
			tags["walsnap:mount-point"] = t.mount.MountPoint
			tags["Name"] = "walsnap " + job.ID + " " + t.mount.MountPoint
		}
		spec.PerVolumeTags[id] = tags
		switch {
		case !e.Freeze:
		case t.mount == nil:
			return nil, fmt.Errorf("ebs.freeze: volume %s has no known mount point, so its filesystem cannot be frozen: give its mount in ebs.volumes", id)
		case t.mount.Root || t.mount.MountPoint == "/":
			job.Log.Warn("not freezing the root volume: its snapshot is crash-consistent only", "volume", id, "mount_point", t.mount.MountPoint)
		default:
			if err := checkFreezable(t.mount.MountPoint); err != nil {
				return nil, fmt.Errorf("ebs.freeze: %w", err)
			}
			frozen = append(frozen, t.mount.MountPoint)
		}
	}
	call, err := e.Client.PrepareSnapshots(ctx, spec)
	if err != nil {
		return nil, timedOut(ctx, err, e.windowTimeout())
	}
	return &Window{
		Timeout: e.windowTimeout(),
		Setting: "ebs.window_timeout",
		Capture: func(ctx context.Context) (*Captured, error) { return e.capture(ctx, set, call, frozen, job) },
		Cleanup: func(ctx context.Context) error { return e.cleanup(ctx, job) },
	}, nil
}

func (e *EBS) windowTimeout() time.Duration { return cmp.Or(e.WindowTimeout, defaultWindowTimeout) }

// timedOut says, when ctx ended at the deadline of the checks before the
// backup window, that this is why err happened.
func timedOut(ctx context.Context, err error, limit time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("EC2 did not answer within ebs.window_timeout (%s), before pg_backup_start: %w", limit, err)
	}
	return err
}

// capture runs in the backup window: it freezes, snapshots and thaws, and
// describes the snapshots.
func (e *EBS) capture(ctx context.Context, set *ebsSet, call *ebs.SnapshotCall, frozen []string, job *Job) (*Captured, error) {
	snaps, stayedFrozen, err := e.snapshot(ctx, call, frozen, job)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(snaps))
	payload := set.payload()
	for i, s := range snaps {
		ids[i] = s.SnapshotID
		rec := snapshotRecord(set.targets[i], s.SnapshotID, s.StartTime)
		rec.Frozen = stayedFrozen && rec.MountPoint != "" && slices.Contains(frozen, rec.MountPoint)
		payload.Snapshots = append(payload.Snapshots, rec)
	}
	return &Captured{Payload: payload, Complete: func(ctx context.Context) (any, error) {
		return nil, e.wait(ctx, ids, job)
	}}, nil
}

// payload is the payload of a backup of set, without its snapshots.
func (set *ebsSet) payload() manifest.EBSPayload {
	return manifest.EBSPayload{InstanceID: set.instance, AZ: set.targets[0].info.AZ, PGData: set.pgdata, Tablespaces: set.tablespaces}
}

// volumeIDs are the ids of set's volumes.
func (set *ebsSet) volumeIDs() []string {
	ids := make([]string, len(set.targets))
	for i, t := range set.targets {
		ids[i] = t.info.VolumeID
	}
	return ids
}

// snapshotRecord records snapshot id of t's volume, started at start.
func snapshotRecord(t ebsTarget, id string, start time.Time) manifest.EBSSnapshot {
	v := t.info
	rec := manifest.EBSSnapshot{
		SnapshotID: id, StartTime: start, VolumeID: v.VolumeID, Device: v.Device,
		SizeGiB: v.SizeGiB, Type: v.Type, IOPS: v.IOPS, Throughput: v.Throughput, AZ: v.AZ,
		Encrypted: v.Encrypted, KMSKeyID: v.KMSKeyID,
	}
	if mv := t.mount; mv != nil {
		rec.MountPoint, rec.FSType, rec.MountOptions, rec.Paths = mv.MountPoint, mv.FSType, mv.MountOptions, mv.Paths
	}
	return rec
}

// cleanup deletes the snapshots tagged with the backup's id, which no
// manifest names, even when ctx has ended.
func (e *EBS) cleanup(ctx context.Context, job *Job) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotCleanupTimeout)
	defer cancel()
	ids, err := e.Client.DeleteTaggedSnapshots(ctx, ebs.TagBackupID, job.ID)
	if len(ids) > 0 {
		job.Log.Warn("deleted the snapshots of the failed backup", "snapshots", ids)
	}
	return err
}

// resolve finds the instance, the PostgreSQL directories, and the
// volumes that hold them, each tied to the mount point that a restore
// mounts it at: discovered (the mount table and sysfs), or given in
// e.Volumes for a filesystem discovery cannot map. A directory that no
// volume with a mount point holds is refused: its backup could not be
// restored.
func (e *EBS) resolve(ctx context.Context, job *Job) (*ebsSet, error) {
	set := &ebsSet{tablespaces: make(map[uint32]string, len(job.Tablespaces))}
	locs := make([]string, len(job.Tablespaces))
	for i, ts := range job.Tablespaces {
		locs[i] = ts.Location
		loc, err := filepath.EvalSymlinks(ts.Location)
		if err != nil {
			return nil, fmt.Errorf("tablespace %s: %w", ts.Name, err)
		}
		set.tablespaces[ts.OID] = loc
	}
	paths, err := blockdev.PostgreSQLPaths(job.PGData, locs)
	if err != nil {
		return nil, err
	}
	set.pgdata = paths[0]
	set.instance = e.InstanceID
	if set.instance == "" {
		if set.instance, _, err = ebs.InstanceIdentity(ctx); err != nil {
			return nil, fmt.Errorf("%w (set ebs.instance_id)", err)
		}
	}
	root, attached, err := e.Client.InstanceVolumes(ctx, set.instance)
	if err != nil {
		return nil, timedOut(ctx, err, e.windowTimeout())
	}
	mounts, err := e.locate(paths, root, attached, set.instance)
	if err != nil {
		return nil, err
	}
	onInstance := make(map[string]bool, len(attached))
	for _, id := range attached {
		onInstance[id] = true
	}
	ids := mounts.order
	for _, id := range ids {
		if !onInstance[id] {
			return nil, fmt.Errorf("volume %s is not attached to instance %s", id, set.instance)
		}
	}
	infos, err := e.Client.DescribeVolumes(ctx, ids)
	if err != nil {
		return nil, timedOut(ctx, err, e.windowTimeout())
	}
	for _, info := range infos {
		set.targets = append(set.targets, ebsTarget{info: info, mount: mounts.byID[info.VolumeID]})
	}
	return set, nil
}

// volumeMounts are the volumes to snapshot, in order, and where those
// with PostgreSQL data are mounted.
type volumeMounts struct {
	order []string
	byID  map[string]*blockdev.Volume
}

// locate ties each PostgreSQL path to a volume and its mount: the mount
// that e.Volumes names for the path's filesystem, else the volume that
// discovery finds. root and attached are the instance's boot volume and
// its volumes by device name.
func (e *EBS) locate(paths []string, root string, attached map[string]string, instance string) (*volumeMounts, error) {
	mountinfo := cmp.Or(e.mountinfo, blockdev.DefaultMountinfo)
	sysRoot := cmp.Or(e.sysRoot, blockdev.SysRoot())
	all, err := readMounts(mountinfo)
	if err != nil {
		return nil, err
	}
	vm := &volumeMounts{byID: make(map[string]*blockdev.Volume)}
	// The paths on the filesystems that ebs.volumes gives a mount point.
	var rest []string
	for _, p := range paths {
		m, err := blockdev.MountFor(all, p)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(e.Volumes, func(v EBSVolume) bool { return v.MountPoint == m.MountPoint })
		if i < 0 {
			rest = append(rest, p)
			continue
		}
		id := e.Volumes[i].ID
		v := vm.byID[id]
		if v == nil {
			v = &blockdev.Volume{VolumeID: id, MountPoint: m.MountPoint, FSType: m.FSType, MountOptions: m.Options, Root: id == root}
			vm.byID[id] = v
			vm.order = append(vm.order, id)
		}
		v.Paths = append(v.Paths, p)
		// Discovery, where it works, must agree.
		if found, err := blockdev.Discover([]string{p}, mountinfo, sysRoot); err == nil {
			if got := volumeOf(found[0], attached); got != "" && got != id {
				return nil, fmt.Errorf("ebs.volumes gives %s as the volume mounted at %s, but it is %s (disk %s)", id, m.MountPoint, got, found[0].Device)
			}
		}
	}
	if len(rest) > 0 {
		found, err := blockdev.Discover(rest, mountinfo, sysRoot)
		if err != nil {
			return nil, fmt.Errorf("find the volumes of %s: %w (list the volumes with their mount points in ebs.volumes: {id: vol-..., mount: /path})", strings.Join(rest, ", "), err)
		}
		for i := range found {
			v := &found[i]
			id := volumeOf(*v, attached)
			if id == "" {
				return nil, fmt.Errorf("%s (%s, disk %s) is not an EBS volume attached to %s", v.MountPoint, v.DeviceName, v.Device, instance)
			}
			v.VolumeID = id
			v.Root = v.Root || id == root
			listed := slices.IndexFunc(e.Volumes, func(l EBSVolume) bool { return l.ID == id })
			switch {
			case len(e.Volumes) > 0 && listed < 0:
				return nil, fmt.Errorf("%s holds %s but is not in ebs.volumes (%s)", id, strings.Join(v.Paths, ", "), strings.Join(volumeIDs(e.Volumes), ", "))
			case listed >= 0 && e.Volumes[listed].MountPoint != "" && e.Volumes[listed].MountPoint != v.MountPoint:
				return nil, fmt.Errorf("ebs.volumes gives %s as the mount point of %s, but %s holds %s", e.Volumes[listed].MountPoint, id, v.MountPoint, strings.Join(v.Paths, ", "))
			}
			if o := vm.byID[id]; o != nil {
				return nil, fmt.Errorf("volume %s is mounted at %s and at %s: a volume is snapshotted, frozen and restored through one mount", id, o.MountPoint, v.MountPoint)
			}
			vm.byID[id] = v
			vm.order = append(vm.order, id)
		}
	}
	// Listed volumes with a mount point but no PostgreSQL directory are
	// snapshotted and restored (mounted) all the same.
	for _, v := range e.Volumes {
		if v.MountPoint == "" || vm.byID[v.ID] != nil {
			continue
		}
		m, err := blockdev.MountFor(all, v.MountPoint)
		if err != nil || filepath.Clean(m.MountPoint) != v.MountPoint {
			return nil, fmt.Errorf("ebs.volumes: nothing is mounted at %s, given as the mount point of %s", v.MountPoint, v.ID)
		}
		vm.byID[v.ID] = &blockdev.Volume{VolumeID: v.ID, MountPoint: v.MountPoint, FSType: m.FSType, MountOptions: m.Options, Root: v.ID == root}
		vm.order = append(vm.order, v.ID)
	}
	// Listed volumes without a mount point or a PostgreSQL directory are
	// snapshotted too, in the order listed; a restore attaches them
	// without mounting them.
	if len(e.Volumes) > 0 {
		order := volumeIDs(e.Volumes)
		for _, id := range order {
			if vm.byID[id] == nil {
				vm.order = append(vm.order, id)
			}
		}
		slices.SortStableFunc(vm.order, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	}
	return vm, nil
}

// readMounts reads a mount table.
func readMounts(path string) ([]blockdev.Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return blockdev.ParseMountinfo(f)
}

// volumeOf is the id of a discovered volume: its NVMe serial's, or on Xen
// the volume attached as its device name (the Xen spellings taken as
// one, see ebs.SameDevice); "" when none is.
func volumeOf(v blockdev.Volume, attached map[string]string) string {
	if v.VolumeID != "" {
		return v.VolumeID
	}
	for name, id := range attached {
		if ebs.SameDevice(name, v.DeviceName) {
			return id
		}
	}
	return ""
}

func volumeIDs(vs []EBSVolume) []string {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	return ids
}

// checkFreezable checks, before the backup window, that the filesystem
// mounted at mp can be frozen: this process may (CAP_SYS_ADMIN) and can
// open it.
func checkFreezable(mp string) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read this process's capabilities: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_SYS_ADMIN) == 0 {
		return fmt.Errorf("freezing %s needs root (CAP_SYS_ADMIN)", mp)
	}
	f, err := os.OpenFile(mp, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("cannot freeze %s: %w", mp, err)
	}
	return f.Close()
}

// snapshot starts the snapshots, with the filesystems at mountPoints
// frozen for the duration of the create call, and reports whether they
// stayed frozen until it returned. The thaw is guaranteed: on return, on
// a panic (deferred), and by the watchdog when ctx ends (the window's
// deadline, SIGINT/SIGTERM) or the freeze lasts e.freezeLimit. Nothing is
// logged while frozen: the log may be on a frozen filesystem.
func (e *EBS) snapshot(ctx context.Context, call *ebs.SnapshotCall, mountPoints []string, job *Job) (snaps []ebs.Snapshot, frozen bool, err error) {
	if len(mountPoints) == 0 {
		if snaps, err = e.Client.CreateSnapshots(ctx, call); err != nil {
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
	snaps, err = e.Client.CreateSnapshots(ctx, call)
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

// PrepareRecord implements Recorder. Before pg_backup_start it resolves
// the volumes as Prepare does (without freezing or snapshotting anything:
// the orchestrator does) and lists their snapshots, which also checks that
// walsnap may describe them. The Record it returns finds, among the
// snapshots of those volumes, the ones the orchestrator took inside the
// backup window, and records them as Capture records its own.
func (e *EBS) PrepareRecord(ctx context.Context, job *Job) (Record, error) {
	if e.Client == nil {
		return nil, errors.New("no EC2 client")
	}
	ctx, cancel := context.WithTimeout(ctx, e.windowTimeout())
	defer cancel()
	set, err := e.resolve(ctx, job)
	if err != nil {
		return nil, err
	}
	existing, err := e.Client.VolumeSnapshots(ctx, set.volumeIDs())
	if err != nil {
		return nil, timedOut(ctx, err, e.windowTimeout())
	}
	before := make(map[string]bool, len(existing))
	for _, s := range existing {
		before[s.SnapshotID] = true
	}
	return func(ctx context.Context, orchestrator string, given []string, from, to time.Time) (*Captured, error) {
		return e.record(ctx, set, before, cmp.Or(orchestrator, unnamedOrchestrator), given, from, to, job)
	}, nil
}

// record describes the orchestrator's snapshots of set's volumes: given,
// or those found that did not exist before the backup and started between
// from and to. EC2 reports start times to the millisecond, some
// EC2-compatible APIs to the second: from is taken to its second.
func (e *EBS) record(ctx context.Context, set *ebsSet, before map[string]bool, orchestrator string, given []string, from, to time.Time, job *Job) (*Captured, error) {
	from = from.Truncate(time.Second)
	window := fmt.Sprintf("%s to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339Nano))
	var snaps []ebs.SnapshotInfo
	var err error
	if len(given) > 0 {
		snaps, err = e.Client.DescribeSnapshots(ctx, given)
	} else {
		snaps, err = e.Client.VolumeSnapshots(ctx, set.volumeIDs())
	}
	if err != nil {
		return nil, err
	}
	byVolume := make(map[string]ebs.SnapshotInfo)
	for _, s := range snaps {
		if !slices.ContainsFunc(set.targets, func(t ebsTarget) bool { return t.info.VolumeID == s.VolumeID }) {
			job.Log.Info("not a snapshot of a PostgreSQL volume: not recorded", "snapshot", s.SnapshotID, "volume", s.VolumeID)
			continue
		}
		inWindow := !before[s.SnapshotID] && !s.StartTime.Before(from) && !s.StartTime.After(to)
		switch {
		case len(given) == 0 && (!inWindow || s.State == "error"):
			continue
		case !inWindow:
			return nil, fmt.Errorf("snapshot %s of %s started at %s, outside the backup window (%s): it is not consistent with this backup",
				s.SnapshotID, s.VolumeID, s.StartTime.UTC().Format(time.RFC3339Nano), window)
		case s.State == "error":
			return nil, fmt.Errorf("snapshot %s of %s failed", s.SnapshotID, s.VolumeID)
		}
		if o, ok := byVolume[s.VolumeID]; ok {
			if len(given) > 0 {
				return nil, fmt.Errorf("snapshots %s and %s are both of %s", o.SnapshotID, s.SnapshotID, s.VolumeID)
			}
			if o.StartTime.After(s.StartTime) {
				continue
			}
		}
		byVolume[s.VolumeID] = s
	}
	payload := set.payload()
	payload.Orchestrator = orchestrator
	ids := make([]string, len(set.targets))
	for i, t := range set.targets {
		s, ok := byVolume[t.info.VolumeID]
		if !ok {
			where := ""
			if t.mount != nil {
				where = " (" + t.mount.MountPoint + ")"
			}
			return nil, fmt.Errorf("no snapshot of %s%s started within the backup window (%s): the orchestrator must snapshot every PostgreSQL volume between backup-start and backup-stop", t.info.VolumeID, where, window)
		}
		ids[i] = s.SnapshotID
		payload.Snapshots = append(payload.Snapshots, snapshotRecord(t, s.SnapshotID, s.StartTime))
	}
	job.Log.Info("recorded the orchestrator's snapshots", "orchestrator", orchestrator, "snapshots", ids)
	return &Captured{Payload: payload, Complete: func(ctx context.Context) (any, error) {
		return nil, e.wait(ctx, ids, job)
	}}, nil
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
		return fmt.Errorf("snapshots not completed within ebs.wait_timeout (%s): %w", timeout, err)
	case err != nil:
		return err
	}
	job.Log.Info("snapshots completed", "snapshots", ids, "duration", time.Since(start).Round(time.Second))
	return nil
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
