package blockdev

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Volume is a block device that holds PostgreSQL data.
type Volume struct {
	Device    string // kernel name of the whole disk, e.g. "nvme1n1" or "xvdf"; never a partition
	Partition string // e.g. "nvme1n1p1" when the filesystem is on a partition, else ""
	// VolumeID is "vol-0123456789abcdef0" when the device itself tells it
	// (Nitro NVMe serial), else "" (Xen: resolve DeviceName through EC2).
	VolumeID string
	// DeviceName is the EC2 attachment name to look up in the instance's
	// block-device mapping on Xen, e.g. "/dev/sdf" for xvdf (EC2 may list it
	// as "/dev/xvdf": match both); "" on Nitro.
	DeviceName   string
	MountPoint   string
	FSType       string
	MountOptions string
	Paths        []string // the PostgreSQL paths found on it, in the order given
	// Root reports that the volume also holds the root filesystem "/". Never
	// freeze "/" (FIFREEZE on it hangs the host); a snapshot of this volume is
	// only crash-consistent.
	Root bool
}

// NotEBSError reports a PostgreSQL path whose filesystem is not on an EBS
// volume, so that it cannot be covered by an EBS snapshot.
type NotEBSError struct {
	Path   string // the PostgreSQL path
	Device string // e.g. "/dev/loop3"; the mount source when there is no block device
	Reason string // e.g. "loop device backed by /var/tmp/pg.img"
}

func (e *NotEBSError) Error() string {
	return fmt.Sprintf("%s is on %s (%s), not an EBS volume: use the files or command provider, or list volumes explicitly",
		e.Path, e.Device, e.Reason)
}

// NVMe Identify Controller model numbers ("mn"), as sysfs shows them once
// trimmed of their space padding.
const (
	modelEBS           = "Amazon Elastic Block Store"
	modelInstanceStore = "Amazon EC2 NVMe Instance Storage"
)

var (
	// nvmeDiskName matches namespace disks (nvme1n1), not partitions
	// (nvme1n1p1) nor the hidden per-path disks of native multipath (nvme1c1n1).
	nvmeDiskName = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)
	// ebsSerial matches the controller serial of an EBS volume: the volume id
	// without its dash, "vol0123456789abcdef0" (or "vol12345678" for old ids).
	ebsSerial = regexp.MustCompile(`^vol-?([0-9a-f]{17}|[0-9a-f]{8})$`)
)

// Discover maps each path to the volume that holds it, grouping the paths
// that share one. paths must be absolute and symlink-resolved (see
// PostgreSQLPaths). mountinfo is a mountinfo file, sysRoot the sysfs root.
//
// The filesystem's major:minor leads through sysRoot/dev/block/M:m to the
// device; a partition (it has a "partition" attribute) leads to its parent
// disk. A Nitro NVMe disk whose device/model is "Amazon Elastic Block Store"
// carries its volume id as device/serial; a Xen disk xvdX (or sdX under a
// vbd device) is identified by its attachment name /dev/sdX. Anything else,
// including NVMe instance store, loop, device-mapper (LVM), md, nbd and
// filesystems without a block device (tmpfs, overlay, NFS), is refused with a
// *NotEBSError.
//
// Two PostgreSQL filesystems on one disk (two partitions) are refused too:
// a Volume has one mount to freeze.
func Discover(paths []string, mountinfo string, sysRoot string) ([]Volume, error) {
	mounts, err := readMountinfo(mountinfo)
	if err != nil {
		return nil, err
	}
	root, err := rootDisk(mounts, sysRoot)
	if err != nil {
		return nil, err
	}
	type group struct {
		Volume
		mount Mount // the mount that Volume reports
	}
	var groups []*group
	byDisk := map[string]*group{}
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		m, err := MountFor(mounts, p)
		if err != nil {
			return nil, err
		}
		if noBlockDevice(m) {
			return nil, &NotEBSError{Path: p, Device: cmp.Or(m.Source, m.FSType), Reason: m.FSType + " filesystem, no block device of its own"}
		}
		dev, err := resolve(sysRoot, m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if g := byDisk[dev.disk]; g != nil {
			if g.mount.MajorMinor != m.MajorMinor {
				return nil, fmt.Errorf("%s (on %s) and %s (on %s) are two filesystems of disk %s, and a volume is frozen through one: put each filesystem on a volume of its own",
					g.Paths[0], g.mount.MountPoint, p, m.MountPoint, dev.disk)
			}
			if g.mount.Root != "/" && m.Root == "/" { // prefer the filesystem's own mount to a bind mount
				g.mount, g.MountPoint, g.MountOptions = m, m.MountPoint, m.Options
			}
			g.Paths = append(g.Paths, p)
			continue
		}
		v, err := identify(p, dev)
		if err != nil {
			return nil, err
		}
		v.MountPoint, v.FSType, v.MountOptions = m.MountPoint, m.FSType, m.Options
		v.Paths = []string{p}
		v.Root = dev.disk == root
		g := &group{Volume: v, mount: m}
		groups = append(groups, g)
		byDisk[dev.disk] = g
	}
	vols := make([]Volume, len(groups))
	for i, g := range groups {
		vols[i] = g.Volume
	}
	return vols, nil
}

