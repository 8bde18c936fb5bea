package testrig

import (
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/freeze"
)

// BlockVolumeGiB is the size of the volumes AddVolume creates: room for
// pgbench's data or for max_wal_size (1 GB) of WAL. Their images are
// sparse: they take the space of what is written.
const BlockVolumeGiB = 2

// BlockEC2 is moto's EC2 API whose EBS volumes hold data, on this host:
// the EBS kit of the end-to-end tests. Behind an EC2Proxy, a block layer
// serves each call as EC2 would for the blocks, at the moment moto
// accepts it:
//
//   - CreateVolume makes the volume's image, a sparse file: empty, or a
//     copy of its snapshot's image;
//   - AttachVolume attaches the image as a loop device, and then (as EBS
//     does, after the call has returned) the device appears as a Nitro
//     NVMe disk whose serial is the volume id, in SysRoot and DevRoot;
//   - CreateSnapshot and CreateSnapshots copy the images of the volumes
//     they name (a sparse copy), all at one instant: the filesystem on
//     each is frozen for the copy, unless the caller has frozen it
//     already (ebs.freeze), which SnapshotCalls records;
//   - DetachVolume makes the disk disappear and releases the loop device
//     (a volume detached with its filesystem still mounted is a problem
//     that fails the test); DeleteVolume and DeleteSnapshot remove the
//     image.
//
// DryRun checks, refusals (EC2Proxy.Set) and failed calls change nothing.
// Volumes and snapshots that did not come through the kit (the instance's
// boot volume) have no data: a volume made from such a snapshot never
// shows a device.
//
// walsnap finds the volumes and devices as on EC2 once Environ is in its
// environment: the instance metadata service names Instance, and the
// WALSNAP_TEST_SYSFS_ROOT and WALSNAP_TEST_DEV_ROOT test seams (see
// blockdev.SysRoot) point its sysfs reader at SysRoot and DevRoot, which
// list only this kit's disks.
type BlockEC2 struct {
	Moto  MotoEnv
	Proxy *EC2Proxy // the EC2 endpoint walsnap is given (Config)
	// EC2 reaches moto through Proxy and the block layer: for a test's
	// setup, and for the snapshots an orchestrator takes.
	EC2      *ec2.Client
	Instance string // this host's instance, with moto's boot volume
	AZ       string
	IMDS     string // endpoint of the instance metadata service
	SysRoot  string // the kit's sysfs tree
	DevRoot  string // the kit's device nodes (symbolic links to the loop devices)

	layer   *blockLayer
	mu      sync.Mutex
	devices int // device names /dev/sdf... handed out by AddVolume
}

// NewBlockEC2 starts the kit for t: moto (Moto), the proxy with the block
// layer, an instance, the instance metadata service, and the sysfs and
// /dev trees. When t ends, after every cleanup registered later (servers
// on the volumes stop first), it unmounts the filesystems of its loop
// devices, detaches them, checks that none of its loop devices remain
// and that the block layer met no problem, and deletes the instance and
// every volume and snapshot it served from moto. It calls Unavailable
// without root, moto or the tools it runs.
func NewBlockEC2(t testing.TB) *BlockEC2 {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mkfs.xfs", "mount", "umount", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "%s: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "loop devices, mounts and fsfreeze need root")
	}
	moto := Moto(t)
	dir := WorkDir(t)
	l := &blockLayer{
		dir:       dir,
		sysRoot:   filepath.Join(dir, "sys"),
		devRoot:   filepath.Join(dir, "dev"),
		volumes:   make(map[string]*blockVolume),
		snapshots: make(map[string]string),
	}
	for _, d := range []string{filepath.Join(l.sysRoot, "block"), filepath.Join(l.sysRoot, "dev", "block"), l.devRoot,
		filepath.Join(dir, "volumes"), filepath.Join(dir, "snapshots")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Discovery resolves the root filesystem's disk too: the real one.
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Dev) != 0 {
		num := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
		if err := os.Symlink(filepath.Join(blockdev.DefaultSysRoot, "dev", "block", num), filepath.Join(l.sysRoot, "dev", "block", num)); err != nil {
			t.Fatal(err)
		}
	}
	direct := moto.EC2()
	t.Cleanup(func() { l.release(t, direct) }) // after the proxy has stopped
	b := &BlockEC2{Moto: moto, Proxy: NewEC2Proxy(t, moto.Endpoint), SysRoot: l.sysRoot, DevRoot: l.devRoot, layer: l}
	b.Proxy.blocks = l
	b.EC2 = ec2.New(ec2.Options{
		BaseEndpoint: aws.String(b.Proxy.URL),
		Region:       moto.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", "testing"),
	})
	b.Instance, b.AZ = LaunchInstance(t, direct, "/dev/sda1")
	b.IMDS = FakeIMDS(t, b.Instance, b.AZ)
	return b
}

