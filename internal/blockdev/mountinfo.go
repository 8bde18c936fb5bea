// Package blockdev maps PostgreSQL directories to the block devices, and the
// EBS volumes, that hold them.
//
// Everything here is pure logic over files: each function takes the roots it
// reads (the mountinfo file, the sysfs root, the /dev root) as parameters, so
// tests run it against fake trees. The Default* constants name the real ones;
// SysRoot and DevRoot are the ones walsnap reads.
package blockdev

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The real roots.
const (
	DefaultMountinfo = "/proc/self/mountinfo"
	DefaultSysRoot   = "/sys"
	DefaultDevRoot   = "/dev"
)

// A test seam, and only that: the end-to-end tests back EBS volumes with
// loop devices and describe each as Nitro does (an NVMe disk whose serial
// is the volume id) in a sysfs tree and a /dev tree of their own
// (internal/testrig, BlockEC2). These variables point walsnap's volume
// discovery (backup, backup-start, check) and its wait for a restored
// volume's device (restore) at those trees. Never set them on a server.
const (
	EnvTestSysRoot = "WALSNAP_TEST_SYSFS_ROOT"
	EnvTestDevRoot = "WALSNAP_TEST_DEV_ROOT"
)

// SysRoot is the sysfs root walsnap reads: DefaultSysRoot, unless
// EnvTestSysRoot names another.
func SysRoot() string { return cmp.Or(os.Getenv(EnvTestSysRoot), DefaultSysRoot) }

// DevRoot is the /dev root walsnap finds devices in: DefaultDevRoot,
// unless EnvTestDevRoot names another.
func DevRoot() string { return cmp.Or(os.Getenv(EnvTestDevRoot), DefaultDevRoot) }

// ErrNotFound reports that no mount or device matched.
var ErrNotFound = errors.New("not found")

// Mount is one line of /proc/self/mountinfo (proc_pid_mountinfo(5)), decoded.
type Mount struct {
	ID, ParentID int
	MajorMinor   string // st_dev of the filesystem, e.g. "259:1"; major 0 means no block device
	Root         string // the directory of the filesystem mounted here ("/" unless a bind mount)
	MountPoint   string
	FSType       string // e.g. "ext4", "fuse.sshfs"
	Source       string // e.g. "/dev/nvme1n1"; Ubuntu shows its root as "/dev/root"
	// Options merges the per-mount and the superblock options, per-mount
	// first, without duplicates; "ro" on either side wins over "rw". They are
	// kept escaped as the kernel writes them (a ',' inside a value is \054).
	Options string
}

// ParseMountinfo reads the lines of a mountinfo file. The kernel writes
// space, tab, newline and backslash in paths as octal escapes (\040, \011,
// \012, \134); Root, MountPoint, FSType and Source come back decoded.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var mounts []Mount
	// Lines end in '\n' only: a '\r' would be part of the last field.
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", i+1, err)
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}

// parseMountLine decodes
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Fields are split on single spaces: an empty source is a real empty field.
func parseMountLine(line string) (Mount, error) {
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 10 || sep < 0 {
		return Mount{}, fmt.Errorf("%d fields, want at least 10 with a \"-\" separator after the 6th", len(f))
	}
	if len(f) != sep+4 {
		return Mount{}, fmt.Errorf("%d fields after the \"-\" separator, want 3", len(f)-sep-1)
	}
	var m Mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil || m.ID < 0 {
		return Mount{}, fmt.Errorf("bad mount id %q", f[0])
	}
	if m.ParentID, err = strconv.Atoi(f[1]); err != nil || m.ParentID < 0 {
		return Mount{}, fmt.Errorf("bad parent id %q", f[1])
	}
	if _, _, err := splitMajorMinor(f[2]); err != nil {
		return Mount{}, err
	}
	m.MajorMinor = f[2]
	m.Root = unescape(f[3])
	m.MountPoint = unescape(f[4])
	if m.MountPoint == "" {
		return Mount{}, errors.New("empty mount point")
	}
	m.FSType = unescape(f[sep+1])
	m.Source = unescape(f[sep+2])
	m.Options = mergeOptions(f[5], f[sep+3])
	return m, nil
}

// splitMajorMinor parses "259:1".
func splitMajorMinor(s string) (major, minor uint32, err error) {
	a, b, ok := strings.Cut(s, ":")
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad major:minor %q", s)
	}
	return uint32(ma), uint32(mi), nil
}

// unescape decodes the kernel's \ooo octal escapes; anything else is kept.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctalByte(s[i+1:i+4]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isOctalByte reports whether s is three octal digits worth at most 0377.
func isOctalByte(s string) bool {
	return s[0] >= '0' && s[0] <= '3' &&
		s[1] >= '0' && s[1] <= '7' &&
		s[2] >= '0' && s[2] <= '7'
}

// mergeOptions joins per-mount and superblock options (see Mount.Options).
func mergeOptions(perMount, super string) string {
	var out []string
	seen := map[string]bool{}
	for _, o := range strings.Split(perMount+","+super, ",") {
		if o == "" || seen[o] {
			continue
		}
		seen[o] = true
		out = append(out, o)
	}
	if seen["ro"] && seen["rw"] {
		for i, o := range out {
			if o == "rw" {
				out = append(out[:i], out[i+1:]...)
				break
			}
		}
	}
	return strings.Join(out, ",")
}

// MountFor returns the mount that holds path: the one with the longest mount
// point that is path or a parent of it on a component boundary; of mounts on
// the same point the later one, which hides the earlier, wins. path must be
// absolute and already symlink-resolved (filepath.EvalSymlinks): a symlink
// crossing onto another mount would otherwise be attributed to the wrong one.
func MountFor(mounts []Mount, path string) (Mount, error) {
	if !filepath.IsAbs(path) {
		return Mount{}, fmt.Errorf("mount for %q: path is not absolute", path)
	}
	path = filepath.Clean(path)
	best := -1
	for i, m := range mounts {
		mp := filepath.Clean(m.MountPoint)
		if mp != "/" && path != mp && !strings.HasPrefix(path, mp+"/") {
			continue
		}
		if best < 0 || len(mp) >= len(filepath.Clean(mounts[best].MountPoint)) {
			best = i
		}
	}
	if best < 0 {
		return Mount{}, fmt.Errorf("mount for %s: %w", path, ErrNotFound)
	}
	return mounts[best], nil
}
