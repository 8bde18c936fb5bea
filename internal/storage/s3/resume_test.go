package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsnap/walsnap/internal/storage/storagetest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// faultStore returns a Store that reaches the test MinIO through a fault
// proxy, and the proxy.
func faultStore(t *testing.T, mode string, maxAttempts int) (*Store, *testrig.FaultProxy) {
	t.Helper()
	o := minio(t)
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := testrig.StartFaultProxy(t, u.Host)
	o.Endpoint, o.Checksums, o.MaxAttempts = p.URL(), mode, maxAttempts
	return mustNew(t, o), p
}

// getOf matches GETs of key in s's bucket; ranged selects resumed ones
// (true), first ones (false) or both (nil).
func getOf(s *Store, key string, ranged *bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Path == "/"+s.bucket+"/"+s.prefix+key &&
			(ranged == nil || *ranged == (r.Header.Get("Range") != ""))
	}
}

var yes, no = true, false

// gets records the Range and If-Match headers of the GETs of a key.
type gets struct {
	mu   sync.Mutex
	list []string
}

func (g *gets) rule(s *Store, key string) testrig.FaultRule {
	match := getOf(s, key, nil)
	return testrig.FaultRule{Times: 1, Match: func(r *http.Request) bool {
		if match(r) {
			g.mu.Lock()
			g.list = append(g.list, r.Header.Get("Range")+" "+r.Header.Get("If-Match"))
			g.mu.Unlock()
		}
		return false // records, never fires
	}}
}

func (g *gets) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.list, "|")
}

func readAll(t *testing.T, s *Store, ctx context.Context, key string) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestGetResumesAfterReset: connections reset mid-body; the reader goes
// on with ranged GETs conditional on the ETag and returns the exact bytes,
// in both checksum modes (issue 7, defect 3).
func TestGetResumesAfterReset(t *testing.T) {
	for _, mode := range []string{ChecksumsWhenSupported, ChecksumsWhenRequired} {
		t.Run(mode, func(t *testing.T) {
			s, p := faultStore(t, mode, 5)
			data := storagetest.Payload(7, 3<<20)
			storagetest.Put(t, s, "wal/k", data, nil)
			var g gets
			p.Arm(g.rule(s, "wal/k"))
			p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 1 << 20, Times: 2, Match: getOf(s, "wal/k", nil)})

			rc, info, err := s.Get(t.Context(), "wal/k")
			if err != nil {
				t.Fatal(err)
			}
			if alg := rc.(*resumingBody).sumAlg; (mode == ChecksumsWhenSupported) != (alg == "CRC32C") {
				t.Errorf("%s: full-object checksum %q", mode, alg)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) || info.Size != int64(len(data)) {
				t.Fatalf("read %d bytes (size %d), err %v; want the exact %d bytes", len(got), info.Size, err, len(data))
			}
			if n := p.Count("reset"); n != 2 {
				t.Errorf("%d resets, want 2", n)
			}
			head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String("wal/k")})
			if err != nil {
				t.Fatal(err)
			}
			// The first GET, then two that resume further on (a reset may
			// lose bytes that had reached the client: at or before 1 MiB
			// and 2 MiB), each conditional on the first response's ETag.
			reqs := strings.Split(g.String(), "|")
			last := int64(0)
			for i, r := range reqs {
				var off int64
				var etag string
				_, err := fmt.Sscanf(r, "bytes=%d- %s", &off, &etag)
				if i == 0 && r != " " || i > 0 && (err != nil || etag != *head.ETag || off <= last || off > int64(i)<<20) {
					t.Fatalf("GETs (Range If-Match): %q; want a plain one, then two resuming after bytes 0 < n <= 1 MiB < m <= 2 MiB with If-Match %s", reqs, *head.ETag)
				}
				last = off
			}
			if len(reqs) != 3 {
				t.Fatalf("GETs (Range If-Match): %q; want 3", reqs)
			}
		})
	}
}

