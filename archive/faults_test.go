package archive_test

// Fault-injection tests (issue 7, "Prove it"): a real PostgreSQL 15 that
// archives into MinIO through testrig.FaultProxy while connections are
// reset, delayed and blackholed, wal-push processes and MinIO itself are
// SIGKILLed; recoveries through the same proxy; and recoveries that meet a
// damaged spool file or a wrong object and must stop rather than promote
// early. Every wait is on an event (a proxy count, a server state), never
// a fixed sleep; the only timers are the length of a blackhole and the
// bounds after which a test fails.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	s3store "github.com/walsnap/walsnap/internal/storage/s3"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

const faultSegSize = 16 << 20

// faultPrefetchDir is where wal-fetch spools prefetched segments, inside
// pg_wal.
var faultPrefetchDir = filepath.Join(spool.DirName, "prefetch")

// --- helpers ---

// faultConfigDir returns a directory for config files and scripts that
// walsnap trusts whether it runs as root (the test) or as postgres
// (archive_command, restore_command): root's, mode 0755, in the temporary
// directory. Removed when t ends.
func faultConfigDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "walsnap-fault-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// faultConfig writes dir/file: a config for the repository at prefix in
// s's bucket, reached at endpoint, with more s3 settings and top-level
// YAML.
func faultConfig(t *testing.T, dir, file string, s testrig.S3Env, endpoint, prefix string, s3Lines []string, top string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "repo: s3://%s/%s\ns3:\n  endpoint: %s\n  path_style: true\n  region: %s\n", s.Bucket, prefix, endpoint, s.Region)
	for _, l := range s3Lines {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	b.WriteString(top)
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// faultHost returns the host:port of an endpoint URL.
func faultHost(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// faultStore opens the store of the repository at prefix directly (not
// through a proxy), with s's credentials in the test's environment.
func faultStore(t *testing.T, s testrig.S3Env, prefix string) *s3store.Store {
	t.Helper()
	s.Setenv(t)
	st, err := s3store.New(t.Context(), s3store.Options{Bucket: s.Bucket, Prefix: prefix, Endpoint: s.Endpoint, Region: s.Region, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// faultWALGet matches GETs of WAL objects: first ones (ranged false),
// resumed ones (true), or both (nil).
func faultWALGet(ranged *bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/wal/0") &&
			(ranged == nil || *ranged == (r.Header.Get("Range") != ""))
	}
}

var faultNotRanged = new(bool)

// faultWALPut matches uploads of WAL objects.
func faultWALPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/wal/0")
}

// faultIdentityGet matches reads of the repository identity.
func faultIdentityGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/walsnap.json")
}

// faultWalsnap runs the walsnap binary (as the test's user) and returns its
// exit status and stderr; safe in any goroutine.
func faultWalsnap(bin string, env []string, args ...string) (int, string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String(), nil
	}
	return 0, stderr.String(), err
}

// faultSegment returns a 16 MiB WAL segment of the test fixtures' cluster
// (a real first page, then compressible pseudo-random bytes) and its name.
func faultSegment(t *testing.T) (string, []byte) {
	t.Helper()
	name := "000000010000000000000002"
	head, err := os.ReadFile(filepath.Join("..", "testdata", "wal", "pg15-16mb", name+".head"))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, faultSegSize)
	copy(data, head)
	r := rand.New(rand.NewPCG(7, 7))
	for i := len(head); i < len(data); i++ {
		data[i] = "0123456789abcdef"[r.IntN(16)]
	}
	return name, data
}

// faultPoll calls cond until it returns true, failing t after timeout.
func faultPoll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultQuery runs sql on pg and returns the first column of the first row.
func faultQuery(pg *testrig.PG, sql string, args ...any) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	var s string
	err = c.QueryRow(ctx, sql, args...).Scan(&s)
	return s, err
}

// faultWaitPrefetcher waits until no prefetcher holds the spool of pgWAL,
// so that cleanup does not remove a directory under a running one.
func faultWaitPrefetcher(t *testing.T, pgWAL string) {
	t.Helper()
	lock := filepath.Join(pgWAL, faultPrefetchDir, ".lock")
	faultPoll(t, time.Minute, "end of the prefetcher", func() bool { return !fsutil.IsLocked(lock) })
}

// --- defect 3 at the wal-fetch level ---

