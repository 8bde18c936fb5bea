package blockdev

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// escape writes s as the kernel writes paths in mountinfo (mangle()).
func escape(s string) string {
	return strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`).Replace(s)
}

// encode writes mounts back as mountinfo, options as both per-mount and
// superblock options (merging is idempotent).
func encode(mounts []Mount) string {
	var b strings.Builder
	for _, m := range mounts {
		fmt.Fprintf(&b, "%d %d %s %s %s %s - %s %s %s\n", m.ID, m.ParentID, m.MajorMinor,
			escape(m.Root), escape(m.MountPoint), m.Options, escape(m.FSType), escape(m.Source), m.Options)
	}
	return b.String()
}

// FuzzParseMountinfo: no panics; whatever parses re-encodes to the same
// mounts, and MountFor finds each absolute mount point's own mount.
func FuzzParseMountinfo(f *testing.F) {
	cases, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "blockdev", "*", "mountinfo"))
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
		`98 22 259:4 /a\040b /srv/pg\040data\011x\134y rw - ext4 /dev/nvme1n1 rw` + "\n",
		"50 22 0:50 / /mnt/t rw,relatime - tmpfs  rw\n",
		"60 22 259:4 / /data rw - ext4 /dev/nvme1n1 ro\n",
		`1 1 0:1 \ \\\0 - - - - -` + "\n",
		"1 1 1:1 / / rw - - - -\r\n\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, err := ParseMountinfo(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ParseMountinfo(strings.NewReader(encode(mounts)))
		if err != nil {
			t.Fatalf("re-encoded mounts do not parse: %v\n%s", err, encode(mounts))
		}
		if len(mounts) != 0 && !reflect.DeepEqual(mounts, again) {
			t.Fatalf("round trip:\n%+v\n%+v", mounts, again)
		}
		for i, m := range mounts {
			if _, _, err := splitMajorMinor(m.MajorMinor); err != nil || m.MountPoint == "" {
				t.Fatalf("accepted %+v", m)
			}
			if i >= 100 || !filepath.IsAbs(m.MountPoint) { // keep the check linear in the input
				continue
			}
			got, err := MountFor(mounts, m.MountPoint)
			if err != nil || filepath.Clean(got.MountPoint) != filepath.Clean(m.MountPoint) {
				t.Fatalf("MountFor(%q) = %+v, %v", m.MountPoint, got, err)
			}
		}
	})
}

// FuzzUnescape: decoding undoes the kernel's escaping of any path.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"/srv/pg data", "a\tb\nc\\d", `\040`, `\\134`, "", `\`, `\7`, "é\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescape(escape(s)); got != s {
			t.Fatalf("unescape(escape(%q)) = %q", s, got)
		}
	})
}
