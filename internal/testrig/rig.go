// Package testrig starts and reaches the real parts that walsnap's
// integration tests run against: PostgreSQL servers (as an unprivileged
// user), a MinIO S3 server, moto's EC2 API and the walsnap binary itself.
//
// # The EBS kit
//
// BlockEC2 gives EBS volumes real blocks on this host, for a test that
// runs the ebs provider end to end (e2e/ebs_blocks_test.go): moto
// records the volumes and snapshots, and a block layer in front of it
// (an EC2Proxy) backs each volume with an image file attached as a loop
// device, copies the images of the volumes a CreateSnapshot(s) call names
// at one instant, and makes volumes from those copies. An attached volume
// shows as a Nitro NVMe disk whose serial is its volume id, in a sysfs
// tree of the kit's (BlockEC2.SysRoot, with the device nodes in DevRoot):
// with BlockEC2.Environ, walsnap finds the volumes by itself, as on EC2.
// A test uses it so:
//
//	kit := testrig.NewBlockEC2(t)               // moto, proxy, instance, IMDS, sysfs
//	mnt := kit.Dir(t, "pg")                     // mount points live in the kit's directory
//	vol := kit.AddVolume(t, "ext4", mnt)        // create, attach, mkfs, mount (or "xfs")
//	// walsnap runs with kit.Environ() (plus any AWS credentials) in its
//	// environment and kit.Config() ("ebs:\n  endpoint: ...\n  region: ...\n")
//	// at the head of its ebs section; restore --mount-root kit.Dir(t, "restored").
//	kit.SnapshotCalls()                         // what each snapshot call copied, and who froze what
//	kit.Volumes()                               // the volumes with images: id, image, snapshot, loop device
//	kit.EC2                                     // a client through the kit: setup, an orchestrator's snapshots
//	kit.Proxy                                   // refuse or rewrite calls, watch requests (EC2Proxy)
//
// In package e2e, newBlockSetup (e2e/ebs_blocks_test.go) builds the usual
// setup on it: PostgreSQL 15 archiving into MinIO with PGDATA on one kit
// volume and pg_wal on another, backup.provider ebs, no ebs.volumes; its
// manifest, oneInstant and pitr methods check a backup's snapshots and a
// restore --target-time on new volumes. A test of the restore drill's EBS
// case starts from there.
//
// When the test ends, after the servers it started later have stopped,
// the kit unmounts what is mounted on its loop devices, detaches them,
// and fails the test if one of them remains or the block layer met a
// problem (such as a volume detached while still mounted). LoopsUnder,
// Mounts, MountsOf, ReleaseLoops and WaitUnused serve other tests that
// use loop devices.
//
// Outside .ci/run an integration test skips with a message naming what is
// missing. Under .ci/run (WALSNAP_RIG=1) a missing part fails the test
// instead, so a silently skipped integration test cannot pass CI.
package testrig

import (
	"os"
	"testing"
)

// Required reports whether the rig must be complete (set by .ci/run).
func Required() bool { return os.Getenv("WALSNAP_RIG") == "1" }

// Unavailable skips the test, or fails it when the rig is required.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("test rig incomplete under WALSNAP_RIG=1: "+format, args...)
	}
	t.Skipf("skipping integration test (run via .ci/run for the full rig): "+format, args...)
}