// TestFaultWalFetchResetMidBody: a connection reset in the middle of the
// object's body is retried: wal-fetch exits 0 with the exact bytes (it
// exited 255 at once before; issue 7, defect 3). When every transfer is
// cut it still gives up within s3.max_attempts, with exit 255.
func TestFaultWalFetchResetMidBody(t *testing.T) {
	bin := testrig.Walsnap(t)
	s3 := testrig.S3(t)
	p := testrig.StartFaultProxy(t, faultHost(t, s3.Endpoint))
	dir := faultConfigDir(t)
	env := s3.Environ()
	name, data := faultSegment(t)
	pgWAL := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.Mkdir(pgWAL, 0o700); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(pgWAL, name)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	direct := faultConfig(t, dir, "direct.yaml", s3, s3.Endpoint, "fetch", nil, "")
	if code, stderr, err := faultWalsnap(bin, env, "--config", direct, "--push-ahead", "0", "wal-push", src); code != 0 || err != nil {
		t.Fatalf("wal-push: exit %d, %v: %s", code, err, stderr)
	}
	info, err := faultStore(t, s3, "fetch").Head(t.Context(), repo.WALKey(name, compress.Default.Suffix()))
	if err != nil || info.Size < 2<<20 {
		t.Fatalf("the object is %d bytes (%v); the test wants one of several MiB", info.Size, err)
	}
	dest := filepath.Join(pgWAL, "RECOVERYXLOG")

	for _, mode := range []string{"when_supported", "when_required"} {
		t.Run("one reset/"+mode, func(t *testing.T) {
			cfg := faultConfig(t, dir, mode+".yaml", s3, p.URL(), "fetch", []string{"checksums: " + mode}, "")
			before := p.Count("reset")
			disarm := p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 1 << 20, Times: 1, Match: faultWALGet(faultNotRanged)})
			defer disarm()
			os.Remove(dest)
			code, stderr, err := faultWalsnap(bin, env, "--config", cfg, "--fetch-prefetch", "0", "wal-fetch", name, dest)
			if code != 0 || err != nil {
				t.Fatalf("wal-fetch with one reset mid-body: exit %d, %v: %s", code, err, stderr)
			}
			if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("wal-fetch wrote %d bytes (%v) that are not the segment", len(got), err)
			}
			if n := p.Count("reset") - before; n != 1 {
				t.Fatalf("%d resets, want 1", n)
			}
		})
	}

	t.Run("every transfer cut", func(t *testing.T) {
		cfg := faultConfig(t, dir, "cut.yaml", s3, p.URL(), "fetch", []string{"max_attempts: 3"}, "")
		before := p.Count("reset")
		disarm := p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 256 << 10, Match: faultWALGet(nil)})
		defer disarm()
		os.Remove(dest)
		start := time.Now()
		code, stderr, err := faultWalsnap(bin, env, "--config", cfg, "--fetch-prefetch", "0", "wal-fetch", name, dest)
		if code != 255 || err != nil || !strings.Contains(stderr, "gave up after 3 attempts") {
			t.Fatalf("wal-fetch with every transfer cut: exit %d, %v: %s", code, err, stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("DEST exists after a failed fetch (%v)", err)
		}
		if n := p.Count("reset") - before; n != 3 {
			t.Errorf("%d transfers cut, want 3 (s3.max_attempts)", n)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("took %v to give up", d)
		}
		t.Logf("%s", strings.TrimSpace(stderr))
	})
}

// --- archiving under faults ---

// faultArchive is a PostgreSQL 15 archiving with wal-push into a private
// MinIO through a fault proxy, under a pgbench load, and the faults
// inflicted on it.
type faultArchive struct {
	t     *testing.T
	bin   string
	minio *testrig.MinIOServer
	proxy *testrig.FaultProxy
	pg    *testrig.PG
	cfg   string // wal-push's config, through the proxy
	keep  string // <segment> holds the SHA-256 of what PostgreSQL asked to archive
	pids  string // <pid> for each wal-push started

	pushKills, minioKills, blackholes int
	stopLoad                          context.CancelFunc
	loadDone                          chan error
}

const faultArchiveScript = `#!/bin/sh
# archive_command of TestFaultArchive: keeps aside the SHA-256 of each file
# PostgreSQL asks to archive and the pid, then becomes walsnap wal-push.
set -e
f=$1
n=${f##*/}
mkdir -p '%[1]s' '%[2]s'
sum=$(sha256sum "$f")
echo "${sum%%%% *}" >'%[1]s'/.$n.$$
mv '%[1]s'/.$n.$$ '%[1]s'/$n
echo $$ >'%[2]s'/$$
exec '%[3]s' --config '%[4]s' wal-push "$f"
`

// faultStartArchive starts the cluster and its load. keepWAL keeps every
// segment in pg_wal, to compare the fetched copies with byte for byte.
func faultStartArchive(t *testing.T, keepWAL bool, rate int) *faultArchive {
	return faultStartArchiveWith(t, keepWAL, rate, testrig.Walsnap(t))
}

