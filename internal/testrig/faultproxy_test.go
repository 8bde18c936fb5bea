package testrig

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// faultBody is what the test server sends for GET /<anything>: 1 MiB of
// pseudo-random bytes.
var faultBody = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// faultServer serves faultBody on GET and, on PUT, answers with how many
// body bytes it could read; each PUT's count is also sent on puts.
func faultServer(t *testing.T) (addr string, puts chan int64) {
	puts = make(chan int64, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			n, _ := io.Copy(io.Discard, r.Body)
			puts <- n
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Content-Length", "1048576")
			w.Write(faultBody)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), puts
}

// freshClient makes one connection per request, so that a fault on one
// connection is seen by exactly one request.
func freshClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func getAll(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func TestFaultProxyForwards(t *testing.T) {
	addr, puts := faultServer(t)
	p := StartFaultProxy(t, addr)
	c := &http.Client{} // keep-alive: several exchanges on one connection
	for range 3 {
		got, err := getAll(c, p.URL()+"/x")
		if err != nil || !bytes.Equal(got, faultBody) {
			t.Fatalf("GET through the proxy: %d bytes, %v", len(got), err)
		}
		req, _ := http.NewRequest(http.MethodPut, p.URL()+"/y", bytes.NewReader(faultBody))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := <-puts; n != int64(len(faultBody)) {
			t.Fatalf("PUT through the proxy: server read %d bytes", n)
		}
	}
	if n := p.Count(FaultAccepted); n != 1 {
		t.Errorf("%d connections accepted for keep-alive exchanges, want 1", n)
	}
}

func TestFaultProxyResetMidBody(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.Arm(FaultRule{Action: Reset, After: 100000, Times: 1, Match: func(r *http.Request) bool { return r.URL.Path == "/b" }})
	c := freshClient()
	if got, err := getAll(c, p.URL()+"/a"); err != nil || !bytes.Equal(got, faultBody) {
		t.Fatalf("GET /a (not matched): %d bytes, %v", len(got), err)
	}
	// A reset may discard bytes that reached the client but were not read.
	got, err := getAll(c, p.URL()+"/b")
	if err == nil || len(got) > 100000 || !bytes.Equal(got, faultBody[:len(got)]) {
		t.Fatalf("GET /b: %d bytes, err %v; want at most the first 100000, then an error", len(got), err)
	}
	t.Logf("client saw: %v", err)
	if got, err := getAll(c, p.URL()+"/b"); err != nil || !bytes.Equal(got, faultBody) {
		t.Fatalf("GET /b after the rule expired: %d bytes, %v", len(got), err)
	}
	if n := p.Count("reset"); n != 1 {
		t.Errorf("reset count %d, want 1", n)
	}
}

func TestFaultProxyUploadReset(t *testing.T) {
	addr, puts := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.Arm(FaultRule{Action: Reset, Upload: true, After: 5000, Times: 1})
	c := freshClient()
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/y", bytes.NewReader(faultBody))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("PUT with an upload reset: %s", resp.Status)
	}
	select {
	case n := <-puts:
		if n > 5000 {
			t.Fatalf("server read %d body bytes, more than the 5000 forwarded", n)
		}
	default: // the server saw the reset before its handler ran
	}
	if n := p.Count("reset-upload"); n != 1 {
		t.Errorf("reset-upload count %d, want 1", n)
	}
}

// TestFaultProxyExpectContinue: a 100 Continue is not the response whose
// body a rule counts.
func TestFaultProxyExpectContinue(t *testing.T) {
	addr, puts := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.Arm(FaultRule{Action: Flip, After: 0, Times: 1})
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	req, _ := http.NewRequest(http.MethodPut, p.URL()+"/y", bytes.NewReader(faultBody))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := <-puts; n != int64(len(faultBody)) {
		t.Fatalf("server read %d bytes", n)
	}
	if resp.StatusCode != http.StatusOK || p.Count("flip") != 0 {
		t.Fatalf("status %s, %d flips: the rule fired on the bodiless response", resp.Status, p.Count("flip"))
	}
	got, err := getAll(c, p.URL()+"/x")
	if err != nil || len(got) != len(faultBody) || got[0] != faultBody[0]^0xff || !bytes.Equal(got[1:], faultBody[1:]) {
		t.Fatalf("GET after the PUT: %d bytes, %v; want the first byte flipped", len(got), err)
	}
}

func TestFaultProxyStallAndResetAll(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.Arm(FaultRule{Action: Stall, After: 70000, Times: 1})
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := getAll(freshClient(), p.URL()+"/x")
		done <- result{b, err}
	}()
	p.WaitCount(t, "stall", 1, time.Minute)
	select {
	case r := <-done:
		t.Fatalf("GET finished during a stall: %d bytes, %v", len(r.data), r.err)
	default:
	}
	p.ResetAll()
	r := <-done
	if r.err == nil || len(r.data) > 70000 || !bytes.Equal(r.data, faultBody[:len(r.data)]) {
		t.Fatalf("stalled GET after ResetAll: %d bytes, %v; want at most the first 70000, then an error", len(r.data), r.err)
	}
	if p.Count(FaultDropped) < 1 {
		t.Error("ResetAll counted no dropped connection")
	}
}

