package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/testrig"
)

// snapshotScript is command.snapshot for a filesystem on a block device:
// freeze it, copy the device to an image file, thaw (also when killed),
// print the image's path. The mount point check keeps a wrong
// WALSNAP_MOUNT_POINTS from freezing another filesystem.
const snapshotScript = `#!/bin/sh
set -eu
mnt=$WALSNAP_MOUNT_POINTS
[ "$mnt" = %[1]q ] || { echo "snapshot: unexpected mount points: $mnt" >&2; exit 1; }
dev=$(findmnt -n -o SOURCE --mountpoint "$mnt")
img=%[2]q/$WALSNAP_BACKUP_ID.img
# Drop device pages cached by an earlier copy: file data is written past
# that cache, so they may be stale.
blockdev --flushbufs "$dev"
trap 'fsfreeze -u "$mnt"' EXIT
trap 'exit 1' HUP INT TERM
fsfreeze -f "$mnt"
cp --sparse=always "$dev" "$img"
fsfreeze -u "$mnt"
trap - EXIT
echo "$img"
`

// restoreScript is command.restore for those images: attach a copy as a new
// loop device, mount it, and bind-mount the data directory it holds
// (pgdata, as on the source) at $WALSNAP_PGDATA.
const restoreScript = `#!/bin/sh
set -eu
copy=%[1]q/restore-$WALSNAP_BACKUP_ID-$$.img
cp --sparse=always "$WALSNAP_SNAPSHOTS" "$copy"
dev=$(losetup -f --show "$copy")
stage=%[1]q/stage-$$
mkdir "$stage"
mount -t ext4 "$dev" "$stage"
mount --bind "$stage/pgdata" "$WALSNAP_PGDATA"
umount "$stage"
rmdir "$stage"
echo "restore: $WALSNAP_SNAPSHOTS on $dev at $WALSNAP_PGDATA"
`