// faultStartArchiveWith is faultStartArchive with archive_command running
// bin (walsnap or walsnap-pg).
func faultStartArchiveWith(t *testing.T, keepWAL bool, rate int, bin string) *faultArchive {
	a := &faultArchive{t: t, bin: bin}
	a.minio = testrig.StartMinIO(t)
	a.proxy = testrig.StartFaultProxy(t, a.minio.Addr())
	dir := faultConfigDir(t)
	work := testrig.WorkDir(t)
	a.keep, a.pids = filepath.Join(work, "keep"), filepath.Join(work, "pids")
	a.cfg = faultConfig(t, dir, "push.yaml", a.minio.Env, a.proxy.URL(), "pg15/main", nil, "push:\n  timeout: 2m\n  linger: 10s\n")
	script := filepath.Join(dir, "archive.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, faultArchiveScript, a.keep, a.pids, a.bin, a.cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := map[string]string{
		"archive_mode":       "on",
		"archive_command":    script + " %p",
		"max_wal_size":       "1GB",
		"synchronous_commit": "off",
	}
	if keepWAL {
		conf["wal_keep_size"] = "4GB"
	}
	a.pg = testrig.StartPG(t, testrig.PGOptions{Conf: conf, Env: a.minio.Env.Environ()})
	a.pg.Exec(t, "CREATE TABLE fault_load (id bigserial, v text)")
	bulk := filepath.Join(work, "bulk.sql")
	// About 0.6 MB of WAL per transaction that compresses about 2:1.
	if err := os.WriteFile(bulk, []byte("INSERT INTO fault_load (v) SELECT repeat(md5(random()::text), 8) FROM generate_series(1, 1500);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	load := a.pg.Command(ctx, "pgbench", "-n", "-c", "2", "-R", strconv.Itoa(rate), "-T", "3600", "-f", bulk, "postgres")
	if err := load.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	a.loadDone = make(chan error, 1)
	go func() { a.loadDone <- load.Wait() }()
	a.stopLoad = sync.OnceFunc(func() {
		cancel()
		<-a.loadDone
	})
	t.Cleanup(a.stopLoad)
	return a
}

// archived returns pg_stat_archiver's archived_count.
func (a *faultArchive) archived() int {
	s, err := faultQuery(a.pg, "SELECT archived_count::text FROM pg_stat_archiver")
	if err != nil {
		a.t.Fatalf("pg_stat_archiver: %v", err)
	}
	n, _ := strconv.Atoi(s)
	return n
}

// waitArchived waits until n more segments are archived.
func (a *faultArchive) waitArchived(n int) {
	a.t.Helper()
	want := a.archived() + n
	faultPoll(a.t, 2*time.Minute, fmt.Sprintf("%d more segments archived", n), func() bool { return a.archived() >= want })
}

// wait waits until the proxy counted n more events of a kind.
func (a *faultArchive) wait(kind string, n int, before int) {
	a.t.Helper()
	a.proxy.WaitCount(a.t, kind, before+n, 2*time.Minute)
}

// archiverPID returns the pid of the cluster's archiver, or "".
func (a *faultArchive) archiverPID() string {
	s, _ := faultQuery(a.pg, "SELECT coalesce((SELECT pid::text FROM pg_stat_activity WHERE backend_type = 'archiver'), '')")
	return s
}

// killPushes SIGKILLs every running wal-push of this cluster, and returns
// how many it killed.
func (a *faultArchive) killPushes() int {
	ents, _ := os.ReadDir(a.pids)
	killed := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A pidfd first, then the check: the signal reaches the process
		// that was checked, or none.
		proc, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(a.cfg)) || !bytes.Contains(cmdline, []byte("wal-push")) {
			os.Remove(filepath.Join(a.pids, e.Name()))
			proc.Release()
			continue
		}
		if proc.Signal(syscall.SIGKILL) == nil {
			killed++
		}
		proc.Release()
	}
	return killed
}

// killBackgroundArchivers SIGKILLs walsnap's background archiver of this
// cluster's pg_wal, if one runs, and returns how many it killed.
func (a *faultArchive) killBackgroundArchivers() int {
	walDir := []byte(filepath.Join(a.pg.DataDir, "pg_wal"))
	procs, _ := os.ReadDir("/proc")
	killed := 0
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc, err := os.FindProcess(pid) // a pidfd: the check below holds for the signal
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
		// walsnap wal-archiver WALDIR [linger]
		if err == nil && len(args) >= 3 && bytes.HasSuffix(args[0], []byte("walsnap")) && string(args[1]) == "wal-archiver" && bytes.Equal(args[2], walDir) {
			if proc.Signal(syscall.SIGKILL) == nil {
				killed++
			}
		}
		proc.Release()
	}
	return killed
}