func readMountinfo(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	mounts, err := ParseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mounts, nil
}

// rootDisk names the disk that holds "/", or "" when none does (a container's
// overlay root).
func rootDisk(mounts []Mount, sysRoot string) (string, error) {
	m, err := MountFor(mounts, "/")
	if errors.Is(err, ErrNotFound) || err == nil && noBlockDevice(m) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	dev, err := resolve(sysRoot, m)
	if err != nil {
		return "", fmt.Errorf("root filesystem: %w", err)
	}
	return dev.disk, nil
}

// noBlockDevice reports a filesystem whose st_dev is anonymous (major 0):
// tmpfs, overlay, NFS, but also btrfs, which may span several devices.
func noBlockDevice(m Mount) bool {
	return strings.HasPrefix(m.MajorMinor, "0:")
}

// blockDev is a filesystem's block device as sysfs shows it.
type blockDev struct {
	disk string // kernel name of the whole disk
	part string // kernel name of the partition, or ""
	dir  string // sysfs directory of the whole disk
}

func (d blockDev) node() string { return "/dev/" + cmp.Or(d.part, d.disk) }

// resolve follows sysRoot/dev/block/<major:minor> to the device and, for a
// partition, on to its disk.
func resolve(sysRoot string, m Mount) (blockDev, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "dev", "block", m.MajorMinor))
	if err != nil {
		return blockDev{}, fmt.Errorf("block device %s of %s (%s): %w", m.MajorMinor, m.MountPoint, m.Source, err)
	}
	d := blockDev{disk: filepath.Base(dir), dir: dir}
	_, err = os.Stat(filepath.Join(dir, "partition"))
	switch {
	case err == nil:
		d.part, d.dir = d.disk, filepath.Dir(dir)
		d.disk = filepath.Base(d.dir)
	case !errors.Is(err, fs.ErrNotExist):
		return blockDev{}, fmt.Errorf("block device %s: %w", m.MajorMinor, err)
	}
	return d, nil
}

