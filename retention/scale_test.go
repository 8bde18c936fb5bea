package retention

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// TestScale (WALSNAP_TEST_SCALE=1): a repository of 100,000 WAL segments
// on MinIO, all older than its one backup. It reports how long the dry
// run takes (bound by listing) and how many objects a second the delete
// removes, beside the same MinIO's raw DeleteObjects rate (1,000 keys a
// request, as many requests at once as the delete makes, just before and
// just after it, and one at a time) on as many objects of the same key
// shape, measured in the same run; the delete must reach 80% of the mean
// raw rate at the same concurrency. (Not parallel: the SDK takes
// the bucket's credentials from the environment.)
func TestScale(t *testing.T) {
	if os.Getenv("WALSNAP_TEST_SCALE") != "1" {
		t.Skip("WALSNAP_TEST_SCALE=1 runs the 100,000-object retention benchmark")
	}
	const n = 100000
	ctx := t.Context()
	env := testrig.S3(t)
	env.Setenv(t)
	loc, err := config.ParseLocation("s3://" + env.Bucket + "/db")
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, loc, config.S3{Endpoint: env.Endpoint, Region: env.Region, PathStyle: true, Checksums: config.ChecksumsWhenSupported, MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	const sys = 7301234567890123456
	if _, err := r.InitIdentity(ctx, repo.Identity{SystemID: sys, SegmentSize: segSize, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(env.Region))
	if err != nil {
		t.Fatal(err)
	}
	raw := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint, o.UsePathStyle = aws.String(env.Endpoint), true })
	// The raw objects have keys of the same shape as the WAL objects'.
	rawKey := func(i int) string { return "raw/" + repo.WALKey(seg(1, uint64(i+1)), "") }

	fillStart := time.Now()
	parallel(t, n, func(i int) error {
		name := seg(1, uint64(i+1))
		sum := sha256.Sum256([]byte(name))
		if _, err := r.PutWAL(ctx, name, none, []byte(name), hex.EncodeToString(sum[:]), len(name)); err != nil {
			return err
		}
		_, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String(rawKey(i)), Body: bytes.NewReader([]byte(name))})
		return err
	})
	t.Logf("filled %d WAL objects and %d raw objects in %s", n, n, time.Since(fillStart).Round(time.Millisecond))
	last := wal.Segment{TLI: 1, No: n + 1}
	m := &manifest.Manifest{ID: "B1", Provider: manifest.ProviderFiles, Status: manifest.StatusComplete, Timeline: 1,
		StartLSN: last.StartLSN(segSize) + 0x28, StopLSN: last.StartLSN(segSize) + 0x100, StartWAL: last.Name(segSize), StopWAL: last.Name(segSize),
		StartTime: time.Now(), StopTime: time.Now(), SystemID: sys, SegmentSize: segSize, BackupLabel: "x\n", Payload: []byte(`{"parts":[]}`)}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutWAL(ctx, last.Name(segSize), none, []byte("x"), hex.EncodeToString(make([]byte, 32)), 1); err != nil {
		t.Fatal(err)
	}

	rawRate := func(concurrency, from, to int) float64 {
		start := time.Now()
		var batches [][]types.ObjectIdentifier
		for i := from; i < to; i += 1000 {
			var b []types.ObjectIdentifier
			for j := i; j < min(i+1000, to); j++ {
				b = append(b, types.ObjectIdentifier{Key: aws.String(rawKey(j))})
			}
			batches = append(batches, b)
		}
		next := make(chan []types.ObjectIdentifier)
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for b := range next {
					out, err := raw.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(env.Bucket), Delete: &types.Delete{Objects: b, Quiet: aws.Bool(true)}})
					if err != nil || len(out.Errors) > 0 {
						t.Errorf("raw DeleteObjects: %v %v", err, out)
					}
				}
			})
		}
		for _, b := range batches {
			next <- b
		}
		close(next)
		wg.Wait()
		return float64(to-from) / time.Since(start).Seconds()
	}
	// The raw rate (4 requests at once, as storage/s3 DeleteMany keeps in
	// flight) just before and just after the delete, on a quarter of the
	// raw objects each; then one request at a time, on the rest.
	before := rawRate(4, 0, n/4)

	o := Options{Repo: r, Policy: Policy{Full: 1}}
	start := time.Now()
	p, err := Run(ctx, o, true)
	if err != nil {
		t.Fatal(err)
	}
	plan := time.Since(start)
	if len(p.walGone) != n {
		t.Fatalf("the dry run would delete %d WAL files, want %d", len(p.walGone), n)
	}
	start = time.Now()
	if err := Execute(ctx, o, p); err != nil {
		t.Fatal(err)
	}
	del := time.Since(start)
	rate := float64(n) / del.Seconds()
	files, err := r.ListWAL(ctx, 0)
	if err != nil || len(files) != 1 || files[0].Name != last.Name(segSize) {
		t.Fatalf("left: %d WAL files, %v", len(files), err)
	}

	after := rawRate(4, n/4, n/2)
	seq := rawRate(1, n/2, n)
	conc := (before + after) / 2
	t.Logf("%d WAL objects on MinIO: dry run (listing and plan) %s; delete %s, %.0f objects/s; raw DeleteObjects of 1,000 keys, 4 at once: %.0f objects/s before the delete, %.0f after; one at a time: %.0f objects/s; delete/raw (4 at once) %.0f%%",
		n, plan.Round(time.Millisecond), del.Round(time.Millisecond), rate, before, after, seq, 100*rate/conc)
	if rate < 0.8*conc {
		t.Errorf("the delete removed %.0f objects/s, under 80%% of the raw %.0f objects/s", rate, conc)
	}
}

// parallel runs f(0..n-1), 64 at a time, and fails t on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