// round inflicts each kind of fault once, each until it has hit: resets
// mid-body (uploads and identity reads), latency, a blackhole of hold, a
// SIGKILL of running wal-push processes, a SIGKILL and restart of MinIO,
// and connections reset on accept.
func (a *faultArchive) round(hold time.Duration) {
	t, p := a.t, a.proxy
	t.Helper()
	step := time.Now()
	mark := func(what string) {
		t.Logf("  %-12s %6v  archived %d", what, time.Since(step).Round(time.Millisecond), a.archived())
		step = time.Now()
	}
	defer mark("accept-reset")

	up, down := p.Count("reset-upload"), p.Count("reset")
	p.Arm(testrig.FaultRule{Action: testrig.Reset, Upload: true, After: 256 << 10, Times: 2, Match: faultWALPut})
	p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 10, Times: 2, Match: faultIdentityGet})
	a.wait("reset-upload", 2, up)
	a.wait("reset", 2, down)
	mark("resets")

	p.SetLatency(100 * time.Millisecond)
	a.waitArchived(2)
	p.SetLatency(0)
	mark("latency")

	held := p.Count(testrig.FaultBlackholed)
	p.Blackhole(true)
	a.wait(testrig.FaultBlackholed, 1, held)
	time.Sleep(hold) // the length of the fault, not a synchronisation
	p.Blackhole(false)
	a.blackholes++
	mark("blackhole")

	// PostgreSQL runs one archive_command at a time: the wal-push whose
	// upload is stalled is the one running, and cannot finish.
	stalls := p.Count("stall-upload")
	p.Arm(testrig.FaultRule{Action: testrig.Stall, Upload: true, After: 128 << 10, Times: 1, Match: faultWALPut})
	a.wait("stall-upload", 1, stalls)
	// The stalled upload is the running wal-push's own, or (with a
	// backlog) walsnap's background archiver's, which the running
	// wal-push may be waiting for: both are killed.
	archiver := a.archiverPID()
	n := a.killPushes()
	bg := a.killBackgroundArchivers()
	if n+bg == 0 {
		t.Fatal("an upload is stalled but no wal-push or wal-archiver process was found to kill")
	}
	a.pushKills += n + bg
	if n > 0 {
		// PostgreSQL's archiver exits (FATAL) when its command dies of a
		// signal; PG 15's postmaster starts a new one on its next loop,
		// which a connection (our polling) brings about at once rather
		// than within a minute.
		faultPoll(t, 2*time.Minute, "a new archiver", func() bool {
			pid := a.archiverPID()
			return pid != "" && pid != archiver
		})
	}
	mark("push kill")

	dials := p.Count(testrig.FaultDialFailed)
	a.minio.Kill(t)
	a.minioKills++
	a.wait(testrig.FaultDialFailed, 1, dials)
	a.minio.Restart(t)
	mark("minio kill")

	accepts := p.Count(testrig.FaultAcceptReset)
	p.ResetOnAccept(2)
	a.wait(testrig.FaultAcceptReset, 2, accepts)
}

// faultFigures is what an archive run under faults reports.
type faultFigures struct {
	segments, lost int
	failedCount    string
}

