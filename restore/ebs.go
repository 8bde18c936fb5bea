package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
)

// Devices finds the local block device of an attached EBS volume.
type Devices interface {
	// WaitDevice waits until the device node of volumeID, attached under
	// the EC2 device name attachedAs (/dev/sdf), appears and returns its
	// path, or fails when ctx ends.
	WaitDevice(ctx context.Context, volumeID, attachedAs string) (devicePath string, err error)
}

// Mounter mounts and unmounts filesystems.
type Mounter interface {
	// Mount mounts device at target; options are as in fstab.
	Mount(ctx context.Context, device, target, fstype, options string) error
	Unmount(target string) error
}

const (
	// devicePoll is how often the default Devices looks in sysfs.
	devicePoll = 500 * time.Millisecond
	// DefaultDeviceTimeout bounds the wait for an attached volume's device
	// (restore --device-timeout).
	DefaultDeviceTimeout = 5 * time.Minute
	// volumeCleanupTimeout bounds the removal of the volumes of a failed
	// restore (detaching may take minutes).
	volumeCleanupTimeout = 15 * time.Minute
)

// EBS restores backups taken by the ebs provider, or recorded as ebs
// backups from an orchestrator's snapshots. It builds a volume from each
// snapshot in the target instance's availability zone, attaches it to
// that instance (this host: the volumes are mounted here), waits for its
// device and mounts it where the backup's volume was mounted, under
// MountRoot. The data directory and the tablespaces thus come back at
// MountRoot + their paths at backup time, which must be the restore's
// destinations. Overrides that EC2 would refuse are refused before
// anything is created. If anything fails, the volumes it created are
// unmounted, detached and deleted.
type EBS struct {
	Client *ebs.Client
	// InstanceID is the target instance; "" asks the instance metadata
	// service. AZ is its availability zone; "" asks the metadata service,
	// or, off EC2 with InstanceID set, DescribeInstances.
	InstanceID, AZ string
	// VolumeType, IOPS and Throughput (MiB/s) override the recorded
	// volume parameters; 0 or "" keeps them.
	VolumeType       string
	IOPS, Throughput int32
	// InitializationRate (MiB/s, 100-300) makes EBS fetch the snapshot's
	// blocks at that rate instead of lazily on first read.
	InitializationRate int32
	// MountRoot prefixes every mount point ("": the recorded ones).
	MountRoot string
	// Tags are added to every volume created (walsnap drill's
	// walsnap:drill).
	Tags map[string]string
	// DeviceTimeout bounds the wait for each attached volume's device
	// (default DefaultDeviceTimeout).
	DeviceTimeout time.Duration
	// Devices defaults to waiting for the volume's device in sysfs
	// (blockdev.SysRoot, blockdev.DevRoot): the NVMe disk with its serial
	// (Nitro), or the Xen disk of its attachment name.
	Devices Devices
	// Mounter defaults to mount(2) and umount(2).
	Mounter Mounter
	Log     *slog.Logger // required
}

// ebsVolume is one volume a restore builds: from snap, mounted at target
// ("" when the backup recorded no mount point: attached only).
type ebsVolume struct {
	snap    manifest.EBSSnapshot
	spec    ebs.VolumeSpec
	target  string
	options string // for Mounter.Mount
}

// ebsLayout is what a restore of an ebs backup builds, in mounting order
// (parents before the mounts below them), and where the data lands.
type ebsLayout struct {
	instance string
	// orchestrator took the snapshots, when walsnap did not.
	orchestrator string
	volumes      []ebsVolume
	pgdata       string
	// tablespaces are the new locations by OID.
	tablespaces map[uint32]string
}