// TestCommandProviderBlockSnapshot: PGDATA is a directory on an ext4
// filesystem in a loop device; the command provider backs it up under
// pgbench load with a frozen block-device copy, and restores by attaching a
// copy of that image as a new loop device and bind-mounting its data
// directory at --pgdata. The image is a whole-volume snapshot (a
// postmaster.pid, old pg_wal contents, no backup_label); restore --target-time
// T --start brings back exactly the rows committed before T.
func TestCommandProviderBlockSnapshot(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "fsfreeze", "findmnt", "blockdev", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrig.Unavailable(t, "%s: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "loop devices and mounts need root")
	}
	work := testrig.WorkDir(t)
	snaps := filepath.Join(work, "snapshots")
	mnt := filepath.Join(work, "mnt")
	pgdata := filepath.Join(mnt, "pgdata")
	for _, d := range []string{snaps, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vol := newLoopFS(t, work, filepath.Join(work, "volume.img"), mnt)

	c := newCluster(t, clusterOptions{dataDir: pgdata, config: fmt.Sprintf("backup:\n  provider: command\ncommand:\n  snapshot: %q\n  restore: %q\n",
		writeScript(t, filepath.Join(work, "snapshot.sh"), fmt.Sprintf(snapshotScript, mnt, snaps)),
		writeScript(t, filepath.Join(work, "restore.sh"), fmt.Sprintf(restoreScript, snaps)))})

	// A failing snapshot command fails the backup, its stderr reaches ours,
	// and nothing is recorded.
	if out, err := c.run("--command-snapshot", "echo 'no snapshot today' >&2; exit 7", "backup", "--fast"); err == nil || !strings.Contains(out, "no snapshot today") || !strings.Contains(out, "exit status 7") {
		t.Fatalf("backup with a failing snapshot command: err %v, output:\n%s", err, out)
	}
	if list := c.walsnap(t, "backup-list", "--json"); strings.TrimSpace(list) != "[]" {
		t.Fatalf("a failed backup left a manifest:\n%s", list)
	}

	id := c.backupUnderLoad(t)
	image := filepath.Join(snaps, id+".img")
	var ms []struct {
		ID       string
		Provider string
		Payload  struct {
			Snapshots []string
			Command   string
		}
	}
	if err := json.Unmarshal([]byte(c.walsnap(t, "backup-list", "--json")), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != id || ms[0].Provider != "command" || !slices.Equal(ms[0].Payload.Snapshots, []string{image}) {
		t.Fatalf("manifest %+v, want backup %s by the command provider with snapshot %s", ms, id, image)
	}
	// What the restore starts from: the live volume as it was, server
	// lock file and WAL included, and no backup_label.
	root := debugfsList(t, image, "/pgdata")
	if !slices.Contains(root, "postmaster.pid") || slices.Contains(root, "backup_label") {
		t.Fatalf("snapshot's data directory holds %v: want a postmaster.pid and no backup_label", root)
	}
	if wal := debugfsList(t, image, "/pgdata/pg_wal"); !slices.ContainsFunc(wal, func(n string) bool { return len(n) == 24 }) {
		t.Fatalf("snapshot's pg_wal holds no segments: %v", wal)
	}

	m := c.goodThenBad(t)
	plan := c.walsnap(t, "--pgdata", filepath.Join(work, "dry-run"), "restore", "--dry-run", "--target-time", m.time)
	if !strings.Contains(plan, "run command.restore") || !strings.Contains(plan, "snapshot "+image) {
		t.Fatalf("dry run plan does not show the restore command and the snapshot:\n%s", plan)
	}
	r := c.restore(t, filepath.Join(work, "restored"), "--target-time", m.time, "--target-action", "promote", "--archive-mode", "off")
	if !strings.Contains(r.out, "promoted") {
		t.Fatalf("restore output does not report the promotion:\n%s", r.out)
	}
	r.checkAtTarget()
	if src := findmntSource(t, r.dataDir); src == vol || !strings.HasPrefix(src, "/dev/loop") {
		t.Fatalf("restored data directory is on %q: want a new loop device, not the source's %s", src, vol)
	}
}

// newLoopFS creates a 1 GiB sparse image, attaches it as a loop device,
// makes an ext4 filesystem on it and mounts it at mnt, owned by postgres.
// It returns the device. Cleanup, registered first, unmounts and detaches
// every loop device backed by a file under work (the test's snapshots and
// restored copies too), thawing any frozen filesystem first.
func newLoopFS(t *testing.T, work, image, mnt string) string {
	t.Helper()
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(1 << 30)
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { detachLoops(t, work) })
	// Direct I/O to the image: the snapshot's copy of the device does not
	// go through the page cache of the image's holes, which takes seconds.
	dev := strings.TrimSpace(mustRun(t, "losetup", "--direct-io=on", "-f", "--show", image))
	mustRun(t, "mkfs.ext4", "-q", "-F", dev)
	mustRun(t, "mount", "-t", "ext4", dev, mnt)
	mustRun(t, "chown", "postgres:postgres", mnt)
	return dev
}

// detachLoops unmounts every mount of a loop device backed by a file under
// dir (deepest first, after a thaw) and detaches the devices.
func detachLoops(t *testing.T, dir string) {
	out, err := exec.Command("losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE").Output()
	if err != nil {
		t.Errorf("cleanup: losetup --list: %v", err)
		return
	}
	var devs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, back, ok := strings.Cut(line, " ")
		if ok && strings.HasPrefix(back, dir+"/") {
			devs = append(devs, name)
		}
	}
	var mounts []string
	for _, mi := range readMountinfo(t) {
		if slices.Contains(devs, mi.source) {
			mounts = append(mounts, mi.point)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mounts {
		exec.Command("fsfreeze", "-u", mp).Run() // fails unless frozen
		// walsnap's background helpers leave within moments of their
		// server; wait until nothing uses the mount any more.
		waitUnused(t, mp)
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

type mountEntry struct{ point, source string }

// readMountinfo lists this process's mounts (mount points with spaces do
// not occur in these tests).
func readMountinfo(t *testing.T) []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep > 4 && sep+2 < len(fields) {
			out = append(out, mountEntry{point: fields[4], source: fields[sep+2]})
		}
	}
	return out
}

// findmntSource is the device mounted at dir (without the "[/subdir]" of a
// bind mount).
func findmntSource(t *testing.T, dir string) string {
	t.Helper()
	src, _, _ := strings.Cut(strings.TrimSpace(mustRun(t, "findmnt", "-n", "-o", "SOURCE", "--mountpoint", dir)), "[")
	return src
}

// debugfsList lists a directory of an ext4 image without mounting it.
func debugfsList(t *testing.T, image, dir string) []string {
	t.Helper()
	var names []string
	// One "/inode/mode/uid/gid/name/size/" line per entry.
	for _, line := range strings.Split(mustRun(t, "debugfs", "-R", "ls -p "+dir, image), "\n") {
		if f := strings.Split(line, "/"); len(f) > 5 {
			names = append(names, f[5])
		}
	}
	return names
}

// writeScript writes an executable script and returns its path.
func writeScript(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustRun runs a program and returns its stdout; failure is fatal.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// waitUnused waits (up to half a minute) until no process has its working
// directory, root or an open file below the mount point mp, and reports
// the ones that still do when it gives up.
func waitUnused(t *testing.T, mp string) {
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
