package testrig

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/fsutil"
)

// LoopsUnder lists the loop devices (/dev/loopN) whose backing file is
// under dir, as losetup reports them: the ones a test attached, and no
// other test's, since each test keeps its images in a directory of its
// own.
func LoopsUnder(dir string) ([]string, error) {
	out, err := exec.Command("losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE").Output()
	if err != nil {
		return nil, fmt.Errorf("losetup --list: %w", err)
	}
	var devs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, back, ok := strings.Cut(line, " ")
		if ok && strings.HasPrefix(back, dir+"/") {
			devs = append(devs, name)
		}
	}
	return devs, nil
}

// ReleaseLoops unmounts every filesystem of a loop device backed by a file
// under dir (deepest mount first, thawed first, once no process uses it)
// and detaches the devices. It reports what it cannot release with
// t.Errorf; it is meant for t.Cleanup.
func ReleaseLoops(t testing.TB, dir string) {
	devs, err := LoopsUnder(dir)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	mounts, err := MountsOf(devs)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mounts {
		exec.Command("fsfreeze", "-u", mp).Run() // fails unless frozen
		// walsnap's background helpers leave within moments of their
		// server; wait until nothing uses the mount any more.
		WaitUnused(t, mp)
		if out, err := exec.Command("umount", mp).CombinedOutput(); err != nil {
			t.Errorf("cleanup: umount %s: %v %s", mp, err, out)
			exec.Command("umount", "-l", mp).Run()
		}
	}
	for _, dev := range devs {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("cleanup: losetup -d %s: %v %s", dev, err, out)
		}
	}
}

// MountsOf returns the mount points of the filesystems on devices (device
// nodes such as /dev/loop3) in this process's mount table, matched by
// device number: a mount's source may name the device by another path.
func MountsOf(devices []string) ([]string, error) {
	nums := make([]string, 0, len(devices))
	for _, d := range devices {
		n, err := deviceNumber(d)
		if err != nil {
			return nil, err
		}
		nums = append(nums, n)
	}
	all, err := Mounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range all {
		if slices.Contains(nums, m.MajorMinor) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

// Mounts returns this process's mount table.
func Mounts() ([]blockdev.Mount, error) {
	f, err := os.Open(blockdev.DefaultMountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return blockdev.ParseMountinfo(f)
}

// deviceNumber is the major:minor of the device node dev, as mountinfo
// writes it.
func deviceNumber(dev string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", dev)
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
}

// WaitUnused waits (up to half a minute) until no process has its working
// directory, root or an open file below the mount point mp, and reports
// the ones that still do when it gives up.
func WaitUnused(t testing.TB, mp string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u := fsutil.ProcessesUsing(mp)
		if len(u) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: %s still in use by %v", mp, u)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