// Plan implements Provider. Besides the volumes and mounts, it says for
// each volume how soon it gives full performance (the recovery time):
// at once from a snapshot with Fast Snapshot Restore enabled in the
// target zone, else once EBS has fetched every block from the snapshot.
func (e *EBS) Plan(ctx context.Context, m *manifest.Manifest, dest Destinations) ([]string, error) {
	l, err := e.layout(ctx, m, dest)
	if err != nil {
		return nil, err
	}
	az := l.volumes[0].spec.AZ
	what := fmt.Sprintf("%d volumes", len(l.volumes))
	if len(l.volumes) == 1 {
		what = "1 volume"
	}
	lines := []string{fmt.Sprintf("create %s from the snapshots in %s, attach each to %s at the first free device name in /dev/sdf-/dev/sdp, and mount it:", what, az, l.instance)}
	if l.orchestrator != "" {
		lines[0] = fmt.Sprintf("create %s from the snapshots taken by %s in %s, attach each to %s at the first free device name in /dev/sdf-/dev/sdp, and mount it:", what, l.orchestrator, az, l.instance)
	}
	ids := make([]string, len(l.volumes))
	for i, v := range l.volumes {
		ids[i] = v.snap.SnapshotID
	}
	fsr, fsrErr := e.Client.FastRestoreStates(ctx, az, ids)
	var slowest time.Duration
	for _, v := range l.volumes {
		where := "attach only (the backup recorded no mount point)"
		if v.target != "" {
			where = fmt.Sprintf("mount %s at %s (%s)", v.snap.FSType, v.target, v.options)
		}
		lines = append(lines, fmt.Sprintf("  %s (of %s, was %s at %s): %s → %s", v.snap.SnapshotID, v.snap.VolumeID, v.snap.Device, v.snap.MountPoint, describeSpec(v), where))
		ready, took := readiness(v, az, fsr, fsrErr)
		lines = append(lines, "    "+ready)
		slowest = max(slowest, took)
	}
	switch {
	case l.initialized(fsr) && slowest == 0:
		lines = append(lines, "  full performance of every volume: at once")
	case l.initialized(fsr):
		lines = append(lines, fmt.Sprintf("  full performance of every volume: in about %s", roundDuration(slowest)))
	default:
		lines = append(lines, "  full performance of every volume: not predictable with lazy loading (give --initialization-rate, or enable Fast Snapshot Restore in "+az+")")
	}
	lines = append(lines, fmt.Sprintf("  data directory → %s (was %s)", l.pgdata, m.PGData))
	for _, ts := range m.Tablespaces {
		lines = append(lines, fmt.Sprintf("  tablespace %s (oid %d, was %s) → %s", ts.Name, ts.OID, ts.Location, l.tablespaces[ts.OID]))
	}
	return lines, nil
}

// readiness says when a volume built as v in zone az gives full
// performance, and how long that takes (0 when unknown): fsr are the
// snapshots' Fast Snapshot Restore states there (fsrErr when they could
// not be had).
func readiness(v ebsVolume, az string, fsr map[string]string, fsrErr error) (string, time.Duration) {
	state := "Fast Snapshot Restore not enabled in " + az
	switch {
	case fsrErr != nil:
		state = fmt.Sprintf("Fast Snapshot Restore state unknown (%v)", fsrErr)
	case fsr[v.snap.SnapshotID] == "enabled" && v.spec.InitializationRate == 0:
		return fmt.Sprintf("Fast Snapshot Restore enabled in %s: full performance at once", az), 0
	case fsr[v.snap.SnapshotID] == "enabled":
		state = fmt.Sprintf("Fast Snapshot Restore enabled in %s but not used (the initialization rate applies instead)", az)
	case fsr[v.snap.SnapshotID] != "":
		state = fmt.Sprintf("Fast Snapshot Restore %s in %s", fsr[v.snap.SnapshotID], az)
	}
	size := v.snap.SizeGiB
	if rate := v.spec.InitializationRate; rate > 0 {
		took := initTime(size, rate)
		return fmt.Sprintf("%s; initialized at %d MiB/s: full performance in about %s (%d GiB)", state, rate, roundDuration(took), size), took
	}
	return fmt.Sprintf("%s; lazy loading: each block is slow on its first read, full performance once all %d GiB were read (with --initialization-rate %d: about %s)",
		state, size, ebs.MaxInitializationRate, roundDuration(initTime(size, ebs.MaxInitializationRate))), 0
}

// initTime is how long EBS takes to initialize sizeGiB at rate MiB/s.
func initTime(sizeGiB, rate int32) time.Duration {
	return time.Duration(int64(sizeGiB)*1024*int64(time.Second)) / time.Duration(rate)
}

// roundDuration rounds d for a plan: to the second, or the minute past an
// hour.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// initialized reports whether every volume's time to full performance is
// known: FSR enabled (and no rate), or an initialization rate.
func (l *ebsLayout) initialized(fsr map[string]string) bool {
	for _, v := range l.volumes {
		if v.spec.InitializationRate == 0 && fsr[v.snap.SnapshotID] != "enabled" {
			return false
		}
	}
	return true
}

