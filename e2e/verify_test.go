package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// verifyJSON runs walsnap verify --json with args and returns its result
// and whether it exited 0.
func (c *cluster) verifyJSON(t *testing.T, args ...string) (*inspect.VerifyResult, bool) {
	t.Helper()
	cmd := c.command(append([]string{"verify", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var res inspect.VerifyResult
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
		t.Fatalf("walsnap verify --json %v: %v (%v)\nstdout:\n%s\nstderr:\n%s", args, jerr, err, out.String(), errb.String())
	}
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return &res, err == nil
}

// flip flips the last byte of a local repository's object file (its
// payload) and returns the function that flips it back.
func flip(t *testing.T, path string) (undo func()) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xFF
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		b[len(b)-1] ^= 0xFF
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerify: walsnap verify on a real repository (PostgreSQL 15, a files
// backup, a timeline switch made by a restore that archives into the same
// repository): clean with the window per timeline; a corrupted WAL
// segment and a corrupted part found by --deep only; a deleted segment
// reported as exactly that range.
func TestVerify(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := newCluster(t, clusterOptions{localRepo: true, config: "backup:\n  wal_timeout: 1m\n"})
	c.pg.Exec(t, "CREATE TABLE v AS SELECT generate_series(1, 10000) AS i")
	id := strings.Fields(c.walsnap(t, "backup", "--fast"))[1]
	for i := range 4 {
		c.pg.Exec(t, fmt.Sprintf("INSERT INTO v SELECT generate_series(1, 1000) + %d", i))
		c.pg.Exec(t, "SELECT pg_switch_wal()")
	}
	c.pg.Exec(t, "INSERT INTO v VALUES (0)")
	target := c.pg.QueryString(t, "SELECT pg_current_wal_lsn()::text")
	c.archiveAll(t)
	r := c.repo(t)
	m, err := r.Manifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	out := c.walsnap(t, "verify")
	t.Logf("walsnap verify:\n%s", out)
	for _, want := range []string{"backup " + id + " (files, complete): ", "; WAL " + m.StartWAL + " to " + m.StopWAL + " complete", "  timeline 1: any point from ", "verify: ok"} {
		if !strings.Contains(out, want) {
			t.Fatalf("walsnap verify output lacks %q:\n%s", want, out)
		}
	}

	// A timeline switch: a restore to the last archived segment, promoted,
	// archives timeline 2 into the same repository.
	restored := c.restore(t, "", "--backup", id, "--target-lsn", target, "--target-action", "promote", "--archive-mode", "preserve")
	restored.exec("CREATE TABLE on_tl2 AS SELECT 1 AS x")
	restored.archiveAll()
	res, ok := c.verifyJSON(t)
	if !ok || !res.OK || len(res.Backups) != 1 {
		t.Fatalf("verify after a timeline switch: %q", res.Problems)
	}
	var tls []uint32
	for _, w := range res.Backups[0].Windows {
		tls = append(tls, w.Timeline)
		if !w.From.Equal(m.StopTime) || w.To.Before(w.From) {
			t.Errorf("window %+v: want from the backup's stop %v", w, m.StopTime)
		}
	}
	if !slices.Equal(tls, []uint32{1, 2}) || !strings.HasPrefix(res.Backups[0].Windows[1].ToSegment, "00000002") {
		t.Fatalf("windows on timelines %v: %+v", tls, res.Backups[0].Windows)
	}
	stored, err := r.LatestResult(ctx, repo.ResultVerify)
	if err != nil || !bytes.Contains(stored.Data, []byte(`"ok":true`)) {
		t.Fatalf("the result stored in the repository: %s, %v", stored.Data, err)
	}

	deep, ok := c.verifyJSON(t, "--deep")
	if !ok || deep.Read.WAL < 6 || deep.Read.Parts == 0 {
		t.Fatalf("deep verify of a clean repository: %+v %q", deep.Read, deep.Problems)
	}

	// The segment after the stop, on timeline 1, and a part.
	stop, _ := wal.ParseSegmentName(m.StopWAL, 16<<20)
	victim := stop.Next().Next().Name(16 << 20)
	files, err := r.ListWAL(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(files, func(f repo.WALFile) bool { return f.Name == victim })
	if i < 0 {
		t.Fatalf("segment %s is not in the repository", victim)
	}
	walPath := filepath.Join(c.repoDir, repo.WALKey(victim, files[i].Codec.Suffix()))
	p, err := manifest.PayloadOf[manifest.FilesPayload](m)
	if err != nil {
		t.Fatal(err)
	}
	part := p.Parts[0].Key
	undoWAL, undoPart := flip(t, walPath), flip(t, filepath.Join(c.repoDir, part))
	if res, ok := c.verifyJSON(t); !ok || !res.OK {
		t.Fatalf("without --deep, damage that keeps sizes is not visible, yet: %q", res.Problems)
	}
	deep, ok = c.verifyJSON(t, "--deep")
	if ok || len(deep.Problems) != 2 || !strings.HasPrefix(deep.Problems[0], "WAL "+victim+": ") || !strings.HasPrefix(deep.Problems[1], "backup "+id+": part "+part+": ") {
		t.Fatalf("deep verify of a corrupted segment and part: %q", deep.Problems)
	}
	undoWAL()
	undoPart()

	// A deleted segment is exactly that gap.
	aside := walPath + ".aside"
	if err := os.Rename(walPath, aside); err != nil {
		t.Fatal(err)
	}
	out, err = c.run("verify")
	wantLine := "problem: WAL timeline 1: segment " + victim + " is missing"
	if err == nil || !strings.Contains(out, wantLine+"\n") || strings.Count(out, "problem:") != 1 || !strings.Contains(out, "verify found 1 problems") {
		t.Fatalf("verify with %s deleted: %v\n%s", victim, err, out)
	}
	res, _ = c.verifyJSON(t)
	if want := []inspect.GapRange{{Timeline: 1, First: victim, Last: victim, Count: 1}}; !slices.Equal(res.Gaps, want) {
		t.Fatalf("gaps %+v, want %+v", res.Gaps, want)
	}
	for _, w := range res.Backups[0].Windows {
		if w.ToSegment != stop.Next().Name(16<<20) {
			t.Errorf("timeline %d window ends at %s, want at the segment before the gap", w.Timeline, w.ToSegment)
		}
	}
	if err := os.Rename(aside, walPath); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyEBSSnapshot: an EBS backup whose snapshot was deleted is
// reported (snapshots described by moto's EC2 API).
func TestVerifyEBSSnapshot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	moto := testrig.Moto(t)
	ec := moto.EC2()
	_, az := testrig.LaunchInstance(t, ec, "/dev/sda1")
	vol := testrig.NewVolume(t, ec, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(8), VolumeType: types.VolumeTypeGp3})
	var snaps []manifest.EBSSnapshot
	for _, mount := range []string{"/srv/pg", "/srv/wal"} {
		out, err := ec.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.SnapshotId)
		t.Cleanup(func() {
			ec.DeleteSnapshot(testrig.CleanupContext(t), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		})
		snaps = append(snaps, manifest.EBSSnapshot{SnapshotID: id, VolumeID: vol, MountPoint: mount, SizeGiB: 8})
	}
	if _, err := ec.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snaps[1].SnapshotID)}); err != nil {
		t.Fatal(err)
	}

	// A repository with the backup's WAL, as wal-push and backup leave it.
	dir := t.TempDir()
	r, err := repo.Open(ctx, config.Location{Scheme: "file", Dir: dir}, config.S3{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.InitIdentity(ctx, repo.Identity{SystemID: 42, SegmentSize: 16 << 20, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	none, _ := compress.Parse("none")
	for no := uint64(2); no <= 4; no++ {
		data := []byte(strconv.FormatUint(no, 10))
		if _, err := r.PutWAL(ctx, wal.Segment{TLI: 1, No: no}.Name(16<<20), none, data, strings.Repeat("0", 64), len(data)); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{ID: "20261124T020000Z", Provider: manifest.ProviderEBS, Status: manifest.StatusComplete, Timeline: 1,
		StartLSN: wal.LSN(2<<24 + 0x28), StopLSN: wal.LSN(3<<24 + 0x100), StartWAL: wal.Segment{TLI: 1, No: 2}.Name(16 << 20),
		StopWAL: wal.Segment{TLI: 1, No: 3}.Name(16 << 20), StopTime: time.Now(), SystemID: 42, SegmentSize: 16 << 20, BackupLabel: "x"}
	if err := m.SetPayload(manifest.EBSPayload{Snapshots: snaps}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	conf := fmt.Sprintf("repo: file://%s\nebs:\n  endpoint: %s\n  region: %s\n", dir, moto.Endpoint, moto.Region)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testrig.Walsnap(t), "--config", cfg, "verify")
	cmd.Env = append(os.Environ(), moto.Environ()...)
	out, err := cmd.CombinedOutput()
	want := fmt.Sprintf("problem: backup %s: EBS snapshot %s of %s (/srv/wal) does not exist\n", m.ID, snaps[1].SnapshotID, vol)
	if err == nil || !strings.Contains(string(out), want) || strings.Count(string(out), "problem:") != 1 {
		t.Fatalf("verify with a deleted snapshot: %v\n%s\nwant: %s", err, out, want)
	}
}

// requestCounter is a reverse proxy in front of the S3 server that counts
// the requests by kind: listings, and reads and writes of single objects.
type requestCounter struct {
	lists, reads, writes atomic.Int64
	url                  string
}

func countRequests(t *testing.T, endpoint string) *requestCounter {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rc := &requestCounter{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
			rc.lists.Add(1)
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			rc.reads.Add(1)
		default:
			rc.writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}

// TestVerifyScale: verify without --deep is bound by listing: its requests
// are the listing pages, a handful of reads (identity, manifests, the
// previous results) and one write (its result), however many WAL objects
// the repository holds. WALSNAP_TEST_SCALE=1 makes it 100,000 objects and
// reports the time. (Not parallel: the in-process S3 client takes its
// credentials from the environment.)
func TestVerifyScale(t *testing.T) {
	n := 2100 // three listing pages
	if os.Getenv("WALSNAP_TEST_SCALE") == "1" {
		n = 100000
	}
	ctx := t.Context()
	s3 := testrig.S3(t)
	s3.Setenv(t)
	loc, err := config.ParseLocation("s3://" + s3.Bucket + "/db")
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, loc, config.S3{Endpoint: s3.Endpoint, Region: s3.Region, PathStyle: true, Checksums: config.ChecksumsWhenSupported, MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.InitIdentity(ctx, repo.Identity{SystemID: 42, SegmentSize: 16 << 20, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{ID: "20261124T020000Z", Provider: manifest.ProviderFiles, Status: manifest.StatusComplete, Timeline: 1,
		StartLSN: wal.LSN(1<<24 + 0x28), StopLSN: wal.LSN(2<<24 + 0x100), StartWAL: wal.Segment{TLI: 1, No: 1}.Name(16 << 20),
		StopWAL: wal.Segment{TLI: 1, No: 2}.Name(16 << 20), StopTime: time.Now(), SystemID: 42, SegmentSize: 16 << 20, BackupLabel: "x"}
	if err := m.SetPayload(manifest.FilesPayload{Parts: []manifest.Part{}}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	none, _ := compress.Parse("none")
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for no := next.Add(1); no <= int64(n) && ctx.Err() == nil; no = next.Add(1) {
				data := []byte(strconv.FormatInt(no, 10))
				if _, err := r.PutWAL(ctx, wal.Segment{TLI: 1, No: uint64(no)}.Name(16<<20), none, data, strings.Repeat("0", 64), len(data)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("stored %d WAL objects in %v", n, time.Since(began).Round(time.Millisecond))

	counter := countRequests(t, s3.Endpoint)
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	conf := fmt.Sprintf("repo: s3://%s/db\ns3:\n  endpoint: %s\n  path_style: true\n  region: %s\n", s3.Bucket, counter.url, s3.Region)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cluster{bin: testrig.Walsnap(t), cfg: cfg, env: s3.Environ()}
	began = time.Now()
	res, ok := c.verifyJSON(t)
	took := time.Since(began)
	last := wal.Segment{TLI: 1, No: uint64(n)}.Name(16 << 20)
	if !ok || !res.OK || res.WALFiles != n || len(res.Backups) != 1 || len(res.Backups[0].Windows) != 1 || res.Backups[0].Windows[0].ToSegment != last {
		t.Fatalf("verify of %d segments: ok %v, %d files, %+v, %q", n, ok, res.WALFiles, res.Backups, res.Problems)
	}
	pages := int64(n/1000 + 1)
	lists, reads, writes := counter.lists.Load(), counter.reads.Load(), counter.writes.Load()
	t.Logf("verify of %d WAL objects on MinIO: %v (%d list requests, %d object reads, %d writes)", n, took.Round(time.Millisecond), lists, reads, writes)
	if lists > pages+6 || reads > 6 || writes != 1 {
		t.Fatalf("verify made %d list requests (%d pages of WAL), %d object reads and %d writes: it is not bound by listing", lists, pages, reads, writes)
	}
}
