package ebs

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/testrig"
)

// TestPrepareSnapshots: the checks that run before the backup window ask
// EC2 whether the snapshot call would be permitted (DryRun) and create
// nothing; a refusal is reported before any snapshot is requested.
func TestPrepareSnapshots(t *testing.T) {
	c, p := proxied(t)
	inst, az := launch(t, c, "/dev/sda1")
	data, wal := newVolume(t, c, az, nil), newVolume(t, c, az, nil)
	attach(t, c, data, inst, "/dev/sdf")
	attach(t, c, wal, inst, "/dev/sdg")
	single := SnapshotSpec{Volumes: []VolumeInfo{{VolumeID: data}}, Tags: map[string]string{"walsnap:backup-id": "b1"}}
	multi := SnapshotSpec{InstanceID: inst, Volumes: []VolumeInfo{{VolumeID: data}, {VolumeID: wal}}, Tags: map[string]string{"walsnap:backup-id": "b1"}}

	for name, tc := range map[string]struct {
		spec   SnapshotSpec
		action string
	}{"one volume": {single, "CreateSnapshot"}, "several volumes": {multi, "CreateSnapshots"}} {
		t.Run(name, func(t *testing.T) {
			before := len(p.Requests(tc.action))
			call, err := c.PrepareSnapshots(t.Context(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			reqs := p.Requests(tc.action)[before:]
			if len(reqs) != 1 || reqs[0].Get("DryRun") != "true" {
				t.Fatalf("%s requests %v, want one DryRun", tc.action, reqs)
			}
			if n := len(snapshotsOf(t, c, data, wal)); n != 0 {
				t.Fatalf("%d snapshots after the DryRun check", n)
			}
			snaps, err := c.CreateSnapshots(t.Context(), call)
			if err != nil {
				t.Fatal(err)
			}
			deleteLater(t, c, snaps)
			if reqs := p.Requests(tc.action)[before:]; len(reqs) != 2 || reqs[1].Get("DryRun") != "false" {
				t.Errorf("%s requests %v, want the DryRun then the call", tc.action, reqs)
			}

			// Missing permissions: refused by EC2's answer to the DryRun.
			p.Set(func(_ *http.Request, form url.Values) string {
				if form.Get("DryRun") == "true" {
					return "UnauthorizedOperation"
				}
				return ""
			}, nil)
			defer p.Set(nil, nil)
			before = len(p.Requests(tc.action))
			_, err = c.PrepareSnapshots(t.Context(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), "not permitted") || !strings.Contains(err.Error(), "UnauthorizedOperation") {
				t.Errorf("PrepareSnapshots without permission = %v, want a refusal naming the permission", err)
			}
			if n := len(p.Requests(tc.action)) - before; n != 1 {
				t.Errorf("%d %s requests, want the DryRun only", n, tc.action)
			}
		})
	}

	// An EC2-compatible API that ignores DryRun takes the snapshot: it is
	// deleted, and the call prepared all the same.
	p.EditRequests(func(form url.Values) { form.Del("DryRun") })
	defer p.EditRequests(nil)
	if _, err := c.PrepareSnapshots(t.Context(), single); err != nil {
		t.Fatal(err)
	}
	if left := snapshotsOf(t, c, data); len(left) != 0 {
		t.Errorf("%d snapshots left by a DryRun that was not one", len(left))
	}
}

// TestFindSnapshots: what a backup of an orchestrator's snapshots and the
// cleanup of a failed backup look up.
func TestFindSnapshots(t *testing.T) {
	c := testClient(t, nil)
	_, az := launch(t, c, "/dev/sda1")
	a, b, other := newVolume(t, c, az, nil), newVolume(t, c, az, nil), newVolume(t, c, az, nil)
	var snaps []Snapshot
	for _, spec := range []SnapshotSpec{
		{Volumes: []VolumeInfo{{VolumeID: a}}, Tags: map[string]string{"walsnap:backup-id": "find-1"}},
		{Volumes: []VolumeInfo{{VolumeID: b}}, Tags: map[string]string{"walsnap:backup-id": "find-1"}},
		{Volumes: []VolumeInfo{{VolumeID: other}}, Tags: map[string]string{"walsnap:backup-id": "find-2"}},
	} {
		s, err := createSnapshots(t.Context(), c, spec)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s...)
	}
	deleteLater(t, c, snaps)

	got, err := c.VolumeSnapshots(t.Context(), []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.SnapshotID)
		if s.State != "completed" || s.StartTime.IsZero() || s.Tags["walsnap:backup-id"] != "find-1" {
			t.Errorf("snapshot %+v", s)
		}
	}
	if want := []string{snaps[0].SnapshotID, snaps[1].SnapshotID}; !slices.Equal(slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values(want))) {
		t.Errorf("VolumeSnapshots = %v, want %v", ids, want)
	}

	desc, err := c.DescribeSnapshots(t.Context(), []string{snaps[1].SnapshotID, snaps[0].SnapshotID})
	if err != nil || len(desc) != 2 || desc[0].VolumeID != b || desc[1].VolumeID != a {
		t.Errorf("DescribeSnapshots = %+v, %v; want those of %s and %s in that order", desc, err, b, a)
	}
	if _, err := c.DescribeSnapshots(t.Context(), []string{snaps[0].SnapshotID, "snap-0000000000000dead"}); err == nil {
		t.Error("DescribeSnapshots of a missing snapshot succeeded")
	}

	deleted, err := c.DeleteTaggedSnapshots(t.Context(), "walsnap:backup-id", "find-1")
	if err != nil || len(deleted) != 2 {
		t.Fatalf("DeleteTaggedSnapshots = %v, %v; want the 2 snapshots of find-1", deleted, err)
	}
	if left := snapshotsOf(t, c, a, b); len(left) != 0 {
		t.Errorf("%d snapshots of find-1 left", len(left))
	}
	if left := snapshotsOf(t, c, other); len(left) != 1 {
		t.Errorf("the snapshot of another backup was deleted too")
	}
}