// describeSpec says what volume is created.
func describeSpec(v ebsVolume) string {
	s := v.spec
	parts := []string{cmp.Or(s.Type, "default type"), fmt.Sprintf("%d GiB", v.snap.SizeGiB)}
	if s.IOPS > 0 {
		parts = append(parts, fmt.Sprintf("%d IOPS", s.IOPS))
	}
	if s.Throughput > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB/s", s.Throughput))
	}
	switch {
	case s.KMSKeyID != "":
		parts = append(parts, "encrypted with "+s.KMSKeyID)
	case v.snap.Encrypted:
		parts = append(parts, "encrypted")
	}
	if s.InitializationRate > 0 {
		parts = append(parts, fmt.Sprintf("initialized at %d MiB/s", s.InitializationRate))
	}
	return strings.Join(parts, ", ")
}

// Materialize implements Provider. The Built it returns lists the
// volumes created and where they are mounted; its Undo unmounts, detaches
// and deletes them. Each kind of step is timed (create, attach, device,
// mount).
func (e *EBS) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) (_ *Built, err error) {
	l, err := e.layout(ctx, m, dest)
	if err != nil {
		return nil, err
	}
	for _, v := range l.volumes {
		if v.target != "" && !below(l.volumes, v.target) {
			if err := mountable(v.target); err != nil {
				return nil, err
			}
		}
	}
	devices, mounter := e.Devices, e.Mounter
	if devices == nil {
		devices = ec2Devices{sysRoot: blockdev.SysRoot(), devRoot: blockdev.DevRoot()}
	}
	deviceTimeout := cmp.Or(e.DeviceTimeout, DefaultDeviceTimeout)
	if mounter == nil {
		mounter = kernelMounter{log: e.Log}
	}

	b := &Built{Instance: l.instance}
	b.undo = func(ctx context.Context) error { return e.undo(ctx, mounter, b.Volumes, b.Mounts) }
	defer func() {
		if err != nil && len(b.Volumes) > 0 {
			e.Log.Warn("restore failed: removing the volumes it created", "volumes", b.Volumes)
			err = errors.Join(err, b.Undo(ctx))
		}
	}()
	for _, v := range l.volumes {
		start := time.Now()
		id, err := e.Client.CreateVolume(ctx, v.spec)
		if id != "" {
			b.Volumes = append(b.Volumes, id)
		}
		if err != nil {
			return nil, err
		}
		b.add("create", time.Since(start))
		e.Log.Info("volume created", "volume", id, "snapshot", v.snap.SnapshotID)
		start = time.Now()
		dev, err := e.Client.FreeDeviceName(ctx, l.instance)
		if err != nil {
			return nil, err
		}
		if err := e.Client.AttachVolume(ctx, id, l.instance, dev); err != nil {
			return nil, err
		}
		b.add("attach", time.Since(start))
		if v.target == "" {
			e.Log.Warn("volume attached but not mounted: the backup recorded no mount point for it", "volume", id, "device", dev)
			continue
		}
		start = time.Now()
		wctx, cancel := context.WithTimeout(ctx, deviceTimeout)
		node, err := devices.WaitDevice(wctx, id, dev)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("volume %s attached as %s: its device did not appear within %s (--device-timeout): %w", id, dev, deviceTimeout, err)
		}
		b.add("device", time.Since(start))
		if err := mountable(v.target); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(v.target, 0o755); err != nil {
			return nil, fmt.Errorf("mount point: %w", err)
		}
		start = time.Now()
		if err := mounter.Mount(ctx, node, v.target, v.snap.FSType, v.options); err != nil {
			return nil, fmt.Errorf("volume %s: %w", id, err)
		}
		b.add("mount", time.Since(start))
		b.Mounts = append(b.Mounts, v.target)
		e.Log.Info("volume mounted", "volume", id, "device", node, "mount_point", v.target)
	}
	if err := e.checkData(m, l); err != nil {
		return nil, err
	}
	return b, nil
}

// EBSDestinations are where a restore of the ebs backup m under mountRoot
// ("": at the recorded mount points) puts the data directory and each
// tablespace: their paths at backup time, under mountRoot.
func EBSDestinations(m *manifest.Manifest, mountRoot string) (Destinations, error) {
	p, err := manifest.PayloadOf[manifest.EBSPayload](m)
	if err != nil {
		return Destinations{}, err
	}
	e := &EBS{MountRoot: mountRoot}
	pgdata, ts := recordedPaths(m, p)
	dest := Destinations{PGData: e.relocate(pgdata), Tablespaces: map[uint32]string{}}
	for oid, loc := range ts {
		dest.Tablespaces[oid] = e.relocate(loc)
	}
	return dest, nil
}