func TestFaultProxyFlip(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	disarm := p.Arm(FaultRule{Action: Flip, After: 654321})
	for range 2 {
		got, err := getAll(freshClient(), p.URL()+"/x")
		if err != nil || len(got) != len(faultBody) {
			t.Fatalf("GET: %d bytes, %v", len(got), err)
		}
		want := bytes.Clone(faultBody)
		want[654321] ^= 0xff
		if !bytes.Equal(got, want) {
			t.Fatal("body is not the original with byte 654321 inverted")
		}
	}
	disarm()
	if got, err := getAll(freshClient(), p.URL()+"/x"); err != nil || !bytes.Equal(got, faultBody) {
		t.Fatalf("GET after disarm: %d bytes, %v", len(got), err)
	}
	if n := p.Count("flip"); n != 2 {
		t.Errorf("flip count %d, want 2", n)
	}
}

func TestFaultProxyLatency(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.SetLatency(150 * time.Millisecond)
	start := time.Now()
	if _, err := getAll(freshClient(), p.URL()+"/x"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("GET took %v with 150ms each way", d)
	}
	if n := p.Count(FaultDelayed); n != 2 {
		t.Errorf("%d messages delayed, want 2 (request and response)", n)
	}
	p.Clear()
	before := p.Count(FaultDelayed)
	if _, err := getAll(freshClient(), p.URL()+"/x"); err != nil {
		t.Fatal(err)
	}
	if n := p.Count(FaultDelayed); n != before {
		t.Errorf("messages delayed after Clear")
	}
}

func TestFaultProxyBlackhole(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	keepAlive := &http.Client{}
	if _, err := getAll(keepAlive, p.URL()+"/warm"); err != nil {
		t.Fatal(err)
	}
	p.Blackhole(true)
	done := make(chan error, 2)
	get := func(c *http.Client) {
		got, err := getAll(c, p.URL()+"/x")
		if err == nil && !bytes.Equal(got, faultBody) {
			err = errors.New("wrong body")
		}
		done <- err
	}
	go get(keepAlive)     // an open connection
	go get(freshClient()) // a new one
	p.WaitCount(t, FaultBlackholed, 2, time.Minute)
	select {
	case err := <-done:
		t.Fatalf("a GET finished inside the blackhole: %v", err)
	default:
	}
	p.Blackhole(false)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("GET after the blackhole lifted: %v", err)
		}
	}
}

func TestFaultProxyResetOnAccept(t *testing.T) {
	addr, _ := faultServer(t)
	p := StartFaultProxy(t, addr)
	p.ResetOnAccept(1)
	if _, err := getAll(freshClient(), p.URL()+"/x"); err == nil {
		t.Fatal("GET on a connection reset at accept succeeded")
	}
	if got, err := getAll(freshClient(), p.URL()+"/x"); err != nil || !bytes.Equal(got, faultBody) {
		t.Fatalf("next GET: %d bytes, %v", len(got), err)
	}
	if n := p.Count(FaultAcceptReset); n != 1 {
		t.Errorf("accept-reset count %d, want 1", n)
	}
}

func TestFaultProxyTargetDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	p := StartFaultProxy(t, down)
	if _, err := getAll(freshClient(), p.URL()+"/x"); err == nil {
		t.Fatal("GET to a target that is down succeeded")
	}
	if n := p.Count(FaultDialFailed); n != 1 {
		t.Errorf("dial-failed count %d, want 1", n)
	}
	addr, _ := faultServer(t)
	p.SetTarget(addr)
	if got, err := getAll(freshClient(), p.URL()+"/x"); err != nil || !bytes.Equal(got, faultBody) {
		t.Fatalf("GET after SetTarget: %d bytes, %v", len(got), err)
	}
	if s := p.StatsString(); !strings.Contains(s, "dial-failed=1") {
		t.Errorf("StatsString() = %q", s)
	}
}

// TestStartMinIOKillRestart: a private MinIO dies with SIGKILL and comes
// back on the same address with its data.
func TestStartMinIOKillRestart(t *testing.T) {
	m := StartMinIO(t)
	c := m.Env.client()
	key := "k"
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &m.Env.Bucket, Key: &key, Body: bytes.NewReader([]byte("kept"))}); err != nil {
		t.Fatal(err)
	}
	m.Kill(t)
	if _, err := net.Dial("tcp", m.Addr()); err == nil {
		t.Fatal("the killed server still accepts connections")
	}
	m.Restart(t)
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &m.Env.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "kept" {
		t.Fatalf("object after restart = %q", b)
	}
}
