package blockdev

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want Mount
		err  string
	}{{
		name: "man page example",
		line: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
		want: Mount{ID: 36, ParentID: 35, MajorMinor: "98:0", Root: "/mnt1", MountPoint: "/mnt2", FSType: "ext3", Source: "/dev/root", Options: "rw,noatime,errors=continue"},
	}, {
		name: "no optional fields",
		line: "99 22 259:4 / /var/lib/pgsql rw,noatime - ext4 /dev/nvme1n1 rw,seclabel",
		want: Mount{ID: 99, ParentID: 22, MajorMinor: "259:4", Root: "/", MountPoint: "/var/lib/pgsql", FSType: "ext4", Source: "/dev/nvme1n1", Options: "rw,noatime,seclabel"},
	}, {
		name: "several optional fields",
		line: "40 22 259:4 / /data rw shared:5 master:1 propagate_from:1 - xfs /dev/nvme1n1 rw,attr2",
		want: Mount{ID: 40, ParentID: 22, MajorMinor: "259:4", Root: "/", MountPoint: "/data", FSType: "xfs", Source: "/dev/nvme1n1", Options: "rw,attr2"},
	}, {
		name: "octal escapes in root, mount point, type and source",
		line: `98 22 259:4 /a\040b /srv/pg\040data\011x\134y\012 rw - fuse.my\040fs /dev/disk\040one rw,lowerdir=/a\054b`,
		want: Mount{ID: 98, ParentID: 22, MajorMinor: "259:4", Root: "/a b", MountPoint: "/srv/pg data\tx\\y\n", FSType: "fuse.my fs", Source: "/dev/disk one", Options: `rw,lowerdir=/a\054b`},
	}, {
		name: "a backslash not starting an escape is kept",
		line: `98 22 259:4 / /x\9\40\400\0 rw - ext4 /dev/nvme1n1 rw`,
		want: Mount{ID: 98, ParentID: 22, MajorMinor: "259:4", Root: "/", MountPoint: `/x\9\40\400\0`, FSType: "ext4", Source: "/dev/nvme1n1", Options: "rw"},
	}, {
		name: "empty source",
		line: "50 22 0:50 / /mnt/t rw,relatime - tmpfs  rw",
		want: Mount{ID: 50, ParentID: 22, MajorMinor: "0:50", Root: "/", MountPoint: "/mnt/t", FSType: "tmpfs", Source: "", Options: "rw,relatime"},
	}, {
		name: "read-only superblock wins over rw mount",
		line: "60 22 259:4 / /data rw,noatime - ext4 /dev/nvme1n1 ro,errors=remount-ro",
		want: Mount{ID: 60, ParentID: 22, MajorMinor: "259:4", Root: "/", MountPoint: "/data", FSType: "ext4", Source: "/dev/nvme1n1", Options: "noatime,ro,errors=remount-ro"},
	}, {
		name: "nsfs root",
		line: "70 28 0:4 net:[4026532385] /run/netns/a rw - nsfs nsfs rw",
		want: Mount{ID: 70, ParentID: 28, MajorMinor: "0:4", Root: "net:[4026532385]", MountPoint: "/run/netns/a", FSType: "nsfs", Source: "nsfs", Options: "rw"},
	},
		{name: "too few fields", line: "36 35 98:0 / /mnt rw - ext3", err: "fields"},
		{name: "no separator", line: "36 35 98:0 / /mnt rw master:1 ext3 /dev/root rw", err: "separator"},
		{name: "separator too early", line: "36 35 98:0 / - rw ext3 /dev/root rw x", err: "separator"},
		{name: "extra field after super options", line: "36 35 98:0 / /mnt rw - ext3 /dev/root rw extra", err: "after the"},
		{name: "bad id", line: "x 35 98:0 / /mnt rw - ext3 /dev/root rw", err: "mount id"},
		{name: "negative parent", line: "36 -1 98:0 / /mnt rw - ext3 /dev/root rw", err: "parent id"},
		{name: "bad major:minor", line: "36 35 98-0 / /mnt rw - ext3 /dev/root rw", err: "major:minor"},
		{name: "empty mount point", line: "36 35 98:0 /  rw - ext3 /dev/root rw", err: "empty mount point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader("\n" + tc.line + "\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "line 2") {
					t.Fatalf("err = %v, want one about %q on line 2", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestMountFor(t *testing.T) {
	mounts, err := ParseMountinfo(strings.NewReader(strings.Join([]string{
		"1 0 259:1 / / rw - ext4 /dev/root rw",
		"2 1 259:4 / /var/lib/pgsql rw - ext4 /dev/nvme1n1 rw",
		"3 1 259:5 / /var/lib/pgsql2 rw - ext4 /dev/nvme2n1 rw",
		"4 2 259:6 / /var/lib/pgsql/ts rw - ext4 /dev/nvme3n1 rw",
		"5 4 259:7 / /var/lib/pgsql/ts rw - xfs /dev/nvme4n1 rw", // stacked: hides mount 4
		`6 1 259:8 / /srv/a\040b rw - ext4 /dev/nvme5n1 rw`,
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		id   int
	}{
		{"/", 1},
		{"/var", 1},
		{"/var/lib/pgsql", 2},
		{"/var/lib/pgsql/", 2},
		{"/var/lib/pgsql/data/base", 2},
		{"/var/lib/pgsql2/data", 3},    // a prefix, but not on a component boundary of /var/lib/pgsql
		{"/var/lib/pgsqlx", 1},         // same
		{"/var/lib/pgsql/ts/PG_16", 5}, // the later of two mounts on one point
		{"/var/lib/pgsql/../pgsql2", 3},
		{"/srv/a b/16/main", 6},
	} {
		m, err := MountFor(mounts, tc.path)
		if err != nil || m.ID != tc.id {
			t.Errorf("MountFor(%q) = mount %d, %v; want mount %d", tc.path, m.ID, err, tc.id)
		}
	}
	if _, err := MountFor(mounts, "relative/path"); err == nil {
		t.Error("MountFor(relative) succeeded")
	}
	if _, err := MountFor(mounts[1:], "/etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MountFor without a root mount: err = %v, want ErrNotFound", err)
	}
}
