package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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