// recordedPaths are the data directory and the tablespaces (by OID) of
// an ebs backup, as they were at backup time.
func recordedPaths(m *manifest.Manifest, p *manifest.EBSPayload) (string, map[uint32]string) {
	ts := map[uint32]string{}
	for _, t := range m.Tablespaces {
		ts[t.OID] = cmp.Or(p.Tablespaces[t.OID], t.Location)
	}
	return cmp.Or(p.PGData, m.PGData), ts
}

// layout works out the restore of m into dest, refusing what cannot work.
func (e *EBS) layout(ctx context.Context, m *manifest.Manifest, dest Destinations) (*ebsLayout, error) {
	if e.Client == nil {
		return nil, errors.New("no EC2 client")
	}
	p, err := manifest.PayloadOf[manifest.EBSPayload](m)
	if err != nil {
		return nil, err
	}
	if len(p.Snapshots) == 0 {
		return nil, fmt.Errorf("backup %s: ebs payload lists no snapshots", m.ID)
	}
	if e.MountRoot != "" && !filepath.IsAbs(e.MountRoot) {
		return nil, fmt.Errorf("mount root %q is not absolute", e.MountRoot)
	}
	if err := ebs.CheckInitializationRate(e.InitializationRate); err != nil {
		return nil, fmt.Errorf("--initialization-rate: %w", err)
	}
	l := &ebsLayout{instance: e.InstanceID, orchestrator: p.Orchestrator, tablespaces: make(map[uint32]string)}
	az, err := e.zone(ctx, l)
	if err != nil {
		return nil, err
	}

	overridden := e.VolumeType != "" || e.IOPS != 0 || e.Throughput != 0
	for _, s := range p.Snapshots {
		v := ebsVolume{snap: s, spec: e.volumeSpec(m.ID, s, az)}
		if overridden {
			if err := ebs.CheckVolume(v.spec, s.SizeGiB); err != nil {
				return nil, fmt.Errorf("--volume-type, --iops, --throughput: the volume from %s (of %s, %d GiB %s): %w", s.SnapshotID, s.VolumeID, s.SizeGiB, s.Type, err)
			}
		}
		if s.MountPoint != "" {
			if s.MountPoint == "/" && e.MountRoot == "" {
				return nil, fmt.Errorf("backup %s: snapshot %s is of the root filesystem: restore it under a mount root", m.ID, s.SnapshotID)
			}
			v.target = e.relocate(s.MountPoint)
			v.options = mountOptions(s.FSType, s.MountOptions)
			for _, o := range l.volumes {
				if o.target == v.target {
					return nil, fmt.Errorf("backup %s: snapshots %s and %s were both mounted at %s", m.ID, o.snap.SnapshotID, s.SnapshotID, s.MountPoint)
				}
			}
		}
		l.volumes = append(l.volumes, v)
	}
	slices.SortStableFunc(l.volumes, func(a, b ebsVolume) int { return depth(a.target) - depth(b.target) })

	pgdata, recorded := recordedPaths(m, p)
	if !l.holds(pgdata, e) {
		return nil, fmt.Errorf("backup %s: no snapshot has a recorded mount point holding the data directory %s (volumes listed in ebs.volumes that walsnap could not map): restore them by hand", m.ID, pgdata)
	}
	l.pgdata = e.relocate(pgdata)
	if filepath.Clean(dest.PGData) != l.pgdata {
		return nil, fmt.Errorf("backup %s: the restored volumes put the data directory at %s: restore with --pgdata %s", m.ID, l.pgdata, l.pgdata)
	}
	var remap []string
	for _, ts := range m.Tablespaces {
		loc := recorded[ts.OID]
		if !l.holds(loc, e) {
			return nil, fmt.Errorf("backup %s: no snapshot has a recorded mount point holding tablespace %s at %s", m.ID, ts.Name, loc)
		}
		l.tablespaces[ts.OID] = e.relocate(loc)
		if dest.Tablespaces[ts.OID] != l.tablespaces[ts.OID] {
			remap = append(remap, "--tablespace-map "+ts.Location+"="+l.tablespaces[ts.OID])
		}
	}
	if len(remap) > 0 {
		return nil, fmt.Errorf("backup %s: the restored volumes put the tablespaces elsewhere: restore with %s", m.ID, strings.Join(remap, " "))
	}
	return l, nil
}

