package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDeviceForAttachment: on Xen a volume attached as /dev/sdX appears as
// the disk xvdX (or, on old kernels, sdX under a vbd device), which is all
// that tells it; on Nitro it never appears by that name.
func TestDeviceForAttachment(t *testing.T) {
	_, sys, dev := fixture("xen")
	for name, want := range map[string]string{"/dev/sdf": "xvdf", "/dev/xvdg": "xvdg", "sdg": "xvdg", "/dev/sdh": ""} {
		got, err := DeviceForAttachment(name, sys, dev)
		switch {
		case want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("%s: %q, %v; want ErrNotFound", name, got, err)
		case want != "" && (err != nil || got != filepath.Join(dev, want)):
			t.Errorf("%s: %q, %v; want %s", name, got, err, filepath.Join(dev, want))
		}
	}
	_, nitroSys, nitroDev := fixture("nitro-multi")
	if got, err := DeviceForAttachment("/dev/sdf", nitroSys, nitroDev); !errors.Is(err, ErrNotFound) {
		t.Errorf("on Nitro: %q, %v; want ErrNotFound", got, err)
	}
	for _, bad := range []string{"/dev/nvme1n1", "/dev/sdf1", "/dev/sd", "/dev/hdf", ""} {
		if _, err := DeviceForAttachment(bad, sys, dev); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%q: %v, want a bad-name error", bad, err)
		}
	}

	// Old Xen kernels: sdf under a vbd device is the attachment; a SCSI
	// sdg is not; a disk not yet in /dev is not there yet.
	root := t.TempDir()
	sys, dev = filepath.Join(root, "sys"), filepath.Join(root, "dev")
	for disk, parent := range map[string]string{"sdf": "vbd-2128", "sdg": "pci0000:00/0000:00:10.0/host0/target0:0:0/0:0:0:0", "sdh": "vbd-2160"} {
		dir := filepath.Join(sys, "devices", parent, "block", disk)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(sys, "block"), 0o755); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(filepath.Join(sys, "block"), dir)
		if err := os.Symlink(rel, filepath.Join(sys, "block", disk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"sdf", "sdg"} {
		if err := os.WriteFile(filepath.Join(dev, node), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := DeviceForAttachment("/dev/sdf", sys, dev); err != nil || got != filepath.Join(dev, "sdf") {
		t.Errorf("vbd sdf: %q, %v", got, err)
	}
	if got, err := DeviceForAttachment("/dev/sdg", sys, dev); !errors.Is(err, ErrNotFound) {
		t.Errorf("SCSI sdg: %q, %v; want ErrNotFound", got, err)
	}
	if got, err := DeviceForAttachment("/dev/xvdh", sys, dev); !errors.Is(err, ErrNotFound) {
		t.Errorf("sdh without a /dev node: %q, %v; want ErrNotFound", got, err)
	}
}

// TestRootsTestSeam: walsnap reads the real sysfs and /dev unless the test
// seam's variables name others.
func TestRootsTestSeam(t *testing.T) {
	t.Setenv(EnvTestSysRoot, "")
	t.Setenv(EnvTestDevRoot, "")
	if SysRoot() != DefaultSysRoot || DevRoot() != DefaultDevRoot {
		t.Fatalf("roots %s and %s, want %s and %s", SysRoot(), DevRoot(), DefaultSysRoot, DefaultDevRoot)
	}
	t.Setenv(EnvTestSysRoot, "/kit/sys")
	t.Setenv(EnvTestDevRoot, "/kit/dev")
	if SysRoot() != "/kit/sys" || DevRoot() != "/kit/dev" {
		t.Fatalf("roots %s and %s, want the test's", SysRoot(), DevRoot())
	}
}
