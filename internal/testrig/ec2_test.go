package testrig

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

func TestEC2ProxyAndMotoHelpers(t *testing.T) {
	env := Moto(t)
	p := NewEC2Proxy(t, env.Endpoint)
	var mu sync.Mutex
	var seen []string
	p.Observe(func(form url.Values) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, form.Get("Action"))
	})
	proxied := env
	proxied.Endpoint = p.URL
	c := proxied.EC2()

	var vol string
	t.Run("instance and volume", func(t *testing.T) {
		inst, az := LaunchInstance(t, c, "/dev/sda1")
		vol = NewVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), VolumeType: types.VolumeTypeGp3})
		if _, err := c.AttachVolume(t.Context(), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String("/dev/sdf")}); err != nil {
			t.Fatal(err)
		}
		if n := len(p.Requests("RunInstances")); n != 1 {
			t.Errorf("%d RunInstances requests, want 1", n)
		}
		if got := p.Requests("CreateVolume"); len(got) != 1 || got[0].Get("Size") != "1" {
			t.Errorf("CreateVolume requests %v, want one of 1 GiB", got)
		}

		p.Set(nil, func(form url.Values, body string) string {
			if form.Get("Action") == "DescribeVolumes" {
				return WithAttachmentState(WithVolumeState(body, vol, "creating"), vol, "attaching")
			}
			return body
		})
		out, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
		p.Set(nil, nil)
		if err != nil || len(out.Volumes) != 1 || out.Volumes[0].State != types.VolumeStateCreating ||
			len(out.Volumes[0].Attachments) != 1 || out.Volumes[0].Attachments[0].State != types.VolumeAttachmentStateAttaching {
			t.Errorf("rewritten DescribeVolumes = %+v, %v; want creating and attaching", out, err)
		}

		refusals := Countdown(1)
		p.Set(func(_ *http.Request, form url.Values) string {
			if form.Get("Action") == "DescribeVolumes" && refusals() {
				return "UnauthorizedOperation"
			}
			return ""
		}, nil)
		_, err = c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "UnauthorizedOperation" {
			t.Errorf("refused DescribeVolumes = %v, want UnauthorizedOperation", err)
		}
		if _, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}); err != nil {
			t.Errorf("DescribeVolumes after the one refusal: %v", err)
		}
		p.Set(nil, nil)
	})
	// The subtest's cleanup detached and deleted the attached volume, then
	// terminated the instance.
	_, err := env.EC2().DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidVolume.NotFound" {
		t.Errorf("DescribeVolumes of the removed volume = %v, want InvalidVolume.NotFound", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(seen, "DeleteVolume") || !slices.Contains(seen, "TerminateInstances") {
		t.Errorf("requests seen %v, want the cleanup's DeleteVolume and TerminateInstances", seen)
	}
}

func TestWithSnapshotState(t *testing.T) {
	body := `<snapshotSet><item><snapshotId>snap-1</snapshotId><status>completed</status><volumeId>vol-1</volumeId><progress>100%</progress></item>` +
		`<item><snapshotId>snap-2</snapshotId><status>completed</status><volumeId>vol-2</volumeId><progress>100%</progress></item></snapshotSet>`
	got := WithSnapshotState(body, "snap-2", "error", "broken", "0%")
	want := `<snapshotSet><item><snapshotId>snap-1</snapshotId><status>completed</status><volumeId>vol-1</volumeId><progress>100%</progress></item>` +
		`<item><snapshotId>snap-2</snapshotId><status>error</status><statusMessage>broken</statusMessage><volumeId>vol-2</volumeId><progress>0%</progress></item></snapshotSet>`
	if got != want {
		t.Errorf("WithSnapshotState =\n%s\nwant\n%s", got, want)
	}
	if got := WithSnapshotState(body, "snap-3", "error", "", "0%"); got != body {
		t.Errorf("WithSnapshotState of an absent snapshot changed the body: %s", got)
	}
	if c := Countdown(2); !c() || !c() || c() {
		t.Error("Countdown(2) is not true exactly twice")
	}
}