// zone finds the target instance (l.instance, or this one from the
// instance metadata service) and its availability zone (e.AZ, the
// metadata service's, or off EC2 DescribeInstances').
func (e *EBS) zone(ctx context.Context, l *ebsLayout) (string, error) {
	switch {
	case l.instance == "":
		id, zone, err := ebs.InstanceIdentity(ctx)
		if err != nil {
			return "", fmt.Errorf("%w (off EC2, give --instance-id or ebs.instance_id)", err)
		}
		l.instance = id
		return cmp.Or(e.AZ, zone), nil
	case e.AZ != "":
		return e.AZ, nil
	}
	return e.Client.InstanceZone(ctx, l.instance)
}

// relocate is where path at backup time is after the restore.
func (e *EBS) relocate(path string) string {
	if e.MountRoot == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(e.MountRoot, path)
}

// holds reports whether path (as at backup time) is on a volume the
// restore mounts.
func (l *ebsLayout) holds(path string, e *EBS) bool {
	for _, v := range l.volumes {
		if v.target != "" && within(e.relocate(path), v.target) {
			return true
		}
	}
	return false
}

// volumeSpec is the volume to build from s: the recorded parameters, less
// those the overridden type does not take, under the overrides.
func (e *EBS) volumeSpec(backupID string, s manifest.EBSSnapshot, az string) ebs.VolumeSpec {
	spec := ebs.VolumeSpec{
		SnapshotID:         s.SnapshotID,
		AZ:                 az,
		Type:               cmp.Or(e.VolumeType, s.Type),
		KMSKeyID:           s.KMSKeyID,
		InitializationRate: e.InitializationRate,
		Tags: map[string]string{
			"walsnap:restored-from": s.SnapshotID,
			ebs.TagBackupID:         backupID,
			"Name":                  "walsnap restore " + backupID + " " + cmp.Or(s.MountPoint, s.VolumeID),
		},
	}
	maps.Copy(spec.Tags, e.Tags)
	// The overrides go in as given, for CheckVolume to refuse those the
	// type does not take.
	switch spec.Type {
	case "gp3":
		spec.IOPS, spec.Throughput = cmp.Or(e.IOPS, s.IOPS), cmp.Or(e.Throughput, s.Throughput)
	case "io1", "io2":
		spec.IOPS, spec.Throughput = cmp.Or(e.IOPS, s.IOPS), e.Throughput
	default: // gp2, st1, sc1, standard: fixed by size
		spec.IOPS, spec.Throughput = e.IOPS, e.Throughput
	}
	return spec
}

// checkData checks that the data directory and every tablespace are where
// the layout says, and points a pg_wal symlink to its relocated target.
func (e *EBS) checkData(m *manifest.Manifest, l *ebsLayout) error {
	if _, err := os.Stat(filepath.Join(l.pgdata, "PG_VERSION")); err != nil {
		return fmt.Errorf("backup %s: no data directory at %s after mounting the volumes: %w", m.ID, l.pgdata, err)
	}
	for _, ts := range m.Tablespaces {
		if fi, err := os.Stat(l.tablespaces[ts.OID]); err != nil || !fi.IsDir() {
			return fmt.Errorf("backup %s: tablespace %s is not at %s after mounting the volumes", m.ID, ts.Name, l.tablespaces[ts.OID])
		}
	}
	link := filepath.Join(l.pgdata, "pg_wal")
	target, err := os.Readlink(link)
	if errors.Is(err, unix.EINVAL) { // a directory, not a symlink
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup %s: %w", m.ID, err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(l.pgdata, target)
	} else if e.MountRoot != "" {
		target = e.relocate(target)
		if err := os.Remove(link); err != nil {
			return fmt.Errorf("backup %s: relink pg_wal: %w", m.ID, err)
		}
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("backup %s: relink pg_wal: %w", m.ID, err)
		}
	}
	// pg_wal is emptied next: it must be on a restored volume, never
	// a directory of this host's.
	onVolume := false
	for _, v := range l.volumes {
		onVolume = onVolume || v.target != "" && within(target, v.target)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() || !onVolume {
		return fmt.Errorf("backup %s: pg_wal links to %s, which is not a directory on the restored volumes", m.ID, target)
	}
	return nil
}