// TestGetRefusesReplacedObject: the object is replaced (or deleted) while
// a transfer is cut; the reader fails instead of joining the old object's
// first bytes to the new one's rest.
func TestGetRefusesReplacedObject(t *testing.T) {
	for _, what := range []string{"replaced", "deleted"} {
		t.Run(what, func(t *testing.T) {
			s, p := faultStore(t, ChecksumsWhenSupported, 5)
			old := storagetest.Payload(1, 2<<20)
			storagetest.Put(t, s, "k", old, nil)
			p.Arm(testrig.FaultRule{Action: testrig.Stall, After: 1 << 20, Times: 1, Match: getOf(s, "k", &no)})
			type result struct {
				data []byte
				err  error
			}
			done := make(chan result, 1)
			go func() {
				rc, _, err := s.Get(context.Background(), "k")
				if err != nil {
					done <- result{nil, err}
					return
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				done <- result{b, err}
			}()
			p.WaitCount(t, "stall", 1, time.Minute)
			if err := s.Delete(t.Context(), "k"); err != nil {
				t.Fatal(err)
			}
			if what == "replaced" {
				storagetest.Put(t, s, "k", storagetest.Payload(2, 2<<20), nil)
			}
			p.ResetAll() // the stalled transfer is cut now
			r := <-done
			if !errors.Is(r.err, errObjectChanged) {
				t.Fatalf("read of a %s object: %d bytes, err %v; want errObjectChanged", what, len(r.data), r.err)
			}
			if len(r.data) > 1<<20 || !bytes.Equal(r.data, old[:len(r.data)]) {
				t.Fatalf("read returned %d bytes that are not a prefix of the original object", len(r.data))
			}
			t.Logf("%s: %v", what, r.err)
		})
	}
}

// TestGetGivesUpAfterMaxAttempts: a transfer cut every time fails after
// s3.max_attempts transfers, with the cause.
func TestGetGivesUpAfterMaxAttempts(t *testing.T) {
	s, p := faultStore(t, ChecksumsWhenSupported, 3)
	storagetest.Put(t, s, "k", storagetest.Payload(3, 1<<20), nil)
	p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 100000, Match: getOf(s, "k", nil)})
	start := time.Now()
	got, err := readAll(t, s, t.Context(), "k")
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read with every transfer cut: %d bytes, err %v", len(got), err)
	}
	if n := p.Count("reset"); n != 3 {
		t.Errorf("%d transfers cut, want 3", n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v", d)
	}
	t.Logf("%v", err)
}

// TestGetResumesAfterStall: a transfer that stops sending is cut after
// the idle timeout and resumed.
func TestGetResumesAfterStall(t *testing.T) {
	s, p := faultStore(t, ChecksumsWhenSupported, 5)
	s.bodyIdle = 300 * time.Millisecond
	data := storagetest.Payload(4, 2<<20)
	storagetest.Put(t, s, "k", data, nil)
	p.Arm(testrig.FaultRule{Action: testrig.Stall, After: 1 << 20, Times: 1, Match: getOf(s, "k", nil)})
	got, err := readAll(t, s, t.Context(), "k")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read across a stall: %d bytes, %v", len(got), err)
	}
	if p.Count("stall") != 1 {
		t.Errorf("stall count %d", p.Count("stall"))
	}
}

// TestGetChecksumAcrossResume: with checksums "when_supported" the
// object's CRC32C is verified over the whole body, also when it came in
// several responses (a ranged response carries no checksum of its own).
func TestGetChecksumAcrossResume(t *testing.T) {
	for _, c := range []struct {
		what  string
		rules []testrig.FaultRule // the first for the first GET, the second for resumed ones
	}{
		{"one response", []testrig.FaultRule{{Action: testrig.Flip, After: 12345, Times: 1}}},
		{"in the resumed response", []testrig.FaultRule{
			{Action: testrig.Reset, After: 1 << 20, Times: 1},
			{Action: testrig.Flip, After: 4321, Times: 1},
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			s, p := faultStore(t, ChecksumsWhenSupported, 5)
			data := storagetest.Payload(5, 2<<20)
			storagetest.Put(t, s, "k", data, nil)
			for i, r := range c.rules {
				ranged := i > 0
				r.Match = getOf(s, "k", &ranged)
				p.Arm(r)
			}
			got, err := readAll(t, s, t.Context(), "k")
			if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("corrupted transfer: %d bytes, err %v; want a checksum mismatch", len(got), err)
			}
			if p.Count("flip") != 1 || p.Count("reset") != len(c.rules)-1 {
				t.Fatalf("faults: %s", p.StatsString())
			}
			t.Logf("%v", err)
		})
	}
}

// TestGetRespectsContext: a reader resuming again and again stops when
// its context ends.
func TestGetRespectsContext(t *testing.T) {
	s, p := faultStore(t, ChecksumsWhenSupported, 1000)
	storagetest.Put(t, s, "k", storagetest.Payload(6, 1<<20), nil)
	p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 1000, Match: getOf(s, "k", nil)})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		p.Wait(ctx, "reset", 3)
		cancel()
	}()
	_, err := readAll(t, s, ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}
