package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var volumeIDPattern = regexp.MustCompile(`^vol-([0-9a-f]{17}|[0-9a-f]{8})$`)

// DeviceForVolume returns the device node (devRoot/nvme2n1) of an attached EBS
// volume, found by its serial among the Nitro NVMe disks of sysRoot/block.
// It returns an error wrapping ErrNotFound while the volume has not appeared,
// in sysfs or yet in devRoot, so that a restore can poll it after
// AttachVolume. On Xen, where the disk does not carry its volume id, it never
// finds one: use the attachment's device name.
func DeviceForVolume(volumeID, sysRoot, devRoot string) (string, error) {
	if !volumeIDPattern.MatchString(volumeID) {
		return "", fmt.Errorf("device for volume: bad volume id %q", volumeID)
	}
	blockDir := filepath.Join(sysRoot, "block")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		return "", fmt.Errorf("device for volume %s: %w", volumeID, err)
	}
	var found []string
	for _, e := range entries {
		if !nvmeDiskName.MatchString(e.Name()) {
			continue
		}
		model, id, err := nvmeIdentity(filepath.Join(blockDir, e.Name()))
		switch {
		case errors.Is(err, fs.ErrNotExist): // detached while we looked
			continue
		case err != nil:
			return "", fmt.Errorf("device for volume %s: %w", volumeID, err)
		}
		if model == modelEBS && id == volumeID {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("volume %s: no NVMe disk in %s has its serial: %w", volumeID, blockDir, ErrNotFound)
	case 1:
	default:
		return "", fmt.Errorf("volume %s: several disks have its serial: %v", volumeID, found)
	}
	dev := filepath.Join(devRoot, found[0])
	if _, err := os.Stat(dev); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("volume %s is %s in sysfs but %s is not there yet: %w", volumeID, found[0], dev, ErrNotFound)
	} else if err != nil {
		return "", fmt.Errorf("volume %s: %w", volumeID, err)
	}
	return dev, nil
}

// DeviceForAttachment returns the device node of a disk attached to a Xen
// instance under the EC2 device name name (/dev/sdf, or /dev/xvdf): the
// xen-blkfront disk devRoot/xvdf, or devRoot/sdf on old kernels that name
// Xen disks sdX (a vbd device in sysfs). It returns an error wrapping
// ErrNotFound while the disk has not appeared, in sysfs or yet in devRoot,
// and always on Nitro, whose disks are NVMe: use DeviceForVolume there.
func DeviceForAttachment(name, sysRoot, devRoot string) (string, error) {
	base := strings.TrimPrefix(name, "/dev/")
	var letters string
	switch {
	case strings.HasPrefix(base, "xvd"):
		letters = base[3:]
	case strings.HasPrefix(base, "sd"):
		letters = base[2:]
	}
	if !diskLetters.MatchString(letters) {
		return "", fmt.Errorf("device for attachment: %q is not an EC2 device name /dev/sdX or /dev/xvdX", name)
	}
	for _, disk := range []string{"xvd" + letters, "sd" + letters} {
		dir, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "block", disk))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", fmt.Errorf("device for attachment %s: %w", name, err)
		case strings.HasPrefix(disk, "sd") && !strings.Contains(dir, "/devices/vbd-"):
			continue // a SCSI disk, not a Xen one
		}
		dev := filepath.Join(devRoot, disk)
		if _, err := os.Stat(dev); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("attachment %s is %s in sysfs but %s is not there yet: %w", name, disk, dev, ErrNotFound)
		} else if err != nil {
			return "", fmt.Errorf("attachment %s: %w", name, err)
		}
		return dev, nil
	}
	return "", fmt.Errorf("attachment %s: no Xen disk xvd%s or sd%s in %s: %w", name, letters, letters, filepath.Join(sysRoot, "block"), ErrNotFound)
}

// diskLetters are the letters of a Xen disk name (the f of xvdf, the ba of
// xvdba).
var diskLetters = regexp.MustCompile(`^[a-z]{1,2}$`)
