package blockdev

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixture returns the mountinfo file, sysfs root and /dev root of a case under
// testdata/blockdev.
func fixture(name string) (mountinfo, sys, dev string) {
	dir := filepath.Join("..", "..", "testdata", "blockdev", name)
	return filepath.Join(dir, "mountinfo"), filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
}

// withMountinfo writes lines as a mountinfo file in a temporary directory.
func withMountinfo(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const al2023Root = "22 1 259:1 / / rw,noatime shared:1 - xfs /dev/nvme0n1p1 rw,seclabel,attr2,inode64,logbufs=8,logbsize=32k,sunit=1024,swidth=1024,noquota"

func TestDiscover(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fixture   string
		mountinfo []string // replaces the fixture's mountinfo when set
		paths     []string
		want      []Volume
	}{{
		name:    "nitro single ext4 volume",
		fixture: "nitro-single",
		paths:   []string{"/var/lib/pgsql/data"},
		want: []Volume{{
			Device: "nvme1n1", VolumeID: "vol-0123456789abcdef0",
			MountPoint: "/var/lib/pgsql", FSType: "ext4", MountOptions: "rw,noatime,seclabel",
			Paths: []string{"/var/lib/pgsql/data"},
		}},
	}, {
		name:    "nitro pgdata, pg_wal on a partition, tablespaces",
		fixture: "nitro-multi",
		paths:   []string{"/var/lib/postgresql/16/main", "/pgwal/16/main", "/pgts/fast", "/var/lib/postgresql/ts2", "/pgwal/16/main"},
		want: []Volume{{
			Device: "nvme1n1", VolumeID: "vol-0123456789abcdef0",
			MountPoint: "/var/lib/postgresql", FSType: "ext4", MountOptions: "rw,noatime",
			Paths: []string{"/var/lib/postgresql/16/main", "/var/lib/postgresql/ts2"},
		}, {
			Device: "nvme2n1", Partition: "nvme2n1p1", VolumeID: "vol-0fedcba9876543210",
			MountPoint: "/pgwal", FSType: "xfs", MountOptions: "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota",
			Paths: []string{"/pgwal/16/main"},
		}, {
			Device: "nvme3n1", VolumeID: "vol-1a2b3c4d", // old short id, serial space-padded
			MountPoint: "/pgts", FSType: "ext4", MountOptions: "rw,noatime",
			Paths: []string{"/pgts/fast"},
		}},
	}, {
		name:    "nitro with native NVMe multipath",
		fixture: "nitro-multipath",
		paths:   []string{"/var/lib/pgsql/data"},
		want: []Volume{{
			Device: "nvme1n1", VolumeID: "vol-0123456789abcdef0",
			MountPoint: "/var/lib/pgsql", FSType: "xfs", MountOptions: "rw,noatime,seclabel,attr2,inode64,logbufs=8,logbsize=32k,noquota",
			Paths: []string{"/var/lib/pgsql/data"},
		}},
	}, {
		name:    "xen",
		fixture: "xen",
		paths:   []string{"/var/lib/pgsql/data", "/pgwal/pg_wal"},
		want: []Volume{{
			Device: "xvdf", DeviceName: "/dev/sdf",
			MountPoint: "/var/lib/pgsql", FSType: "xfs", MountOptions: "rw,noatime,attr2,inode64,noquota",
			Paths: []string{"/var/lib/pgsql/data"},
		}, {
			Device: "xvdg", DeviceName: "/dev/sdg",
			MountPoint: "/pgwal", FSType: "ext4", MountOptions: "rw,noatime,data=ordered",
			Paths: []string{"/pgwal/pg_wal"},
		}},
	}, {
		name:    "xen root volume",
		fixture: "xen",
		paths:   []string{"/srv/pg"},
		want: []Volume{{
			Device: "xvda", Partition: "xvda1", DeviceName: "/dev/sda",
			MountPoint: "/", FSType: "xfs", MountOptions: "rw,noatime,attr2,inode64,noquota",
			Paths: []string{"/srv/pg"}, Root: true,
		}},
	}, {
		name:    "pgdata on the root volume",
		fixture: "root",
		paths:   []string{"/var/lib/postgresql/16/main"},
		want: []Volume{{
			Device: "nvme0n1", Partition: "nvme0n1p1", VolumeID: "vol-0a1b2c3d4e5f60718",
			MountPoint: "/", FSType: "ext4", MountOptions: "rw,relatime,discard,errors=remount-ro,commit=30",
			Paths: []string{"/var/lib/postgresql/16/main"}, Root: true,
		}},
	}, {
		name:    "escaped mount points",
		fixture: "escapes",
		paths:   []string{"/srv/pg data/16/main", "/srv/wal\tx\\y/pg_wal"},
		want: []Volume{{
			Device: "nvme1n1", VolumeID: "vol-0123456789abcdef0",
			MountPoint: "/srv/pg data", FSType: "ext4", MountOptions: "rw,noatime,seclabel",
			Paths: []string{"/srv/pg data/16/main"},
		}, {
			Device: "nvme2n1", VolumeID: "vol-0fedcba9876543210",
			MountPoint: "/srv/wal\tx\\y", FSType: "ext4", MountOptions: "rw,noatime,seclabel",
			Paths: []string{"/srv/wal\tx\\y/pg_wal"},
		}},
	}, {
		name:    "a bind mount groups with the filesystem's own mount",
		fixture: "nitro-single",
		mountinfo: []string{
			al2023Root,
			"98 22 259:4 /16/wal /pgwal rw,noatime shared:47 - ext4 /dev/nvme1n1 rw",
			"99 22 259:4 / /var/lib/pgsql rw,noatime shared:48 - ext4 /dev/nvme1n1 rw,data=ordered",
		},
		paths: []string{"/pgwal", "/var/lib/pgsql/data"},
		want: []Volume{{
			Device: "nvme1n1", VolumeID: "vol-0123456789abcdef0",
			MountPoint: "/var/lib/pgsql", FSType: "ext4", MountOptions: "rw,noatime,data=ordered",
			Paths: []string{"/pgwal", "/var/lib/pgsql/data"},
		}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			mi, sys, _ := fixture(tc.fixture)
			if tc.mountinfo != nil {
				mi = withMountinfo(t, tc.mountinfo...)
			}
			got, err := Discover(tc.paths, mi, sys)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestDiscoverRefuses(t *testing.T) {
	const advice = "not an EBS volume: use the files or command provider, or list volumes explicitly"
	for _, tc := range []struct {
		name       string
		fixture    string
		mountinfo  []string
		paths      []string
		notEBS     *NotEBSError // a refusal, or nil for another error
		errContain string
	}{{
		name:    "instance store",
		fixture: "instance-store",
		paths:   []string{"/mnt/nvme/pgdata"},
		notEBS:  &NotEBSError{Path: "/mnt/nvme/pgdata", Device: "/dev/nvme1n1", Reason: "EC2 NVMe instance store, ephemeral"},
	}, {
		name:       "loop device",
		fixture:    "loop",
		paths:      []string{"/mnt/pgimg/data"},
		notEBS:     &NotEBSError{Path: "/mnt/pgimg/data", Device: "/dev/loop3", Reason: "loop device backed by /var/tmp/pgdata.img"},
		errContain: "/mnt/pgimg/data is on /dev/loop3 (loop device backed by /var/tmp/pgdata.img), " + advice,
	}, {
		name:    "LVM",
		fixture: "lvm",
		paths:   []string{"/var/lib/pgsql/data"},
		notEBS:  &NotEBSError{Path: "/var/lib/pgsql/data", Device: "/dev/dm-0", Reason: "LVM logical volume pgvg-data over nvme1n1, nvme2n1"},
	}, {
		name:    "one good path, one on tmpfs",
		fixture: "nitro-single",
		paths:   []string{"/var/lib/pgsql/data", "/tmp/ts"},
		notEBS:  &NotEBSError{Path: "/tmp/ts", Device: "tmpfs", Reason: "tmpfs filesystem, no block device of its own"},
	}, {
		name:    "NFS (EFS)",
		fixture: "nitro-single",
		mountinfo: []string{al2023Root,
			"120 22 0:55 / /mnt/efs rw,relatime shared:60 - nfs4 fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/ rw,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp"},
		paths:  []string{"/mnt/efs/pg"},
		notEBS: &NotEBSError{Path: "/mnt/efs/pg", Device: "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/", Reason: "nfs4 filesystem, no block device of its own"},
	}, {
		name:    "overlay",
		fixture: "nitro-single",
		mountinfo: []string{
			"500 400 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w",
		},
		paths:  []string{"/var/lib/postgresql/data"},
		notEBS: &NotEBSError{Path: "/var/lib/postgresql/data", Device: "overlay", Reason: "overlay filesystem, no block device of its own"},
	}, {
		name:      "btrfs (anonymous device number)",
		fixture:   "nitro-single",
		mountinfo: []string{al2023Root, "98 22 0:40 /@pg /var/lib/pgsql rw,noatime - btrfs /dev/nvme1n1 rw,ssd,subvol=/@pg"},
		paths:     []string{"/var/lib/pgsql/data"},
		notEBS:    &NotEBSError{Path: "/var/lib/pgsql/data", Device: "/dev/nvme1n1", Reason: "btrfs filesystem, no block device of its own"},
	}, {
		name:    "two filesystems of one disk",
		fixture: "nitro-multi",
		mountinfo: []string{
			"25 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw",
			"88 25 259:4 / /boot rw,relatime shared:47 - ext4 /dev/nvme0n1p16 rw",
		},
		paths:      []string{"/boot/pg", "/var/pg"},
		errContain: "/boot/pg (on /boot) and /var/pg (on /) are two filesystems of disk nvme0n1",
	}, {
		name:       "no sysfs entry for the device",
		fixture:    "nitro-single",
		mountinfo:  []string{al2023Root, "98 22 259:99 / /data rw - ext4 /dev/nvme9n1 rw"},
		paths:      []string{"/data/pg"},
		errContain: "block device 259:99 of /data (/dev/nvme9n1)",
	}, {
		name:       "relative path",
		fixture:    "nitro-single",
		paths:      []string{"data"},
		errContain: "not absolute",
	}, {
		name:       "missing mountinfo",
		fixture:    "no-such-case",
		paths:      []string{"/"},
		errContain: "read mounts",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			mi, sys, _ := fixture(tc.fixture)
			if tc.mountinfo != nil {
				mi = withMountinfo(t, tc.mountinfo...)
			}
			vols, err := Discover(tc.paths, mi, sys)
			if err == nil {
				t.Fatalf("Discover succeeded: %+v", vols)
			}
			var ne *NotEBSError
			if isNotEBS := errors.As(err, &ne); isNotEBS != (tc.notEBS != nil) {
				t.Fatalf("err = %v (%T), want NotEBSError: %v", err, err, tc.notEBS != nil)
			}
			if tc.notEBS != nil && *ne != *tc.notEBS {
				t.Errorf("got  %+v\nwant %+v", *ne, *tc.notEBS)
			}
			if tc.notEBS != nil && !strings.HasSuffix(err.Error(), advice) {
				t.Errorf("err = %q, want the advice", err)
			}
			if !strings.Contains(err.Error(), tc.errContain) {
				t.Errorf("err = %q, want it to contain %q", err, tc.errContain)
			}
		})
	}
}

// TestDiscoverNVMeIdentity covers NVMe attributes that no fixture has.
func TestDiscoverNVMeIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, model, serial, nsid string
		wantID, err               string
	}{
		{name: "no nsid attribute (old kernel)", model: modelEBS, serial: "vol0123456789abcdef0", wantID: "vol-0123456789abcdef0"},
		{name: "serial already dashed", model: modelEBS, serial: "vol-0123456789abcdef0", nsid: "1", wantID: "vol-0123456789abcdef0"},
		{name: "namespace 2", model: modelEBS, serial: "vol0123456789abcdef0", nsid: "2", err: "namespace 2"},
		{name: "serial is not a volume id", model: modelEBS, serial: "AWS0123456789ABCDEF", nsid: "1", err: "not a volume id"},
		{name: "another vendor", model: "Samsung SSD 980 PRO 1TB", serial: "S5GXNX0R123456", nsid: "1", err: `NVMe device, model "Samsung SSD 980 PRO 1TB"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			ctrl := filepath.Join(sys, "devices", "pci0000:00", "0000:00:1f.0", "nvme", "nvme5")
			disk := filepath.Join(ctrl, "nvme5n2")
			write := func(p, s string) {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(filepath.Join(ctrl, "model"), tc.model+"\n")
			write(filepath.Join(ctrl, "serial"), tc.serial+"\n")
			write(filepath.Join(disk, "dev"), "259:9\n")
			if tc.nsid != "" {
				write(filepath.Join(disk, "nsid"), tc.nsid+"\n")
			}
			for link, target := range map[string]string{
				filepath.Join(disk, "device"):               "../../nvme5",
				filepath.Join(sys, "dev", "block", "259:9"): "../../devices/pci0000:00/0000:00:1f.0/nvme/nvme5/nvme5n2",
			} {
				if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
			}
			mi := withMountinfo(t, "1 0 259:9 / / rw - ext4 /dev/nvme5n2 rw")
			vols, err := Discover([]string{"/pg"}, mi, sys)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(vols) != 1 || vols[0].VolumeID != tc.wantID || !vols[0].Root {
				t.Fatalf("got %+v, want %s on the root volume", vols, tc.wantID)
			}
		})
	}
}

func TestDeviceForVolume(t *testing.T) {
	for _, tc := range []struct {
		fixture, volumeID string
		want              string // device under the fixture's dev/, or "" for ErrNotFound
	}{
		{"nitro-multi", "vol-0fedcba9876543210", "nvme2n1"},
		{"nitro-multi", "vol-1a2b3c4d", "nvme3n1"},
		{"nitro-multi", "vol-0a1b2c3d4e5f60718", "nvme0n1"},
		{"nitro-multi", "vol-00000000000000000", ""},
		{"nitro-multipath", "vol-0123456789abcdef0", "nvme1n1"}, // skips the hidden nvme1c1n1
		{"instance-store", "vol-0a1b2c3d4e5f60718", "nvme0n1"},
		{"escapes", "vol-0123456789abcdef0", ""}, // in sysfs, but no /dev node yet
		{"xen", "vol-0123456789abcdef0", ""},     // Xen disks do not carry their volume id
		{"lvm", "vol-0fedcba9876543210", ""},     // no /dev node in this fixture
	} {
		t.Run(tc.fixture+"/"+tc.volumeID, func(t *testing.T) {
			_, sys, dev := fixture(tc.fixture)
			got, err := DeviceForVolume(tc.volumeID, sys, dev)
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("got %q, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got != filepath.Join(dev, tc.want) {
				t.Fatalf("got %q, %v; want %s", got, err, filepath.Join(dev, tc.want))
			}
		})
	}
	_, sys, dev := fixture("nitro-multi")
	for _, bad := range []string{"", "vol0123456789abcdef0", "vol-0123", "vol-0123456789ABCDEF0", "i-0123456789abcdef0"} {
		if _, err := DeviceForVolume(bad, sys, dev); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("DeviceForVolume(%q): err = %v, want a bad-id error", bad, err)
		}
	}
	if _, err := DeviceForVolume("vol-0123456789abcdef0", filepath.Join(t.TempDir(), "nosys"), dev); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("missing sysfs: err = %v, want a read error", err)
	}
}

// TestThisMachine runs against the real /proc and /sys of whatever machine
// runs the tests (not EC2 in CI): "/" must be found, and its device either
// identified or refused with a reason, never an I/O error.
func TestThisMachine(t *testing.T) {
	f, err := os.Open(DefaultMountinfo)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no", DefaultMountinfo)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts, err := ParseMountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	root, err := MountFor(mounts, "/")
	if err != nil || root.MountPoint != "/" {
		t.Fatalf("root mount: %+v, %v", root, err)
	}
	vols, err := Discover([]string{"/"}, DefaultMountinfo, DefaultSysRoot)
	var ne *NotEBSError
	switch {
	case err == nil:
		if len(vols) != 1 || !vols[0].Root || vols[0].VolumeID == "" && vols[0].DeviceName == "" {
			t.Fatalf("Discover(/) = %+v", vols)
		}
		t.Logf("root %s (%s) is EBS: %+v", root.Source, root.MajorMinor, vols[0])
	case errors.As(err, &ne):
		if ne.Path != "/" || ne.Device == "" || ne.Reason == "" {
			t.Fatalf("refusal without a device or reason: %+v", ne)
		}
		t.Logf("root %s (%s): %v", root.Source, root.MajorMinor, err)
	default:
		t.Fatalf("Discover(/): %v", err)
	}
	if _, err := DeviceForVolume("vol-0123456789abcdef0", DefaultSysRoot, DefaultDevRoot); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeviceForVolume on this machine: %v, want ErrNotFound", err)
	}
}
