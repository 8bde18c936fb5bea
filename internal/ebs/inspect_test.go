package ebs

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// TestSnapshotStates: states of existing snapshots, and missing ones
// absent instead of failing the call.
func TestSnapshotStates(t *testing.T) {
	c := testClient(t, nil)
	_, az := launch(t, c, "/dev/sda1")
	vol := newVolume(t, c, az, nil)
	var snaps []Snapshot
	for range 2 {
		out, err := c.ec2.CreateSnapshot(t.Context(), &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)})
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, Snapshot{SnapshotID: aws.ToString(out.SnapshotId), VolumeID: vol})
	}
	deleteLater(t, c, snaps[:1])
	if err := c.DeleteSnapshots(t.Context(), []string{snaps[1].SnapshotID}); err != nil {
		t.Fatal(err)
	}
	never := "snap-0123456789abcdef0"
	got, err := c.SnapshotStates(t.Context(), []string{snaps[0].SnapshotID, snaps[1].SnapshotID, never})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := got[snaps[0].SnapshotID]; !ok || s.State != "completed" || s.SizeGiB != 1 || len(got) != 1 {
		t.Fatalf("SnapshotStates = %+v; want only %s, completed, of a 1 GiB volume", got, snaps[0].SnapshotID)
	}
	if got, err := c.SnapshotStates(t.Context(), nil); err != nil || len(got) != 0 {
		t.Fatalf("no ids: %v, %v", got, err)
	}
}

// TestCanSnapshot: the DryRun permission check creates nothing, passes
// where moto permits (DryRunOperation), and names the permissions when
// EC2 refuses.
func TestCanSnapshot(t *testing.T) {
	c, p := proxied(t)
	instance, az := launch(t, c, "/dev/sda1")
	one, two := newVolume(t, c, az, nil), newVolume(t, c, az, nil)
	attach(t, c, one, instance, "/dev/sdf")
	attach(t, c, two, instance, "/dev/sdg")
	for _, ids := range [][]string{{one}, {one, two}} {
		if err := c.CanSnapshot(t.Context(), instance, ids); err != nil {
			t.Fatalf("CanSnapshot(%v): %v", ids, err)
		}
	}
	if n := len(snapshotsOf(t, c, one, two)); n != 0 {
		t.Fatalf("the permission check created %d snapshots", n)
	}
	if reqs := p.Requests("CreateSnapshots"); len(reqs) != 1 || reqs[0].Get("DryRun") != "true" {
		t.Fatalf("CreateSnapshots requests: %v", reqs)
	}
	p.Set(func(_ *http.Request, form url.Values) string {
		if isAction(form, "CreateSnapshot") || isAction(form, "CreateSnapshots") {
			return "UnauthorizedOperation"
		}
		return ""
	}, nil)
	for _, ids := range [][]string{{one}, {one, two}} {
		if err := c.CanSnapshot(t.Context(), instance, ids); err == nil || !strings.Contains(err.Error(), "ec2:CreateSnapshots") {
			t.Fatalf("CanSnapshot(%v) refused by EC2: %v", ids, err)
		}
	}
}