// Environ is what walsnap needs in its environment to take this host
// for the instance and find its volumes: the instance metadata service
// and the sysfs and /dev test seams. Credentials are not in it: moto
// takes any, such as those of the test's S3 bucket (S3Env.Environ) or
// Moto.Environ.
func (b *BlockEC2) Environ() []string {
	return []string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + b.IMDS,
		blockdev.EnvTestSysRoot + "=" + b.SysRoot,
		blockdev.EnvTestDevRoot + "=" + b.DevRoot,
	}
}

// Config is the start of walsnap.yaml's ebs section for the kit: the
// endpoint and region; the instance comes from the metadata service.
// Append more of the section ("  freeze: true\n") after it.
func (b *BlockEC2) Config() string {
	return fmt.Sprintf("ebs:\n  endpoint: %s\n  region: %s\n", b.Proxy.URL, b.Moto.Region)
}

// AddVolume gives the instance a new gp3 volume of BlockVolumeGiB with a
// filesystem of fstype (ext4 or xfs) mounted at mountPoint (a directory
// of Dir, or below one; created if needed) and owned by the postgres
// user, as an administrator would:
// CreateVolume, AttachVolume at the next device name from /dev/sdf, mkfs
// and mount. It returns the volume id.
func (b *BlockEC2) AddVolume(t testing.TB, fstype, mountPoint string) string {
	t.Helper()
	var mkfs []string
	switch fstype {
	case "ext4":
		mkfs = []string{"mkfs.ext4", "-q", "-F"}
	case "xfs":
		mkfs = []string{"mkfs.xfs", "-q", "-f"}
	default:
		t.Fatalf("AddVolume: filesystem %q: want ext4 or xfs", fstype)
	}
	b.mu.Lock()
	name := fmt.Sprintf("/dev/sd%c", 'f'+b.devices)
	b.devices++
	b.mu.Unlock()
	ctx := t.Context()
	out, err := b.EC2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(b.AZ), Size: aws.Int32(BlockVolumeGiB), VolumeType: types.VolumeTypeGp3})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	if _, err := b.EC2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(b.Instance), Device: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	dev := b.Device(t, id)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run(mkfs[0], append(mkfs[1:], dev)...)
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", "-t", fstype, dev, mountPoint)
	run("chown", "postgres:postgres", mountPoint)
	return id
}

