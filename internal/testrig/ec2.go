package testrig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
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
)

// EC2 returns a client of moto's EC2 API with the dummy credentials of
// Environ, for a test's setup and checks.
func (e MotoEnv) EC2() *ec2.Client {
	return ec2.New(ec2.Options{
		BaseEndpoint: aws.String(e.Endpoint),
		Region:       e.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", "testing"),
	})
}

// CleanupContext returns a context for t.Cleanup functions, which run
// after t.Context has ended; it ends a minute after t does.
func CleanupContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// LaunchInstance starts an instance from one of moto's AMIs whose root
// device is rootDevice (moto attaches every boot volume as /dev/sda1), and
// terminates it when t ends.
func LaunchInstance(t testing.TB, c *ec2.Client, rootDevice string) (instanceID, az string) {
	t.Helper()
	imgs, err := c.DescribeImages(t.Context(), &ec2.DescribeImagesInput{
		Filters: []types.Filter{{Name: aws.String("root-device-name"), Values: []string{rootDevice}}},
	})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("no AMI with root device %s in moto (%v)", rootDevice, err)
	}
	out, err := c.RunInstances(t.Context(), &ec2.RunInstancesInput{
		ImageId:      imgs.Images[0].ImageId,
		InstanceType: types.InstanceTypeT3Micro,
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	inst := out.Instances[0]
	instanceID = aws.ToString(inst.InstanceId)
	t.Cleanup(func() {
		_, err := c.TerminateInstances(CleanupContext(t), &ec2.TerminateInstancesInput{InstanceIds: []string{instanceID}})
		if err != nil {
			t.Errorf("terminate %s: %v", instanceID, err)
		}
	})
	return instanceID, aws.ToString(inst.Placement.AvailabilityZone)
}

// NewVolume creates a volume as in says (1 GiB unless in.Size is set) and
// returns its id. When t ends, the volume is detached if attached and
// deleted, unless already gone.
func NewVolume(t testing.TB, c *ec2.Client, in *ec2.CreateVolumeInput) string {
	t.Helper()
	if in.Size == nil {
		in.Size = aws.Int32(1)
	}
	out, err := c.CreateVolume(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	t.Cleanup(func() {
		if err := removeEC2Volume(CleanupContext(t), c, id); err != nil {
			t.Errorf("clean up volume %s: %v", id, err)
		}
	})
	return id
}

// removeEC2Volume force-detaches volume id, waits until it is available
// and deletes it; a volume already gone is fine.
func removeEC2Volume(ctx context.Context, c *ec2.Client, id string) error {
	gone := func(err error) bool {
		var ae smithy.APIError
		return errors.As(err, &ae) && ae.ErrorCode() == "InvalidVolume.NotFound"
	}
	in := &ec2.DescribeVolumesInput{VolumeIds: []string{id}}
	out, err := c.DescribeVolumes(ctx, in)
	if gone(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, v := range out.Volumes {
		switch v.State {
		case types.VolumeStateDeleting, types.VolumeStateDeleted:
			return nil
		}
		for _, a := range v.Attachments {
			_, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: a.VolumeId, InstanceId: a.InstanceId, Device: a.Device, Force: aws.Bool(true)})
			if err != nil {
				return err
			}
		}
	}
	w := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, in, time.Minute); err != nil {
		return err
	}
	if _, err := c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil && !gone(err) {
		return err
	}
	return nil
}

// EC2Proxy stands between the code under test and moto: it forwards every
// EC2 query API request to moto and its answer back, records the
// requests' parameters, and lets a test refuse requests with an EC2 error,
// edit requests or moto's answers, or answer an action moto lacks, for
// what moto cannot be made to do (throttling, states other than the final
// one, a hanging call, an endpoint that ignores DryRun, Fast Snapshot
// Restore).
type EC2Proxy struct {
	URL    string // the endpoint to give the code under test
	target string

	mu      sync.Mutex
	calls   []url.Values
	observe func(form url.Values)
	refuse  func(r *http.Request, form url.Values) string
	rewrite func(form url.Values, body string) string
	edit    func(form url.Values)
	answers map[string]func(form url.Values) string
	// blocks, when set, backs volumes with loop devices (BlockEC2): it
	// serves each forwarded call around its forwarding.
	blocks *blockLayer
}