// TestFastRestoreStates: moto lacks DescribeFastSnapshotRestores, which is
// asked once and reported as an error at once; through the proxy's answer
// the states of the target zone come back.
func TestFastRestoreStates(t *testing.T) {
	c, p := proxied(t)
	_, err := c.FastRestoreStates(t.Context(), "us-east-1a", []string{"snap-0123456789abcdef0"})
	if err == nil {
		t.Fatal("FastRestoreStates against moto succeeded: does moto implement it now?")
	}
	if n := len(p.Requests("DescribeFastSnapshotRestores")); n != 1 {
		t.Errorf("%d DescribeFastSnapshotRestores requests, want 1 (no retries for a plan's information)", n)
	}

	p.Answer("DescribeFastSnapshotRestores", testrig.FastSnapshotRestores("us-east-1a", map[string]string{
		"snap-0123456789abcdef0": "enabled", "snap-0fedcba9876543210": "optimizing", "snap-01111111111111111": "disabled",
	}))
	got, err := c.FastRestoreStates(t.Context(), "us-east-1a", []string{"snap-0123456789abcdef0", "snap-0fedcba9876543210", "snap-01111111111111111"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["snap-0123456789abcdef0"] != "enabled" || got["snap-0fedcba9876543210"] != "optimizing" {
		t.Errorf("FastRestoreStates = %v, want enabled and optimizing, not disabled", got)
	}
	req := p.Requests("DescribeFastSnapshotRestores")[1]
	if req.Get("Filter.1.Name") != "snapshot-id" || req.Get("Filter.2.Name") != "availability-zone" || req.Get("Filter.2.Value.1") != "us-east-1a" {
		t.Errorf("request %v, want filters by snapshot id and zone", req)
	}
	if got, err := c.FastRestoreStates(t.Context(), "us-east-1b", []string{"snap-0123456789abcdef0"}); err != nil || len(got) != 0 {
		t.Errorf("FastRestoreStates in another zone = %v, %v; want none", got, err)
	}
}

func TestInstanceZone(t *testing.T) {
	c := testClient(t, nil)
	inst, az := launch(t, c, "/dev/sda1")
	if got, err := c.InstanceZone(t.Context(), inst); err != nil || got != az {
		t.Errorf("InstanceZone = %q, %v; want %s", got, err, az)
	}
	if _, err := c.InstanceZone(t.Context(), "i-0000000000000dead"); err == nil {
		t.Error("InstanceZone of a missing instance succeeded")
	}
}

func TestCheckVolume(t *testing.T) {
	for _, tc := range []struct {
		spec VolumeSpec
		size int32
		want string // "" = accepted
	}{
		{VolumeSpec{Type: "gp3"}, 1, ""},
		{VolumeSpec{Type: "gp3", IOPS: 3000, Throughput: 125}, 1, ""},
		{VolumeSpec{Type: "gp3", IOPS: 16000, Throughput: 1000}, 32, ""},
		{VolumeSpec{Type: "gp3", IOPS: 80000, Throughput: 2000}, 160, ""},
		{VolumeSpec{Type: "gp3", IOPS: 999999}, 2000, "999999 IOPS: gp3 volumes take 3000-80000"},
		{VolumeSpec{Type: "gp3", IOPS: 2000}, 100, "2000 IOPS: gp3 volumes take 3000-80000"},
		{VolumeSpec{Type: "gp3", IOPS: 16000}, 20, "at most 500 IOPS per GiB, 10000"},
		{VolumeSpec{Type: "gp3", Throughput: 100}, 20, "100 MiB/s: gp3 volumes take 125-2000"},
		{VolumeSpec{Type: "gp3", Throughput: 2001, IOPS: 80000}, 1000, "2001 MiB/s: gp3 volumes take 125-2000"},
		{VolumeSpec{Type: "gp3", Throughput: 1000}, 20, "at most 0.25 MiB/s per IOPS, 750"},
		{VolumeSpec{Type: "gp3"}, 70000, "gp3 volumes are 1-65536 GiB"},
		{VolumeSpec{Type: "gp3", SizeGiB: 100, IOPS: 16000}, 20, ""}, // the larger size
		{VolumeSpec{Type: "gp2"}, 20, ""},
		{VolumeSpec{Type: "gp2", IOPS: 5000}, 20, "gp2 volumes take no IOPS setting"},
		{VolumeSpec{Type: "gp2", Throughput: 250}, 20, "gp2 volumes take no throughput setting"},
		{VolumeSpec{Type: "gp2"}, 20000, "gp2 volumes are 1-16384 GiB"},
		{VolumeSpec{Type: "io1", IOPS: 1000}, 20, ""},
		{VolumeSpec{Type: "io1"}, 20, "io1 volumes need an IOPS setting (100-64000)"},
		{VolumeSpec{Type: "io1", IOPS: 1001}, 20, "at most 50 IOPS per GiB, 1000"},
		{VolumeSpec{Type: "io1", IOPS: 64001}, 20000, "64001 IOPS: io1 volumes take 100-64000"},
		{VolumeSpec{Type: "io1", IOPS: 100}, 2, "io1 volumes are 4-16384 GiB"},
		{VolumeSpec{Type: "io2", IOPS: 20000}, 20, ""},
		{VolumeSpec{Type: "io2", IOPS: 20001}, 20, "at most 1000 IOPS per GiB, 20000"},
		{VolumeSpec{Type: "io2", IOPS: 256001}, 60000, "256001 IOPS: io2 volumes take 100-256000"},
		{VolumeSpec{Type: "io2", IOPS: 99}, 20, "99 IOPS: io2 volumes take 100-256000"},
		{VolumeSpec{Type: "io2", IOPS: 1000, Throughput: 500}, 20, "io2 volumes take no throughput setting"},
		{VolumeSpec{Type: "st1"}, 125, ""},
		{VolumeSpec{Type: "st1"}, 20, "st1 volumes are 125-16384 GiB"},
		{VolumeSpec{Type: "sc1", IOPS: 500}, 500, "sc1 volumes take no IOPS setting"},
		{VolumeSpec{Type: "standard"}, 1025, "standard volumes are 1-1024 GiB"},
		{VolumeSpec{Type: "gp4"}, 20, `volume type "gp4": EC2 has gp2, gp3, io1, io2, sc1, st1, standard`},
		{VolumeSpec{Type: "gp3", InitializationRate: 100}, 20, ""},
		{VolumeSpec{Type: "gp3", InitializationRate: 300}, 20, ""},
		{VolumeSpec{Type: "gp3", InitializationRate: 50}, 20, "initialization rate 50 MiB/s: EC2 takes 100-300"},
		{VolumeSpec{Type: "gp3", InitializationRate: 301}, 20, "initialization rate 301 MiB/s: EC2 takes 100-300"},
	} {
		err := CheckVolume(tc.spec, tc.size)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckVolume(%+v, %d GiB) = %v, want %q", tc.spec, tc.size, err, tc.want)
		}
	}
	if err := CheckInitializationRate(0); err != nil {
		t.Errorf("no initialization rate: %v", err)
	}
}