// undo unmounts what a restore mounted and removes exactly the volumes it
// created, even when ctx has ended.
func (e *EBS) undo(ctx context.Context, mounter Mounter, created, mounted []string) error {
	var errs []error
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := mounter.Unmount(mounted[i]); err != nil {
			errs = append(errs, fmt.Errorf("clean up: unmount %s: %w", mounted[i], err))
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), volumeCleanupTimeout)
	defer cancel()
	if err := e.Client.DetachAndDelete(ctx, created); err != nil {
		errs = append(errs, fmt.Errorf("clean up: %w", err))
	}
	return errors.Join(errs...)
}

// mountOptions are the options to mount a restored filesystem with: the
// recorded ones, read-write (the restore writes to it), and for XFS
// nouuid, since the clone has the UUID of its source, which may be
// mounted on this host.
func mountOptions(fstype, recorded string) string {
	var out []string
	for _, o := range strings.Split(recorded, ",") {
		if o != "" && o != "ro" && o != "rw" && o != "nouuid" {
			out = append(out, o)
		}
	}
	if fstype == "xfs" {
		out = append(out, "nouuid")
	}
	return strings.Join(append([]string{"rw"}, out...), ",")
}

// mountable checks that mounting at dir would hide nothing: dir is absent
// or holds only empty directories.
func mountable(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return fmt.Errorf("mount a restored volume at %s: it holds %s, which the mount would hide: move it away, or restore under a mount root", dir, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// below reports whether dir lies under another volume's mount point.
func below(vols []ebsVolume, dir string) bool {
	for _, v := range vols {
		if v.target != "" && v.target != dir && within(dir, v.target) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// depth counts the components of a clean absolute path ("" is 0).
func depth(p string) int { return strings.Count(p, "/") }

// ec2Devices finds a volume's device in sysfs: on Nitro the NVMe disk
// whose serial is the volume id, on Xen the disk named for its attachment
// (xvdf for /dev/sdf).
type ec2Devices struct{ sysRoot, devRoot string }

// WaitDevice implements Devices.
func (d ec2Devices) WaitDevice(ctx context.Context, volumeID, attachedAs string) (string, error) {
	t := time.NewTicker(devicePoll)
	defer t.Stop()
	for {
		dev, err := blockdev.DeviceForVolume(volumeID, d.sysRoot, d.devRoot)
		if errors.Is(err, blockdev.ErrNotFound) {
			var xerr error
			if dev, xerr = blockdev.DeviceForAttachment(attachedAs, d.sysRoot, d.devRoot); !errors.Is(xerr, blockdev.ErrNotFound) {
				return dev, xerr
			}
			err = fmt.Errorf("%w; %w", err, xerr)
		}
		if !errors.Is(err, blockdev.ErrNotFound) {
			return dev, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// kernelMounter mounts with mount(2).
type kernelMounter struct{ log *slog.Logger }

// mountFlags are the fstab options that are mount(2) flags; the others go
// to the filesystem.
var mountFlags = map[string]uintptr{
	"nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC,
	"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME, "lazytime": unix.MS_LAZYTIME, "ro": unix.MS_RDONLY,
	"rw": 0, "defaults": 0,
}

// Mount implements Mounter. When the filesystem refuses some of the
// recorded options (EINVAL: the kernel shows options it does not take
// back, like seclabel, and drops old ones, like XFS's attr2), it mounts
// again with only the flags and nouuid, and logs what it left out.
func (k kernelMounter) Mount(ctx context.Context, device, target, fstype, options string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s at %s: %w", device, target, context.Cause(ctx))
	}
	var flags uintptr
	var data, essential []string
	for _, o := range strings.Split(options, ",") {
		if f, ok := mountFlags[o]; ok {
			flags |= f
			continue
		}
		if o == "nouuid" {
			essential = append(essential, o)
		}
		if o != "" {
			data = append(data, o)
		}
	}
	err := unix.Mount(device, target, fstype, flags, strings.Join(data, ","))
	if errors.Is(err, unix.EINVAL) && len(data) > len(essential) {
		if err = unix.Mount(device, target, fstype, flags, strings.Join(essential, ",")); err == nil {
			k.log.Warn("mounted without the recorded filesystem options, which it refused", "device", device, "mount_point", target, "options", strings.Join(data, ","))
		}
	}
	if err != nil {
		return fmt.Errorf("mount %s (%s) at %s with %q: %w", device, fstype, target, options, err)
	}
	return nil
}

// Unmount implements Mounter.
func (kernelMounter) Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}