// drainAndCheck stops the load and the faults, waits until the archiver
// has archived the last segment, then checks every segment: each one
// PostgreSQL asked to archive, from the first to the last, is in the
// repository and comes back (through wal-fetch, through the proxy, every
// download cut once mid-body) with the SHA-256 kept aside and, where
// pg_wal still has it, the same bytes; every .done has its object.
func (a *faultArchive) drainAndCheck() faultFigures {
	t, pg := a.t, a.pg
	t.Helper()
	a.stopLoad()
	a.proxy.Clear()

	last := pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	pg.Exec(t, "SELECT pg_switch_wal()")
	nudge := time.Now()
	faultPoll(t, 3*time.Minute, "archiver drained to "+last, func() bool {
		s, err := faultQuery(pg, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if err == nil && s >= last {
			return true
		}
		// The archiver waits up to a minute after three failures unless a
		// new segment wakes it.
		if time.Since(nudge) > 10*time.Second {
			pg.Exec(t, "INSERT INTO fault_load (v) VALUES ('nudge'); SELECT pg_switch_wal()")
			nudge = time.Now()
		}
		return false
	})
	var fig faultFigures
	fig.failedCount = pg.QueryString(t, "SELECT failed_count FROM pg_stat_archiver")

	walDir := filepath.Join(pg.DataDir, "pg_wal")
	status, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	for _, e := range status {
		if n, ok := strings.CutSuffix(e.Name(), ".done"); ok && segmentName.MatchString(n) {
			done = append(done, n)
		} else if n, ok := strings.CutSuffix(e.Name(), ".ready"); ok && n <= last {
			t.Errorf("%s is still .ready after the archiver passed %s", n, last)
		}
	}
	keep := map[string]string{}
	kept, err := os.ReadDir(a.keep)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kept {
		if segmentName.MatchString(e.Name()) {
			b, err := os.ReadFile(filepath.Join(a.keep, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			keep[e.Name()] = strings.TrimSpace(string(b))
		}
	}
	objs, err := faultStore(t, a.minio.Env, "pg15/main").List(t.Context(), "wal/00000001/")
	if err != nil {
		t.Fatal(err)
	}
	inRepo := map[string]bool{}
	for _, o := range objs {
		n := strings.TrimSuffix(filepath.Base(o.Key), compress.Default.Suffix())
		if !segmentName.MatchString(n) {
			t.Errorf("unexpected object %s", o.Key)
			continue
		}
		inRepo[n] = true
	}
	for _, n := range done {
		if !inRepo[n] {
			t.Errorf("%s.done without its object in the repository", n)
			fig.lost++
		}
	}
	// Every segment from the first to the last: asked for by PostgreSQL
	// (kept aside) and in the repository.
	lastSeg, err := wal.ParseFileName(last, faultSegSize)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for no := uint64(1); no <= lastSeg.Segment.No; no++ {
		n := wal.Segment{TLI: 1, No: no}.Name(faultSegSize)
		names = append(names, n)
		if keep[n] == "" || !inRepo[n] {
			t.Errorf("segment %s: kept aside %t, in the repository %t", n, keep[n] != "", inRepo[n])
			fig.lost++
		}
	}
	for n := range inRepo {
		if n > last && !slices.Contains(names, n) {
			names = append(names, n) // pushed ahead past last: must be right too
		}
	}

	// Fetch them all back, four at a time, every first download cut.
	a.proxy.Arm(testrig.FaultRule{Action: testrig.Reset, After: 64 << 10, Match: faultWALGet(faultNotRanged)})
	dest := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.Mkdir(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	env := a.minio.Env.Environ()
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fig.lost++
		t.Errorf(format, args...)
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for n := range work {
				if !inRepo[n] {
					continue // reported above
				}
				p := filepath.Join(dest, n)
				code, stderr, err := faultWalsnap(a.bin, env, "--config", a.cfg, "--fetch-prefetch", "0", "wal-fetch", n, p)
				if code != 0 || err != nil {
					fail("wal-fetch %s: exit %d, %v: %s", n, code, err, stderr)
					continue
				}
				got, err := os.ReadFile(p)
				os.Remove(p)
				sum := sha256.Sum256(got)
				// A file archived ahead of the last one waited for may not
				// have been asked for by PostgreSQL yet (nothing kept aside):
				// it must then be pg_wal's file, which the cluster keeps.
				if want := keep[n]; err != nil || (want != "" && hex.EncodeToString(sum[:]) != want) {
					fail("%s: fetched copy (%d bytes, %v) differs from what PostgreSQL archived", n, len(got), err)
					continue
				}
				if keep[n] == "" {
					orig, err := os.ReadFile(filepath.Join(walDir, n))
					if err != nil || !bytes.Equal(orig, got) {
						fail("%s, archived ahead of PostgreSQL: fetched copy differs from pg_wal (%v)", n, err)
						continue
					}
				}
				if orig, err := os.ReadFile(filepath.Join(walDir, n)); err == nil && !bytes.Equal(orig, got) {
					fail("%s: fetched copy differs from pg_wal", n)
					continue
				}
				mu.Lock()
				fig.segments++
				mu.Unlock()
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	a.proxy.Clear()
	return fig
}

// report renders the figures of a run, with the server log's tail when
// the test failed.
func (a *faultArchive) report(fig faultFigures, elapsed time.Duration) string {
	if a.t.Failed() {
		b, _ := os.ReadFile(a.pg.LogFile)
		lines := strings.Split(string(b), "\n")
		a.t.Logf("tail of the server log:\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
	}
	return fmt.Sprintf("%d segments archived and verified, lost %d, in %v; faults: proxy [%s], wal-push SIGKILLed %d, MinIO SIGKILLed and restarted %d, blackholes %d; pg_stat_archiver failed_count %s",
		fig.segments, fig.lost, elapsed.Round(time.Second), a.proxy.StatsString(), a.pushKills, a.minioKills, a.blackholes, fig.failedCount)
}

// TestFaultArchiveUnderPgbench archives a real PostgreSQL 15 under pgbench
// while one round of every fault runs, then proves nothing was lost. It is
// bounded for CI; TestFaultArchiveSoak is the long version.
func TestFaultArchiveUnderPgbench(t *testing.T) {
	start := time.Now()
	a := faultStartArchive(t, true, 40)
	a.waitArchived(2)
	t.Logf("%v: archiving; faults start", time.Since(start).Round(time.Millisecond))
	a.round(2 * time.Second)
	t.Logf("%v: faults done, %d segments archived", time.Since(start).Round(time.Millisecond), a.archived())
	fig := a.drainAndCheck()
	t.Log(a.report(fig, time.Since(start)))
	if fig.lost != 0 || fig.segments < 8 {
		t.Fatalf("lost %d segments, verified %d", fig.lost, fig.segments)
	}
}

// TestFaultArchiveSoak is TestFaultArchiveUnderPgbench for longer, behind
// WALSNAP_SOAK=1: rounds of faults (blackholes of 2-10 s) until
// WALSNAP_SOAK_DURATION (default 10m) has passed or WALSNAP_SOAK_SEGMENTS
// (default 0: no limit) segments are archived. Run it with -v for the
// figures, e.g.
//
//	WALSNAP_SOAK=1 WALSNAP_SOAK_DURATION=15m make test ARGS='-run=FaultArchiveSoak -v -timeout 60m' PKGS=./archive/
func TestFaultArchiveSoak(t *testing.T) {
	if os.Getenv("WALSNAP_SOAK") != "1" {
		t.Skip("soak test: set WALSNAP_SOAK=1 (and WALSNAP_SOAK_DURATION, WALSNAP_SOAK_SEGMENTS)")
	}
	duration := 10 * time.Minute
	if s := os.Getenv("WALSNAP_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("WALSNAP_SOAK_DURATION: %v", err)
		}
		duration = d
	}
	segments, _ := strconv.Atoi(os.Getenv("WALSNAP_SOAK_SEGMENTS"))
	start := time.Now()
	a := faultStartArchive(t, false, 25)
	a.waitArchived(2)
	rounds := 0
	for time.Since(start) < duration && (segments == 0 || a.archived() < segments) {
		a.round(time.Duration(2+rand.IntN(9)) * time.Second)
		rounds++
		t.Logf("round %d: %d segments archived so far; %s", rounds, a.archived(), a.proxy.StatsString())
	}
	fig := a.drainAndCheck()
	t.Logf("soak: %d rounds; %s", rounds, a.report(fig, time.Since(start)))
	if fig.lost != 0 {
		t.Fatalf("lost %d segments", fig.lost)
	}
}

// --- recovery under faults ---

// faultSource is a cluster's base backup and its archive in MinIO: 100
// rows in t before the backup, then six batches of 100 rows, each followed
// by about a segment of other WAL; the target time is after batch 4, so a
// recovery to it has exactly 500 rows.
type faultSource struct {
	bin      string
	s3       testrig.S3Env
	base     string // the base backup (pg_basebackup -X none)
	target   string // recovery_target_time
	startSeg string // first segment the backup needs
	segs     []string
}

const faultTargetRows = "500"

func faultMakeSource(t *testing.T) *faultSource {
	t.Helper()
	src := &faultSource{bin: testrig.Walsnap(t), s3: testrig.S3(t)}
	work := testrig.WorkDir(t)
	cfg := faultConfig(t, faultConfigDir(t), "src.yaml", src.s3, src.s3.Endpoint, "src", nil, "")
	pg := testrig.StartPG(t, testrig.PGOptions{
		Conf: map[string]string{"archive_mode": "on", "archive_command": src.bin + " --config " + cfg + " wal-push %p"},
		Env:  src.s3.Environ(),
	})
	pg.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, note text); CREATE TABLE pad (v text)")
	pg.Exec(t, "INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 100) g")
	src.base = filepath.Join(work, "base")
	pg.RunAs(t, "pg_basebackup", "-X", "none", "-c", "fast", "-D", src.base)
	for i := 1; i <= 6; i++ {
		pg.Exec(t, fmt.Sprintf("INSERT INTO t SELECT g, 'batch %d' FROM generate_series(%d, %d) g", i, 100*i+1, 100*i+100))
		pg.Exec(t, "INSERT INTO pad SELECT repeat(md5(g::text), 8) FROM generate_series(1, 45000) g")
		if i == 4 {
			// Commit timestamps of later transactions are later.
			src.target = pg.QueryString(t, "SELECT clock_timestamp()::text")
		}
	}
	pg.Exec(t, "UPDATE t SET note = 'bad update'")
	pg.Exec(t, "DROP TABLE t")
	last := pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	pg.Exec(t, "SELECT pg_switch_wal()")
	pg.WaitFor(t, 3*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
	pg.Stop(t)

	label, err := os.ReadFile(filepath.Join(src.base, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`START WAL LOCATION: .* \(file ([0-9A-F]{24})\)`).FindSubmatch(label)
	if m == nil {
		t.Fatalf("no start segment in backup_label:\n%s", label)
	}
	src.startSeg = string(m[1])
	objs, err := faultStore(t, src.s3, "src").List(t.Context(), "wal/00000001/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if n := strings.TrimSuffix(filepath.Base(o.Key), compress.Default.Suffix()); n >= src.startSeg && segmentName.MatchString(n) {
			src.segs = append(src.segs, n)
		}
	}
	if len(src.segs) < 6 {
		t.Fatalf("only %d segments after the backup: %v", len(src.segs), src.segs)
	}
	return src
}

// copyRepo copies the source repository to prefix and returns its store.
func (src *faultSource) copyRepo(t *testing.T, prefix string) *s3store.Store {
	t.Helper()
	from, to := faultStore(t, src.s3, "src"), faultStore(t, src.s3, prefix)
	objs, err := from.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		rc, info, err := from.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := to.PutIfAbsent(t.Context(), o.Key, bytes.NewReader(data), int64(len(data)), info.Metadata); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// restore prepares a copy of the base backup that recovers to the target
// with restore_command = wal-fetch with cfg, and returns it, not started.
func (src *faultSource) restore(t *testing.T, cfg string) *testrig.PG {
	t.Helper()
	return src.restoreCmd(t, src.bin+" --config "+cfg+" wal-fetch %f %p")
}

// restoreCmd is restore with restore_command command.
func (src *faultSource) restoreCmd(t *testing.T, command string) *testrig.PG {
	t.Helper()
	dir := filepath.Join(testrig.WorkDir(t), "data")
	if out, err := exec.Command("cp", "-a", src.base, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rst := testrig.NewPGFromDataDir(t, 15, dir, src.s3.Environ())
	rst.AppendConf(t, map[string]string{
		"archive_mode":           "off",
		"restore_command":        command,
		"recovery_target_time":   src.target,
		"recovery_target_action": "promote",
	})
	t.Cleanup(func() { faultWaitPrefetcher(t, filepath.Join(dir, "pg_wal")) })
	return rst
}

// faultRecover starts rst and waits for the outcome of its recovery:
// "promoted", or "stopped" when the server exited.
func faultRecover(t *testing.T, rst *testrig.PG) string {
	t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s'", rst.Port, rst.SockDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -w returns once the server takes connections (hot standby) or has
	// failed; either is fine here.
	rst.Command(ctx, "pg_ctl", "-D", rst.DataDir, "-l", rst.LogFile, "-w", "-t", "240", "-o", opts, "start").Run()
	outcome := ""
	faultPoll(t, 4*time.Minute, "end of recovery", func() bool {
		if _, err := os.Stat(filepath.Join(rst.DataDir, "postmaster.pid")); os.IsNotExist(err) {
			outcome = "stopped"
			return true
		}
		if s, err := faultQuery(rst, "SELECT pg_is_in_recovery()::text"); err == nil && s == "false" {
			outcome = "promoted"
			return true
		}
		return false
	})
	return outcome
}

func faultLog(rst *testrig.PG) string {
	b, _ := os.ReadFile(rst.LogFile)
	return string(b)
}

// checkTarget checks that a promoted server has exactly the rows
// committed before the target.
func faultCheckTarget(t *testing.T, rst *testrig.PG) {
	t.Helper()
	if got := rst.QueryString(t, "SELECT count(*) FROM t"); got != faultTargetRows {
		t.Fatalf("recovered table has %s rows, want the %s committed before the target; log:\n%s", got, faultTargetRows, faultLog(rst))
	}
	if got := rst.QueryString(t, "SELECT count(*) FROM t WHERE note IN ('batch 5', 'batch 6', 'bad update')"); got != "0" {
		t.Fatalf("%s rows from after the target", got)
	}
}

// faultCheckStopped checks that recovery stopped on a failed wal-fetch of
// name (exit above 125, so FATAL), and that the server never promoted.
func faultCheckStopped(t *testing.T, rst *testrig.PG, name, why string) {
	t.Helper()
	log := faultLog(rst)
	want := fmt.Sprintf(`FATAL:  could not restore file "%s" from archive: child process exited with exit code 255`, name)
	if !strings.Contains(log, want) || !strings.Contains(log, why) {
		t.Fatalf("server log lacks %q and %q:\n%s", want, why, log)
	}
	for _, bad := range []string{"archive recovery complete", "selected new timeline ID", "database system is ready to accept connections"} {
		if strings.Contains(log, bad) {
			t.Fatalf("the server went on after the failed fetch (%q):\n%s", bad, log)
		}
	}
	out := rst.RunAs(t, "pg_controldata", "-D", rst.DataDir)
	if !regexp.MustCompile(`Database cluster state:\s+in archive recovery`).MatchString(out) {
		t.Fatalf("pg_controldata after the stop:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(rst.DataDir, "pg_wal", "00000002.history")); !os.IsNotExist(err) {
		t.Fatal("a new timeline was created")
	}
}

// TestFaultRecovery: point-in-time recoveries from a MinIO archive with
// wal-fetch as restore_command, each ending with exactly the rows
// committed before the target, or stopped (wal-fetch exit 255, FATAL)
// without promoting — never promoted early with fewer rows.
func TestFaultRecovery(t *testing.T) {
	src := faultMakeSource(t)
	cfgDir := faultConfigDir(t)
	t.Logf("backup starts at %s; archive %v; target %s", src.startSeg, src.segs, src.target)

	// Every first download of a WAL object (wal-fetch and the prefetcher)
	// is cut mid-body; the resumed ones go through. Before defect 3 was
	// fixed every one made wal-fetch exit 255 and stopped recovery.
	t.Run("PITR through resets", func(t *testing.T) {
		p := testrig.StartFaultProxy(t, faultHost(t, src.s3.Endpoint))
		p.Arm(testrig.FaultRule{Action: testrig.Reset, After: 512, Match: faultWALGet(faultNotRanged)})
		cfg := faultConfig(t, cfgDir, "proxy.yaml", src.s3, p.URL(), "src", nil, "")
		rst := src.restore(t, cfg)
		if got := faultRecover(t, rst); got != "promoted" {
			t.Fatalf("recovery through resets: %s; log:\n%s", got, faultLog(rst))
		}
		faultCheckTarget(t, rst)
		log := faultLog(rst)
		if strings.Contains(log, "exit code") || strings.Contains(log, "FATAL") {
			t.Fatalf("a restore_command failed:\n%s", log)
		}
		if n := p.Count("reset"); n < len(src.segs)/2 {
			t.Fatalf("only %d downloads cut; the test did not reproduce the faults", n)
		}
		t.Logf("promoted at the target with %s rows; %s", faultTargetRows, p.StatsString())
	})

	// (a) Prefetched segments changed in the spool are discarded and
	// downloaded again: the right data, not a damaged file.
	t.Run("tampered prefetch spool", func(t *testing.T) {
		cfg := faultConfig(t, cfgDir, "direct.yaml", src.s3, src.s3.Endpoint, "src", nil, "")
		rst := src.restore(t, cfg)
		walDir := filepath.Join(rst.DataDir, "pg_wal")
		pdir := filepath.Join(walDir, faultPrefetchDir)
		// Fill the spool as recovery would: fetch the first segment and
		// let the prefetcher it starts fetch the next ones.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if out, err := rst.Command(ctx, src.bin, "--config", cfg, "wal-fetch", src.startSeg, filepath.Join(walDir, "RECOVERYXLOG")).CombinedOutput(); err != nil {
			t.Fatalf("wal-fetch %s: %v\n%s", src.startSeg, err, out)
		}
		os.Remove(filepath.Join(walDir, "RECOVERYXLOG"))
		var spooled []string
		faultPoll(t, 2*time.Minute, "a prefetcher done with two segments or more", func() bool {
			oks, _ := filepath.Glob(filepath.Join(pdir, "*.ok"))
			spooled = spooled[:0]
			for _, ok := range oks {
				if n := strings.TrimSuffix(filepath.Base(ok), ".ok"); n > src.startSeg {
					spooled = append(spooled, n)
				}
			}
			return len(spooled) >= 2 && !fsutil.IsLocked(filepath.Join(pdir, walrec.PrefetcherLock))
		})
		slices.Sort(spooled)
		// Both are replayed before the target (batch 4 ends later).
		flipped, statKept := spooled[0], spooled[1]
		if statKept > src.segs[3] {
			t.Fatalf("prefetched %v: not the segments before the target", spooled)
		}
		faultFlip(t, filepath.Join(pdir, flipped), faultSegSize/3)
		faultFlip(t, filepath.Join(pdir, statKept), faultSegSize/2)
		faultKeepStat(t, filepath.Join(pdir, statKept))

		if got := faultRecover(t, rst); got != "promoted" {
			t.Fatalf("recovery: %s; log:\n%s", got, faultLog(rst))
		}
		faultCheckTarget(t, rst)
		log := faultLog(rst)
		for _, n := range []string{flipped, statKept} {
			if !regexp.MustCompile(`discarding a prefetched file.*` + n).MatchString(log) {
				t.Fatalf("the tampered %s was not reported as discarded:\n%s", n, log)
			}
			if regexp.MustCompile(`restored \(prefetched\).*` + n).MatchString(log) {
				t.Fatalf("the tampered %s was served:\n%s", n, log)
			}
		}
	})

	// (b) and (c): an object that is not the segment. wal-fetch refuses
	// it (exit 255), PostgreSQL stops; once the object is repaired, a
	// restart recovers to the target.
	for _, c := range []struct {
		what, why string
		damage    func(raw, enc []byte) (newRaw, newEnc []byte)
	}{
		{"object from another cluster", "system identifier", func(raw, _ []byte) ([]byte, []byte) {
			foreign := bytes.Clone(raw)
			sysid := binary.LittleEndian.Uint64(foreign[24:]) // xlp_sysid
			binary.LittleEndian.PutUint64(foreign[24:], sysid^0x5a5a5a5a)
			enc, err := compress.Default.Encode(nil, foreign)
			if err != nil {
				panic(err)
			}
			return foreign, enc
		}},
		{"truncated object", "decompress", func(raw, enc []byte) ([]byte, []byte) {
			return raw, enc[:len(enc)/2]
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			prefix := "copy-" + strings.ReplaceAll(c.what, " ", "-")
			st := src.copyRepo(t, prefix)
			bad := src.segs[2]
			var rawBuf bytes.Buffer
			if _, err := repo.New(st).CopyWAL(t.Context(), bad, compress.Default, &rawBuf); err != nil {
				t.Fatal(err)
			}
			raw := rawBuf.Bytes()
			key := repo.WALKey(bad, compress.Default.Suffix())
			rc, info, err := st.Get(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := io.ReadAll(rc)
			rc.Close()
			newRaw, newEnc := c.damage(raw, enc)
			sum := sha256.Sum256(newRaw)
			meta := map[string]string{}
			for k, v := range info.Metadata {
				meta[k] = v
			}
			meta["walsnap-sha256"] = hex.EncodeToString(sum[:])
			faultReplace(t, st, key, newEnc, meta)

			cfg := faultConfig(t, cfgDir, prefix+".yaml", src.s3, src.s3.Endpoint, prefix, nil, "")
			rst := src.restore(t, cfg)
			if got := faultRecover(t, rst); got != "stopped" {
				t.Fatalf("recovery past %s: %s, want stopped; log:\n%s", c.what, got, faultLog(rst))
			}
			faultCheckStopped(t, rst, bad, c.why)
			faultWaitPrefetcher(t, filepath.Join(rst.DataDir, "pg_wal"))

			faultReplace(t, st, key, enc, info.Metadata)
			if got := faultRecover(t, rst); got != "promoted" {
				t.Fatalf("recovery after the repair: %s; log:\n%s", got, faultLog(rst))
			}
			faultCheckTarget(t, rst)
		})
	}
}

// faultReplace puts data with meta at key in place of what is there.
func faultReplace(t *testing.T, st *s3store.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := st.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(t.Context(), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatal(err)
	}
}

// faultFlip inverts the bits of one byte of a file in place.
func faultFlip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// faultKeepStat rewrites the commit record of a prefetched file with the
// file's current stat identity, as if its timestamps had not moved (a
// filesystem that keeps whole seconds, where the prefetcher cannot settle
// a record): then only the CRC-32C of the content can tell.
func faultKeepStat(t *testing.T, path string) {
	t.Helper()
	recPath := path + ".ok"
	data, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["stat"]; !ok {
		t.Fatalf("record %s has no stat: %s", recPath, data)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	rec["stat"] = map[string]int64{"Dev": int64(st.Dev), "Ino": int64(st.Ino), "Size": st.Size,
		"MtimeNs": st.Mtim.Nano(), "CtimeNs": st.Ctim.Nano()}
	rec["settled"] = false
	out, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	// Same owner and mode as the prefetcher's record.
	fi, err := os.Stat(recPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recPath, out, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