// identify classifies the disk of path: Nitro EBS, Xen, or refused.
func identify(path string, dev blockDev) (Volume, error) {
	v := Volume{Device: dev.disk, Partition: dev.part}
	switch {
	case nvmeDiskName.MatchString(dev.disk):
		model, id, err := nvmeIdentity(dev.dir)
		if err != nil {
			return Volume{}, fmt.Errorf("%s: %w", path, err)
		}
		switch model {
		case modelEBS:
			v.VolumeID = id
			return v, nil
		case modelInstanceStore:
			return Volume{}, &NotEBSError{Path: path, Device: dev.node(), Reason: "EC2 NVMe instance store, ephemeral"}
		default:
			return Volume{}, &NotEBSError{Path: path, Device: dev.node(), Reason: fmt.Sprintf("NVMe device, model %q", model)}
		}
	case strings.HasPrefix(dev.disk, "xvd"): // xen-blkfront; EC2 attached it as /dev/sdX (amazon-ec2-utils ec2udev-vbd)
		v.DeviceName = "/dev/sd" + strings.TrimPrefix(dev.disk, "xvd")
		return v, nil
	case strings.HasPrefix(dev.disk, "sd") && strings.Contains(dev.dir, "/devices/vbd-"): // old Xen kernels naming vbds sdX
		v.DeviceName = "/dev/" + dev.disk
		return v, nil
	}
	return Volume{}, &NotEBSError{Path: path, Device: dev.node(), Reason: describe(dev)}
}

// nvmeIdentity reads an NVMe disk's model and, for EBS, its volume id from the
// controller (or, with native multipath, subsystem) serial behind "device".
func nvmeIdentity(dir string) (model, volumeID string, err error) {
	if model, err = readAttr(dir, "device/model"); err != nil || model != modelEBS {
		return model, "", err
	}
	// One EBS volume is one controller with namespace 1; the controller serial
	// would not tell which volume another namespace is.
	switch nsid, nsErr := readAttr(dir, "nsid"); {
	case nsErr == nil && nsid != "1":
		return "", "", fmt.Errorf("%s is EBS namespace %s: its controller serial does not identify the volume", filepath.Base(dir), nsid)
	case nsErr != nil && !errors.Is(nsErr, fs.ErrNotExist):
		return "", "", nsErr
	}
	serial, err := readAttr(dir, "device/serial")
	if err != nil {
		return "", "", err
	}
	sm := ebsSerial.FindStringSubmatch(serial)
	if sm == nil {
		return "", "", fmt.Errorf("%s: EBS serial %q is not a volume id", filepath.Base(dir), serial)
	}
	return model, "vol-" + sm[1], nil
}

// describe says what a refused disk is. Attributes it cannot read only make
// the description shorter.
func describe(dev blockDev) string {
	name := dev.disk
	switch {
	case strings.HasPrefix(name, "loop"):
		if f, _ := readAttr(dev.dir, "loop/backing_file"); f != "" {
			return "loop device backed by " + f
		}
		return "loop device"
	case strings.HasPrefix(name, "dm-"):
		dmName, _ := readAttr(dev.dir, "dm/name")
		uuid, _ := readAttr(dev.dir, "dm/uuid")
		kind := "device-mapper device"
		switch {
		case strings.HasPrefix(uuid, "LVM-"):
			kind = "LVM logical volume"
		case strings.HasPrefix(uuid, "CRYPT-"):
			kind = "dm-crypt volume"
		case strings.HasPrefix(uuid, "mpath-"):
			kind = "dm-multipath device"
		}
		return strings.TrimSpace(kind+" "+dmName) + over(dev.dir)
	case strings.HasPrefix(name, "md"):
		return "software RAID" + over(dev.dir)
	}
	for _, k := range []struct{ prefix, what string }{
		{"nbd", "network block device"},
		{"rbd", "Ceph RBD device"},
		{"drbd", "DRBD device"},
		{"zram", "compressed RAM disk"},
		{"ram", "RAM disk"},
		{"vd", "virtio disk"},
		{"sd", "SCSI disk"},
	} {
		if strings.HasPrefix(name, k.prefix) {
			return k.what
		}
	}
	return "unrecognized block device"
}

// over lists the devices a stacked device is built on (its sysfs slaves).
func over(dir string) string {
	entries, err := os.ReadDir(filepath.Join(dir, "slaves"))
	if err != nil || len(entries) == 0 {
		return ""
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return " over " + strings.Join(names, ", ")
}

// readAttr reads a sysfs attribute, trimmed of the padding and newline.
func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("read sysfs attribute: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