// Dir returns a new directory name in the kit's own directory, for
// mount points: of AddVolume, and of restored volumes (restore
// --mount-root). What is mounted there is unmounted before the
// directory is removed, when t ends.
func (b *BlockEC2) Dir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(b.layer.dir, "mnt", name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Device waits until attached volume id's loop device is there, and
// returns it (/dev/loopN).
func (b *BlockEC2) Device(t testing.TB, id string) string {
	t.Helper()
	l := b.layer
	l.mu.Lock()
	v := l.volumes[id]
	var ready chan struct{}
	if v != nil {
		ready = v.ready
	}
	l.mu.Unlock()
	if ready == nil {
		t.Fatalf("volume %s: not attached through the kit", id)
	}
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatalf("volume %s: no loop device within a minute of its attachment", id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v.loop == "" {
		t.Fatalf("volume %s: attaching its image failed (see the kit's problems)", id)
	}
	return v.loop
}

// BlockVolume is a volume that the kit holds an image of.
type BlockVolume struct {
	ID       string
	Image    string
	Snapshot string // the snapshot it was made from, or ""
	Loop     string // its loop device while attached, else ""
	Disk     string // its NVMe disk in SysRoot while attached (nvme3n1), else ""
}

// Volumes lists the volumes the kit holds an image of, by id.
func (b *BlockEC2) Volumes() []BlockVolume {
	l := b.layer
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []BlockVolume
	for _, id := range slices.Sorted(maps.Keys(l.volumes)) {
		v := l.volumes[id]
		out = append(out, BlockVolume{ID: v.id, Image: v.image, Snapshot: v.snapshot, Loop: v.loop, Disk: v.disk})
	}
	return out
}

// SnapshotCall is a CreateSnapshot or CreateSnapshots call the kit
// served: the images of its volumes were copied at one instant.
type SnapshotCall struct {
	Action    string
	Snapshots map[string]string // volume id → snapshot id
	// CallerFroze are the volumes whose filesystem was frozen when the
	// call came, by its caller (ebs.freeze).
	CallerFroze []string
}

// SnapshotCalls returns the snapshot calls served so far, in order.
func (b *BlockEC2) SnapshotCalls() []SnapshotCall {
	l := b.layer
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// blockLayer is BlockEC2's state: the images of volumes and snapshots,
// the loop devices and the sysfs entries of the attached volumes.
type blockLayer struct {
	dir              string // volumes/ and snapshots/ hold the images
	sysRoot, devRoot string

	mu        sync.Mutex // held for each call it serves
	volumes   map[string]*blockVolume
	snapshots map[string]string // snapshot id → image
	calls     []SnapshotCall
	problems  []string
	disks     int            // NVMe disks named so far (nvme1n1 is the first)
	attaching sync.WaitGroup // attachments in progress
	// served are every volume and snapshot created through the kit, for
	// their removal from moto.
	servedVolumes, servedSnapshots []string
}

// blockVolume is a volume with an image.
type blockVolume struct {
	id, image, snapshot string
	instance            string // attached to, or ""
	// ready is closed once the attachment's device is there, or failed;
	// nil before the first attachment.
	ready      chan struct{}
	loop, disk string // while attached: /dev/loopN, nvmeKn1
	number     string // the loop device's major:minor
	ctrl       string // its NVMe controller's directory in sysfs
}

// problem records something that must fail the test.
func (l *blockLayer) problem(format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// serve serves one call that the proxy forwards to moto with forward.
func (l *blockLayer) serve(form url.Values, forward func() ec2Answer) ec2Answer {
	if form.Get("DryRun") == "true" {
		return forward()
	}
	switch form.Get("Action") {
	case "CreateSnapshot", "CreateSnapshots":
		return l.snapshot(form, forward)
	case "CreateVolume":
		return l.createVolume(forward)
	case "AttachVolume", "DetachVolume", "DeleteVolume":
		return l.volumeCall(form, forward)
	case "DeleteSnapshot":
		return l.deleteSnapshot(form, forward)
	}
	return forward()
}

// ec2Error is an EC2 error answer.
func ec2Error(status int, code, message string) ec2Answer {
	return ec2Answer{status: status, header: http.Header{"Content-Type": {"text/xml"}}, body: fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>blocks</RequestID></Response>`, code, message)}
}

// snapshotItem is a snapshot in an answer to CreateSnapshot(s).
type snapshotItem struct {
	SnapshotID string `xml:"snapshotId"`
	VolumeID   string `xml:"volumeId"`
}

// snapshot copies the images of the volumes the call names at one
// instant, then forwards it, and keeps the copies as the images of the
// snapshots moto made.
func (l *blockLayer) snapshot(form url.Values, forward func() ec2Answer) ec2Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var vols []*blockVolume
	if form.Get("Action") == "CreateSnapshot" {
		if v := l.volumes[form.Get("VolumeId")]; v != nil {
			vols = append(vols, v)
		}
	} else {
		instance := form.Get("InstanceSpecification.InstanceId")
		var excluded []string
		for k, vs := range form {
			if strings.HasPrefix(k, "InstanceSpecification.ExcludeDataVolumeId") {
				excluded = append(excluded, vs...)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(l.volumes)) {
			if v := l.volumes[id]; v.instance == instance && !slices.Contains(excluded, id) {
				vols = append(vols, v)
			}
		}
	}
	copies, callerFroze, err := l.copyAtOnce(vols)
	if err != nil {
		l.problem("%s: %v", form.Get("Action"), err)
		return ec2Error(http.StatusInternalServerError, "InternalError", "the test's block layer could not copy the volumes")
	}
	a := forward()
	var items []snapshotItem
	if a.ok() {
		var resp struct {
			snapshotItem
			Set []snapshotItem `xml:"snapshotSet>item"`
		}
		if err := xml.Unmarshal([]byte(a.body), &resp); err != nil {
			l.problem("%s: answer: %v", form.Get("Action"), err)
		}
		items = resp.Set
		if resp.SnapshotID != "" {
			items = append(items, resp.snapshotItem)
		}
	}
	call := SnapshotCall{Action: form.Get("Action"), Snapshots: make(map[string]string), CallerFroze: callerFroze}
	for _, it := range items {
		l.servedSnapshots = append(l.servedSnapshots, it.SnapshotID)
		img, ok := copies[it.VolumeID]
		if !ok {
			continue // a volume without data, such as the boot volume
		}
		delete(copies, it.VolumeID)
		image := filepath.Join(l.dir, "snapshots", it.SnapshotID+".img")
		if err := os.Rename(img, image); err != nil {
			l.problem("snapshot %s: %v", it.SnapshotID, err)
			continue
		}
		l.snapshots[it.SnapshotID] = image
		call.Snapshots[it.VolumeID] = it.SnapshotID
	}
	for _, img := range copies { // the call failed, or made no snapshot of it
		os.Remove(img)
	}
	if a.ok() {
		l.calls = append(l.calls, call)
	}
	return a
}

// copyAtOnce copies the images of vols at one instant: the filesystem on
// each attached volume is frozen (or was, by the caller: callerFroze)
// while every image is copied. It returns the copies by volume id.
func (l *blockLayer) copyAtOnce(vols []*blockVolume) (copies map[string]string, callerFroze []string, err error) {
	var frozen []string
	defer func() {
		for _, mp := range slices.Backward(frozen) {
			if terr := (freeze.Kernel{}).Thaw(mp); terr != nil {
				err = errors.Join(err, terr)
			}
		}
	}()
	for _, v := range vols {
		if v.loop == "" {
			continue
		}
		mounts, err := MountsOf([]string{v.loop})
		if err != nil {
			return nil, nil, err
		}
		if len(mounts) == 0 {
			continue
		}
		err = freeze.Kernel{}.Freeze(mounts[0])
		switch {
		case errors.Is(err, unix.EBUSY):
			callerFroze = append(callerFroze, v.id)
		case err != nil:
			return nil, nil, err
		default:
			frozen = append(frozen, mounts[0])
		}
	}
	copies = make(map[string]string)
	for _, v := range vols {
		tmp := filepath.Join(l.dir, "snapshots", fmt.Sprintf(".copy-%s-%d", v.id, len(l.calls)))
		if err := sparseCopy(v.image, tmp, 0); err != nil {
			for _, c := range copies {
				os.Remove(c)
			}
			return nil, nil, err
		}
		copies[v.id] = tmp
	}
	return copies, callerFroze, nil
}

// createVolume forwards the call, then makes the new volume's image: a
// copy of its snapshot's, or an empty one.
func (l *blockLayer) createVolume(forward func() ec2Answer) ec2Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := forward()
	if !a.ok() {
		return a
	}
	var resp struct {
		VolumeID   string `xml:"volumeId"`
		SnapshotID string `xml:"snapshotId"`
		Size       int64  `xml:"size"`
	}
	if err := xml.Unmarshal([]byte(a.body), &resp); err != nil || resp.VolumeID == "" {
		l.problem("CreateVolume: answer %q: %v", a.body, err)
		return a
	}
	l.servedVolumes = append(l.servedVolumes, resp.VolumeID)
	image := filepath.Join(l.dir, "volumes", resp.VolumeID+".img")
	size := resp.Size << 30
	var err error
	switch from, ok := l.snapshots[resp.SnapshotID]; {
	case resp.SnapshotID != "" && !ok:
		return a // a snapshot without data: so is the volume
	case ok:
		err = sparseCopy(from, image, size)
	default:
		err = sparseCopy("", image, size)
	}
	if err != nil {
		l.problem("CreateVolume %s: %v", resp.VolumeID, err)
		return a
	}
	l.volumes[resp.VolumeID] = &blockVolume{id: resp.VolumeID, image: image, snapshot: resp.SnapshotID}
	return a
}

// volumeCall forwards a call on a volume (AttachVolume, DetachVolume,
// DeleteVolume), once an attachment of it in progress is complete, and
// when EC2 has accepted it serves it for the blocks: an attachment
// attaches the image as a loop device once the call has returned (the
// disk appears after that), a detachment makes the disk disappear and
// releases the loop device, a deletion removes the image.
func (l *blockLayer) volumeCall(form url.Values, forward func() ec2Answer) ec2Answer {
	l.mu.Lock()
	v := l.volumes[form.Get("VolumeId")]
	var ready chan struct{}
	if v != nil {
		ready = v.ready
	}
	l.mu.Unlock()
	if ready != nil {
		<-ready
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a := forward()
	if !a.ok() || v == nil {
		return a
	}
	switch form.Get("Action") {
	case "AttachVolume":
		v.instance = form.Get("InstanceId")
		v.ready = make(chan struct{})
		l.attaching.Add(1)
		go l.attach(v)
	case "DetachVolume":
		v.instance = ""
		l.detach(v)
	case "DeleteVolume":
		if v.loop != "" {
			l.problem("volume %s deleted while attached as %s", v.id, v.loop)
		}
		if err := os.Remove(v.image); err != nil {
			l.problem("delete %s: %v", v.id, err)
		}
		delete(l.volumes, v.id)
	}
	return a
}

// attach attaches v's image as a loop device and shows it as an EBS
// NVMe disk: its controller (model, serial) and namespace in
// sysRoot/devices, the device node in devRoot, and last the sysRoot/dev/block
// and sysRoot/block entries that discovery and the device wait follow.
func (l *blockLayer) attach(v *blockVolume) {
	defer l.attaching.Done()
	defer close(v.ready)
	out, err := exec.Command("losetup", "--direct-io=on", "-f", "--show", v.image).CombinedOutput()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.problem("attach %s: losetup: %v %s", v.id, err, out)
		return
	}
	loop := strings.TrimSpace(string(out))
	number, err := deviceNumber(loop)
	if err != nil {
		l.problem("attach %s: %v", v.id, err)
		return
	}
	l.disks++
	ctrlName := fmt.Sprintf("nvme%d", l.disks)
	disk := ctrlName + "n1"
	ctrl := filepath.Join(l.sysRoot, "devices", "pci0000:00", fmt.Sprintf("0000:00:%02x.0", 0x10+l.disks), "nvme", ctrlName)
	ns := filepath.Join(ctrl, disk)
	v.loop, v.number, v.ctrl = loop, number, ctrl
	err = errors.Join(
		os.MkdirAll(ns, 0o755),
		// sysfs pads the model and serial with spaces, as NVMe does.
		os.WriteFile(filepath.Join(ctrl, "model"), []byte(fmt.Sprintf("%-40s\n", "Amazon Elastic Block Store")), 0o444),
		os.WriteFile(filepath.Join(ctrl, "serial"), []byte(fmt.Sprintf("%-20s\n", strings.Replace(v.id, "-", "", 1))), 0o444),
		os.WriteFile(filepath.Join(ns, "nsid"), []byte("1\n"), 0o444),
		os.WriteFile(filepath.Join(ns, "dev"), []byte(number+"\n"), 0o444),
		os.Symlink("../../"+ctrlName, filepath.Join(ns, "device")),
		replaceSymlink(loop, filepath.Join(l.devRoot, disk)),
		replaceSymlink(mustRel(filepath.Join(l.sysRoot, "dev", "block"), ns), filepath.Join(l.sysRoot, "dev", "block", number)),
		replaceSymlink(mustRel(filepath.Join(l.sysRoot, "block"), ns), filepath.Join(l.sysRoot, "block", disk)),
	)
	if err != nil {
		l.problem("attach %s: %v", v.id, err)
		return
	}
	v.disk = disk
}

// replaceSymlink makes link point to target, atomically.
func replaceSymlink(target, link string) error {
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// mustRel is target relative to dir; both are absolute.
func mustRel(dir, target string) string {
	rel, err := filepath.Rel(dir, target)
	if err != nil {
		panic(err)
	}
	return rel
}

// detach removes v's disk (sysfs entries first, as the kernel does) and
// detaches its loop device. A filesystem still mounted on it is a
// problem: the loop device then lingers until it is unmounted.
func (l *blockLayer) detach(v *blockVolume) {
	if v.loop == "" {
		return
	}
	if v.disk != "" {
		err := errors.Join(
			os.Remove(filepath.Join(l.sysRoot, "block", v.disk)),
			os.Remove(filepath.Join(l.sysRoot, "dev", "block", v.number)),
			os.Remove(filepath.Join(l.devRoot, v.disk)),
			os.RemoveAll(filepath.Dir(filepath.Dir(v.ctrl))), // its PCI function
		)
		if err != nil {
			l.problem("detach %s: %v", v.id, err)
		}
	}
	if mounts, err := MountsOf([]string{v.loop}); err != nil || len(mounts) > 0 {
		l.problem("volume %s detached while its filesystem was mounted at %v (%v)", v.id, mounts, err)
	}
	if out, err := exec.Command("losetup", "-d", v.loop).CombinedOutput(); err != nil {
		l.problem("detach %s: losetup -d %s: %v %s", v.id, v.loop, err, out)
	}
	v.loop, v.disk, v.number, v.ctrl = "", "", "", ""
}

// deleteSnapshot forwards the call and removes the snapshot's image once
// EC2 has deleted it.
func (l *blockLayer) deleteSnapshot(form url.Values, forward func() ec2Answer) ec2Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := forward()
	id := form.Get("SnapshotId")
	if image, ok := l.snapshots[id]; ok && a.ok() {
		if err := os.Remove(image); err != nil {
			l.problem("delete %s: %v", id, err)
		}
		delete(l.snapshots, id)
	}
	return a
}

// release ends the kit when its test ends: it waits for attachments in
// progress, unmounts and detaches its loop devices, fails the test if
// any remain or the block layer met a problem, and removes what it served
// from moto (direct, not through the stopped proxy).
func (l *blockLayer) release(t testing.TB, direct *ec2.Client) {
	l.attaching.Wait()
	ReleaseLoops(t, l.dir)
	left, err := LoopsUnder(l.dir)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, dev := range left {
		t.Errorf("cleanup: loop device %s of the EBS kit was not released", dev)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Errorf("EBS kit: %s", p)
	}
	ctx := CleanupContext(t)
	for _, id := range l.servedSnapshots {
		_, err := direct.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		var ae smithy.APIError
		if err != nil && !(errors.As(err, &ae) && ae.ErrorCode() == "InvalidSnapshot.NotFound") {
			t.Errorf("clean up snapshot %s: %v", id, err)
		}
	}
	for _, id := range l.servedVolumes {
		if err := removeEC2Volume(ctx, direct, id); err != nil {
			t.Errorf("clean up volume %s: %v", id, err)
		}
	}
}

// sparseCopy writes dst (mode 0600, which must not exist) as a copy of
// src that has holes where src has them, and size bytes long if that is
// more than src's size. An empty src makes an empty image of size.
func sparseCopy(src, dst string, size int64) (err error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if src == "" {
		return out.Truncate(size)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := out.Truncate(max(size, fi.Size())); err != nil {
		return err
	}
	rfd, wfd := int(in.Fd()), int(out.Fd())
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(rfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data after off
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy %s: seek data: %w", src, err)
		}
		hole, err := unix.Seek(rfd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("copy %s: seek hole: %w", src, err)
		}
		for r, w := data, data; r < hole; {
			n, err := unix.CopyFileRange(rfd, &r, wfd, &w, int(hole-r), 0)
			if err != nil {
				return fmt.Errorf("copy %s: %w", src, err)
			}
			if n == 0 {
				return fmt.Errorf("copy %s: it ended at %d, before %d", src, r, hole)
			}
		}
		off = hole
	}
	return nil
}