// NewEC2Proxy starts a proxy to the EC2 API at target (a MotoEnv's
// Endpoint), stopped when t ends.
func NewEC2Proxy(t testing.TB, target string) *EC2Proxy {
	p := &EC2Proxy{target: target}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Observe makes f see the parameters of each request as it arrives,
// before refuse.
func (p *EC2Proxy) Observe(f func(form url.Values)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observe = f
}

// Set installs the hooks, either of which may be nil. refuse runs first
// and may block (r's context ends with the client's request); a non-empty
// return is an EC2 error code to answer with instead of forwarding.
// rewrite edits moto's answer.
func (p *EC2Proxy) Set(refuse func(r *http.Request, form url.Values) string, rewrite func(form url.Values, body string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse, p.rewrite = refuse, rewrite
}

// EditRequests makes f edit the parameters of each request (after
// refuse) before it is forwarded; nil stops editing.
func (p *EC2Proxy) EditRequests(f func(form url.Values)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.edit = f
}

// Answer makes the proxy answer every request for action itself, with
// HTTP 200 and the body f returns (an EC2 query API response), instead of
// forwarding it: for actions moto does not implement. A nil f forwards
// them again.
func (p *EC2Proxy) Answer(action string, f func(form url.Values) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answers == nil {
		p.answers = make(map[string]func(url.Values) string)
	}
	p.answers[action] = f
	if f == nil {
		delete(p.answers, action)
	}
}

// Requests returns the parameters of the requests for action so far.
func (p *EC2Proxy) Requests(action string) []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []url.Values
	for _, f := range p.calls {
		if f.Get("Action") == action {
			out = append(out, f)
		}
	}
	return out
}

// Made returns the requests for action that were not DryRun checks: the
// calls that did something.
func (p *EC2Proxy) Made(action string) []url.Values {
	var out []url.Values
	for _, f := range p.Requests(action) {
		if f.Get("DryRun") != "true" {
			out = append(out, f)
		}
	}
	return out
}

func (p *EC2Proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.calls = append(p.calls, form)
	observe, refuse, rewrite, edit, answer, blocks := p.observe, p.refuse, p.rewrite, p.edit, p.answers[form.Get("Action")], p.blocks
	p.mu.Unlock()
	if observe != nil {
		observe(form)
	}
	if refuse != nil {
		if code := refuse(r, form); code != "" {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>refused by the test proxy</Message></Error></Errors><RequestID>proxy</RequestID></Response>`, code)
			return
		}
	}
	if answer != nil {
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, answer(form))
		return
	}
	sent := form
	if edit != nil {
		sent = maps.Clone(form) // the recorded form stays as sent
		edit(sent)
		body = []byte(sent.Encode())
	}
	forward := func() ec2Answer { return p.forward(r, body) }
	var a ec2Answer
	if blocks != nil {
		a = blocks.serve(sent, forward)
	} else {
		a = forward()
	}
	if a.err != nil {
		http.Error(w, a.err.Error(), http.StatusBadGateway)
		return
	}
	out := a.body
	if rewrite != nil {
		out = rewrite(form, out)
	}
	for k, vs := range a.header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(a.status)
	io.WriteString(w, out)
}

// ec2Answer is an EC2 API answer, or why there is none (err).
type ec2Answer struct {
	status int
	header http.Header
	body   string
	err    error
}

// ok reports a successful answer.
func (a ec2Answer) ok() bool { return a.err == nil && a.status == http.StatusOK }

// forward sends r, with body, to moto and returns its answer.
func (p *EC2Proxy) forward(r *http.Request, body []byte) ec2Answer {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return ec2Answer{err: err}
	}
	req.Header = r.Header.Clone()
	req.Header.Del("Content-Length")
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return ec2Answer{err: err}
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return ec2Answer{err: err}
	}
	return ec2Answer{status: resp.StatusCode, header: resp.Header, body: string(got)}
}

// Countdown returns a function, safe for concurrent use, that is true the
// first n times it is called.
func Countdown(n int) func() bool {
	var mu sync.Mutex
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		n--
		return n >= 0
	}
}

// WithSnapshotState sets the state, message and progress of snapshot id
// in a DescribeSnapshots answer.
func WithSnapshotState(body, id, state, message, progress string) string {
	re := regexp.MustCompile(`(?s)(<snapshotId>` + regexp.QuoteMeta(id) + `</snapshotId>.*?)<status>[^<]*</status>(.*?)<progress>[^<]*</progress>`)
	return replaceFirstMatch(re, body, "${1}<status>"+state+"</status><statusMessage>"+message+"</statusMessage>${2}<progress>"+progress+"</progress>")
}

// WithVolumeState sets the state of volume id in a DescribeVolumes answer.
func WithVolumeState(body, id, state string) string {
	re := regexp.MustCompile(`(?s)(<volumeId>` + regexp.QuoteMeta(id) + `</volumeId>.*?)<status>[^<]*</status>`)
	return replaceFirstMatch(re, body, "${1}<status>"+state+"</status>")
}

// WithAttachmentState sets the state of volume id's attachment in a
// DescribeVolumes answer.
func WithAttachmentState(body, id, state string) string {
	re := regexp.MustCompile(`(?s)(<attachmentSet><item><volumeId>` + regexp.QuoteMeta(id) + `</volumeId>.*?)<status>[^<]*</status>`)
	return replaceFirstMatch(re, body, "${1}<status>"+state+"</status>")
}

// replaceFirstMatch replaces the first match of re in s by repl (with
// $1...).
func replaceFirstMatch(re *regexp.Regexp, s, repl string) string {
	m := re.FindStringSubmatchIndex(s)
	if m == nil {
		return s
	}
	return s[:m[0]] + string(re.ExpandString(nil, repl, s, m)) + s[m[1]:]
}

// FakeIMDS serves, with IMDSv2 tokens, the instance identity document of
// instanceID in availability zone az until t ends, and returns its
// endpoint, for AWS_EC2_METADATA_SERVICE_ENDPOINT.
func FakeIMDS(t testing.TB, instanceID, az string) string {
	region := strings.TrimRight(az, "abcdefghijklmnopqrstuvwxyz")
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
		io.WriteString(w, "token")
	})
	mux.HandleFunc("GET /latest/dynamic/instance-identity/document", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"instanceId": %q, "availabilityZone": %q, "region": %q}`, instanceID, az, region)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// FastSnapshotRestores returns an answer to DescribeFastSnapshotRestores
// (which moto lacks; see EC2Proxy.Answer) that reports each snapshot of
// states with its Fast Snapshot Restore state (enabled, optimizing, ...)
// in availability zone az.
func FastSnapshotRestores(az string, states map[string]string) func(url.Values) string {
	return func(url.Values) string {
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<DescribeFastSnapshotRestoresResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>proxy</requestId><fastSnapshotRestoreSet>`)
		for _, id := range slices.Sorted(maps.Keys(states)) {
			fmt.Fprintf(&b, "<item><snapshotId>%s</snapshotId><availabilityZone>%s</availabilityZone><state>%s</state><ownerId>123456789012</ownerId></item>", id, az, states[id])
		}
		b.WriteString("</fastSnapshotRestoreSet></DescribeFastSnapshotRestoresResponse>")
		return b.String()
	}
}
