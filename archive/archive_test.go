package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

const (
	segSize = 1 << 20 // the smallest valid size keeps these tests fast
	sysID   = 7301234567890123456
)

// env is a fake PGDATA/pg_wal plus a file repository.
type env struct {
	t       *testing.T
	walDir  string
	repoDir string
	repo    *repo.Repo
	st      *fs.Store // the repository's store, for tests that tamper with objects
	logs    *logBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, walDir: filepath.Join(dir, "pg_wal"), repoDir: filepath.Join(dir, "repo"), logs: &logBuffer{}}
	if err := os.MkdirAll(filepath.Join(e.walDir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(e.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	e.st, e.repo = st, repo.New(st)
	return e
}

func (e *env) log() *slog.Logger { return slog.New(slog.NewTextHandler(e.logs, nil)) }

// logBuffer collects a test's logs; helpers running on their own
// goroutines write it while the test reads it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// await waits (up to 20 s) until the logs contain s.
func (l *logBuffer) await(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(l.String(), s); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never logged %q:\n%s", s, l)
		}
	}
}

func (e *env) pusher() *Pusher {
	return &Pusher{Repo: e.repo, Codec: compress.Default, Concurrency: 4, Ahead: 16, Log: e.log()}
}

func (e *env) fetcher() *Fetcher {
	// The standing prefetcher leaves at once when nothing new is asked:
	// RunPrefetch called by a test fills the window and returns.
	return &Fetcher{Repo: e.repo, Codec: compress.Default, Prefetch: 4, Concurrency: 2, Log: e.log(), PrefetchIdle: time.Millisecond}
}

// segment returns the bytes of a WAL segment with a valid long page header
// followed by compressible pseudo-random content.
func segment(tli uint32, no uint64, sys uint64) []byte {
	seg := wal.Segment{TLI: tli, No: no}
	hdr := wal.LongPageHeader{
		Magic: 0xD110, Info: 0x0002, TLI: tli, PageAddr: seg.StartLSN(segSize),
		SystemID: sys, SegSize: segSize, BlockSize: 8192,
	}
	b := make([]byte, segSize)
	copy(b, hdr.Bytes())
	r := rand.New(rand.NewPCG(no, uint64(tli)))
	for i := wal.LongHeaderSize; i < len(b); i += 8 {
		b[i] = byte(r.IntN(16))
	}
	return b
}

func name(tli uint32, no uint64) string { return wal.Segment{TLI: tli, No: no}.Name(segSize) }

// write puts a segment into pg_wal (and marks it .ready when ready).
func (e *env) write(tli uint32, no uint64, ready bool) (string, []byte) {
	n := name(tli, no)
	data := segment(tli, no, sysID)
	p := filepath.Join(e.walDir, n)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if ready {
		os.WriteFile(filepath.Join(e.walDir, "archive_status", n+".ready"), nil, 0o600)
	}
	return p, data
}

func (e *env) fetchBytes(n string) ([]byte, error) {
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	os.Remove(dest)
	if err := e.fetcher().Fetch(context.Background(), n, dest); err != nil {
		return nil, err
	}
	return os.ReadFile(dest)
}

func TestPushFetchRoundTrip(t *testing.T) {
	e := newEnv(t)
	p, data := e.write(1, 3, false)
	if err := e.pusher().Push(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	id, err := e.repo.Identity(context.Background())
	if err != nil || id.SystemID != sysID || id.SegmentSize != segSize || id.PGMajor != 15 {
		t.Fatalf("identity after first push = %+v, %v", id, err)
	}
	got, err := e.fetchBytes(name(1, 3))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("fetched segment differs from the pushed one")
	}
	if !strings.Contains(e.logs.String(), "msg=archived") || !strings.Contains(e.logs.String(), "bytes_out=") ||
		!regexp.MustCompile(`read_ms=\S+ sha256_ms=\S+ compress_ms=\S+ put_ms=\S+`).MatchString(e.logs.String()) {
		t.Fatalf("missing per-file log line:\n%s", e.logs)
	}
}

func TestPushIdempotentAndConflict(t *testing.T) {
	e := newEnv(t)
	p, data := e.write(1, 5, false)
	ps := e.pusher()
	if err := ps.Push(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if err := ps.Push(context.Background(), p); err != nil {
		t.Fatalf("re-push of identical file: %v", err)
	}
	if !strings.Contains(e.logs.String(), "already archived") {
		t.Fatalf("re-push not reported as already archived:\n%s", e.logs)
	}
	data[5000] ^= 0xff
	os.WriteFile(p, data, 0o600)
	err := ps.Push(context.Background(), p)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), name(1, 5)) {
		t.Fatalf("conflicting re-push: %v, want ErrConflict naming the file", err)
	}
	// The original is intact.
	got, err := e.fetchBytes(name(1, 5))
	if err != nil || bytes.Equal(got, data) {
		t.Fatalf("repository copy changed: %v", err)
	}
}

func TestPushRefusesBadFiles(t *testing.T) {
	e := newEnv(t)
	p, _ := e.write(1, 1, false)
	if err := e.pusher().Push(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	write := func(n string, data []byte) string {
		path := filepath.Join(e.walDir, n)
		os.WriteFile(path, data, 0o600)
		return path
	}
	foreign := segment(1, 2, sysID+1)
	garbage := make([]byte, segSize)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	misplaced := segment(1, 7, sysID) // header of segment 7 under the name of segment 8
	for what, tc := range map[string]struct {
		path string
		want string
	}{
		"foreign system id": {write(name(1, 2), foreign), "system identifier"},
		"wrong size":        {write(name(1, 3), segment(1, 3, sysID)[:segSize/2]), "size"},
		"garbage":           {write(name(1, 4), garbage), name(1, 4)},
		"page address":      {write(name(1, 8), misplaced), name(1, 8)},
		"not a WAL name":    {write("000000010000000000000001.tmp", segment(1, 1, sysID)), "000000010000000000000001.tmp"},
		"bad history":       {write("00000002.history", []byte("not a history\n")), "history"},
		"missing file":      {filepath.Join(e.walDir, name(1, 9)), name(1, 9)},
	} {
		err := e.pusher().Push(context.Background(), tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Push = %v, want an error mentioning %q", what, err, tc.want)
		}
	}
	objs, _ := e.st.List(context.Background(), "wal/")
	if len(objs) != 1 {
		t.Fatalf("refused files reached the repository: %v", objs)
	}
}

func TestHistoryAndBackupFiles(t *testing.T) {
	e := newEnv(t)
	p, _ := e.write(1, 1, false)
	if err := e.pusher().Push(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	hist := []byte("1\t0/3000000\tno recovery target specified\n")
	hp := filepath.Join(e.walDir, "00000002.history")
	os.WriteFile(hp, hist, 0o600)
	bk := []byte("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n")
	bp := filepath.Join(e.walDir, "000000010000000000000002.00000028.backup")
	os.WriteFile(bp, bk, 0o600)
	for _, f := range []string{hp, bp} {
		if err := e.pusher().Push(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.Head(context.Background(), "wal/00000002.history.zst"); err != nil {
		t.Fatalf("history object not at its key: %v", err)
	}
	got, err := e.fetchBytes("00000002.history")
	if err != nil || !bytes.Equal(got, hist) {
		t.Fatalf("history round trip: %q %v", got, err)
	}
	if _, err := e.fetchBytes("00000003.history"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent history: %v, want ErrNotFound", err)
	}
}

func TestFetchAbsentAndCorrupt(t *testing.T) {
	e := newEnv(t)
	p, _ := e.write(1, 1, false)
	if err := e.pusher().Push(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fetchBytes(name(1, 2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent segment: %v, want ErrNotFound", err)
	}
	// Flip a byte in the stored object's payload.
	obj := filepath.Join(e.repoDir, filepath.FromSlash(repo.WALKey(name(1, 1), ".zst")))
	raw, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-10] ^= 0x55
	os.WriteFile(obj, raw, 0o600)
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	os.WriteFile(dest, []byte("untouched"), 0o600)
	err = e.fetcher().Fetch(context.Background(), name(1, 1), dest)
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("corrupted object: %v, want a failure other than not-found", err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "untouched" {
		t.Fatal("DEST was modified by a failed fetch")
	}
	if left, _ := filepath.Glob(filepath.Join(e.walDir, spool.DirName, "prefetch", "*fetch-*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// TestArchiver: the background archiver drains the backlog ahead of
// PostgreSQL's calls, which are answered from its records; a record is
// trusted only for the same repository, the same file and, once old, an
// object the repository confirms.
func TestArchiver(t *testing.T) {
	e := newEnv(t)
	paths := map[uint64]string{}
	datas := map[uint64][]byte{}
	for no := uint64(1); no <= 10; no++ {
		paths[no], datas[no] = e.write(1, no, true)
	}
	ps := e.pusher()
	ps.Ahead = 6
	ps.ArchiverIdle = 100 * time.Millisecond
	var started []string
	ps.StartArchiver = func(walDir string, _ bool) error { started = append(started, walDir); return nil }
	if err := ps.Push(context.Background(), paths[1]); err != nil {
		t.Fatal(err)
	}
	if len(started) != 1 || started[0] != e.walDir {
		t.Fatalf("archiver not started for a backlog: %v", started)
	}
	objs, _ := e.st.List(context.Background(), "wal/00000001/")
	if len(objs) != 1 {
		t.Fatalf("PostgreSQL's call uploaded %d objects, want its own only", len(objs))
	}
	os.Remove(filepath.Join(e.walDir, "archive_status", name(1, 1)+".ready"))
	if err := ps.RunArchiver(context.Background(), e.walDir); err != nil {
		t.Fatal(err)
	}
	// The archiver runs at most Ahead files ahead of PostgreSQL.
	objs, _ = e.st.List(context.Background(), "wal/00000001/")
	if len(objs) != 7 {
		t.Fatalf("after the archiver with ahead=6: %d objects, want 7", len(objs))
	}
	pushed := filepath.Join(e.walDir, spool.DirName, "pushed")
	recs, _ := os.ReadDir(pushed)
	if len(recs) != 6 {
		t.Fatalf("%d archiver records, want 6: %v", len(recs), recs)
	}
	// PostgreSQL's own call for segment 2 is answered from the record,
	// without asking the repository (the archiver just confirmed it).
	e.logs.Reset()
	if err := ps.Push(context.Background(), paths[2]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "archived (by the background archiver)") {
		t.Fatalf("segment 2 not served from its record:\n%s", e.logs)
	}
	if _, err := os.Stat(filepath.Join(pushed, name(1, 2))); !os.IsNotExist(err) {
		t.Fatal("record not removed once used")
	}
	// A stale record: the file changed after it was archived. The record
	// must not be trusted: the push is redone and the conflict seen.
	datas[3][9999] ^= 1
	os.WriteFile(paths[3], datas[3], 0o600)
	if err := ps.Push(context.Background(), paths[3]); !errors.Is(err, ErrConflict) {
		t.Fatalf("changed file behind a record: %v, want ErrConflict", err)
	}
	// An old record whose object is gone: confirmed with the repository,
	// found wanting, and the file archived again.
	if err := e.st.Delete(context.Background(), repo.WALKey(name(1, 4), ".zst")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * walrec.Trust)
	os.Chtimes(filepath.Join(pushed, name(1, 4)), old, old)
	e.logs.Reset()
	if err := ps.Push(context.Background(), paths[4]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "not confirmed by the repository") {
		t.Fatalf("an old record for a missing object was trusted:\n%s", e.logs)
	}
	if got, err := e.fetchBytes(name(1, 4)); err != nil || !bytes.Equal(got, datas[4]) {
		t.Fatalf("segment 4 not re-archived: %v", err)
	}
	// A record for another repository is ignored.
	var rec walrec.Pushed
	data, _ := os.ReadFile(filepath.Join(pushed, name(1, 5)))
	json.Unmarshal(data, &rec)
	rec.Repo = "file:///elsewhere"
	os.WriteFile(filepath.Join(pushed, name(1, 5)), mustJSON(rec), 0o600)
	e.logs.Reset()
	if err := ps.Push(context.Background(), paths[5]); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.logs.String(), "by the background archiver") {
		t.Fatal("record of another repository was trusted")
	}
	// Records of recycled segments are swept.
	os.Remove(paths[6])
	os.Remove(paths[7])
	if err := ps.Push(context.Background(), paths[8]); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(pushed)
	for _, l := range left {
		if l.Name() == name(1, 6) || l.Name() == name(1, 7) {
			t.Fatalf("record %s of a removed segment survived", l.Name())
		}
	}
}

// TestArchiverBusyAndFailed: a call for the file the archiver is
// uploading waits for it and returns from its record; a call for a file
// the archiver failed on reports the failure and pushes the file itself.
func TestArchiverBusyAndFailed(t *testing.T) {
	e := newEnv(t)
	p1, _ := e.write(1, 1, false)
	p2, _ := e.write(1, 2, true)
	p3, _ := e.write(1, 3, true)
	ps := e.pusher()
	if err := ps.Push(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	pushed := filepath.Join(e.walDir, spool.DirName, "pushed")
	own := spool.OwnerOf(e.walDir)
	if err := own.MkdirAll(filepath.Dir(pushed), pushed); err != nil {
		t.Fatal(err)
	}
	// The archiver is "uploading" segment 2: it holds the busy lock.
	busy, err := own.CreateExcl(filepath.Join(pushed, name(1, 2)+walrec.BusySuffix))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := fsutil.LockFileWait(busy)
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() { returned <- ps.Push(context.Background(), p2) }()
	// The call must wait on the lock, not push: the "archiver" finishes
	// only once the kernel shows the call blocked on its lock.
	waitLockWaiter(t, filepath.Join(pushed, name(1, 2)+walrec.BusySuffix), returned)
	p := &Pusher{Repo: e.repo, Codec: compress.Default, Concurrency: 1, Ahead: 4, Log: e.log()}
	r := p.pushOne(context.Background(), p2, identityOf(context.Background(), e.repo))
	if r.err != nil {
		t.Fatal(r.err)
	}
	own.WriteRecord(filepath.Join(pushed, name(1, 2)), mustJSON(p.recordOf(r)))
	os.Remove(filepath.Join(pushed, name(1, 2)+walrec.BusySuffix))
	lock.Unlock()
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "archived (by the background archiver)") {
		t.Fatalf("the waiting call did not use the archiver's record:\n%s", e.logs)
	}
	// The archiver failed on segment 3.
	own.WriteRecord(filepath.Join(pushed, name(1, 3)+failedSuffix), []byte("store unreachable"))
	e.logs.Reset()
	if err := ps.Push(context.Background(), p3); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "store unreachable") || !strings.Contains(e.logs.String(), "msg=archived") {
		t.Fatalf("the archiver's failure not reported, or the file not pushed:\n%s", e.logs)
	}
	if _, err := os.Stat(filepath.Join(pushed, name(1, 3)+failedSuffix)); !os.IsNotExist(err) {
		t.Fatal("the failure marker was left behind")
	}
}

func TestPrefetch(t *testing.T) {
	e := newEnv(t)
	datas := map[uint64][]byte{}
	for no := uint64(1); no <= 6; no++ {
		var p string
		p, datas[no] = e.write(1, no, false)
		if err := e.pusher().Push(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	f := e.fetcher()
	var started []string
	f.StartPrefetch = func(after string) error { started = append(started, after); return nil }
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	if err := f.Fetch(context.Background(), name(1, 1), dest); err != nil {
		t.Fatal(err)
	}
	if len(started) != 1 || started[0] != name(1, 1) {
		t.Fatalf("prefetch not started after serving segment 1: %v", started)
	}
	if err := f.RunPrefetch(context.Background(), name(1, 1), e.walDir); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(e.walDir, spool.DirName, "prefetch")
	for no := uint64(2); no <= 5; no++ {
		if _, err := os.Stat(filepath.Join(pdir, name(1, no))); err != nil {
			t.Fatalf("segment %d not prefetched: %v", no, err)
		}
	}
	// Served from the prefetch directory, byte-identical.
	e.logs.Reset()
	if err := f.Fetch(context.Background(), name(1, 2), dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[2]) || !strings.Contains(e.logs.String(), "prefetched") {
		t.Fatalf("segment 2 not served verified from prefetch:\n%s", e.logs)
	}
	// A prefetched file that fails its check is never served.
	bad := segment(1, 4, sysID+1)
	os.WriteFile(filepath.Join(pdir, name(1, 3)), bad, 0o600)
	e.logs.Reset()
	if err := f.Fetch(context.Background(), name(1, 3), dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[3]) || !strings.Contains(e.logs.String(), "discarding") {
		t.Fatalf("a bad prefetched file was served or not reported:\n%s", e.logs)
	}
	// A partial download left by a dead prefetcher is neither served nor kept.
	os.Remove(filepath.Join(pdir, name(1, 4)))
	orphan := filepath.Join(pdir, name(1, 4)+".part")
	os.WriteFile(orphan, datas[4][:1000], 0o600)
	old := time.Now().Add(-time.Minute)
	os.Chtimes(orphan, old, old)
	if err := f.Fetch(context.Background(), name(1, 4), dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[4]) {
		t.Fatal("segment 4 wrong after an orphaned partial prefetch")
	}
	if _, err := os.Stat(filepath.Join(pdir, name(1, 4)+".part")); !os.IsNotExist(err) {
		t.Fatal("orphaned .part not swept")
	}
	// Prefetch stops at the end of the archive without error.
	if err := f.RunPrefetch(context.Background(), name(1, 5), e.walDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pdir, name(1, 7))); !os.IsNotExist(err) {
		t.Fatal("prefetched a segment that does not exist")
	}
	// Passed segments are swept from the prefetch directory.
	if err := f.Fetch(context.Background(), name(1, 6), dest); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(pdir, "0000*")); len(left) != 0 {
		t.Fatalf("passed prefetched files not swept: %v", left)
	}
}

// TestSweepSparesNewPartial: a prefetcher creates its .part file before it
// can lock it; a wal-fetch sweeping in that instant must not delete it.
func TestSweepSparesNewPartial(t *testing.T) {
	pdir := t.TempDir()
	fresh := filepath.Join(pdir, name(1, 9)+".part")
	os.WriteFile(fresh, nil, 0o600)
	stale := filepath.Join(pdir, name(1, 8)+".part")
	os.WriteFile(stale, nil, 0o600)
	old := time.Now().Add(-time.Minute)
	os.Chtimes(stale, old, old)
	sweepPassed(pdir, wal.Segment{TLI: 1, No: 5}, segSize)
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("a brand-new unlocked .part was swept")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("an old unlocked .part survived")
	}
}

// waitLockWaiter waits until a process is blocked waiting for the flock on
// path (a "->" line in /proc/locks for its inode), failing if the call
// whose result comes on returned ends first.
func waitLockWaiter(t *testing.T, path string, returned <-chan error) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fmt.Sprintf(":%d ", fi.Sys().(*syscall.Stat_t).Ino)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile("/proc/locks")
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "->") && strings.Contains(line, ino) {
				return
			}
		}
		select {
		case err := <-returned:
			t.Fatalf("the call returned while the archiver held the file: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatal("no process ever waited for the archiver's lock")
}
