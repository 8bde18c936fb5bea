package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/storage"
	storagefs "github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/walrec"
)

// spoolCluster is a fake data directory (PG_VERSION, pg_wal) around an env,
// with pg_wal optionally a symlink to a directory on "another volume".
type spoolCluster struct {
	*env
	dataDir string // PGDATA
	realWal string // where pg_wal's files are (its symlink target, or PGDATA/pg_wal)
}

func spoolNewCluster(t *testing.T, symlinked bool) *spoolCluster {
	t.Helper()
	base := t.TempDir()
	c := &spoolCluster{dataDir: filepath.Join(base, "data")}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dataDir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.serverRuns(t)
	c.realWal = filepath.Join(c.dataDir, "pg_wal")
	if symlinked {
		c.realWal = filepath.Join(base, "walvol", "pg_wal")
		if err := os.Symlink(c.realWal, filepath.Join(c.dataDir, "pg_wal")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(c.realWal, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := storagefs.New(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	c.env = &env{t: t, walDir: filepath.Join(c.dataDir, "pg_wal"), repoDir: filepath.Join(base, "repo"), repo: repo.New(st), logs: &logBuffer{}}
	return c
}

func (c *spoolCluster) signal(name string, present bool) {
	c.t.Helper()
	p := filepath.Join(c.dataDir, name)
	if present {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			c.t.Fatal(err)
		}
	} else if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.t.Fatal(err)
	}
}

func (c *spoolCluster) pdir() string { return filepath.Join(c.realWal, spool.DirName, "prefetch") }

// fillPrefetch prefetches segments after 1 and adds the leftovers a
// killed prefetcher or an interrupted removal would leave.
func (c *spoolCluster) fillPrefetch() {
	c.t.Helper()
	f := c.fetcher()
	if err := f.RunPrefetch(context.Background(), name(1, 1), c.walDir); err != nil {
		c.t.Fatal(err)
	}
	pdir := c.pdir()
	if ok, _ := filepath.Glob(filepath.Join(pdir, "*"+walrec.RecordSuffix)); len(ok) == 0 {
		c.t.Fatal("nothing was prefetched")
	}
	for _, junk := range []string{name(1, 9) + ".part", name(1, 9) + ".fetch-123", name(1, 8) + walrec.RecordSuffix} {
		os.WriteFile(filepath.Join(pdir, junk), []byte("junk"), 0o600)
	}
	half := filepath.Join(filepath.Dir(pdir), prefetchGone+"1-x")
	os.MkdirAll(half, 0o700)
	os.WriteFile(filepath.Join(half, name(1, 2)), []byte("junk"), 0o600)
}

// prefetchLeft lists what is left of the prefetch spool.
func (c *spoolCluster) prefetchLeft() []string {
	left, _ := filepath.Glob(filepath.Join(c.realWal, spool.DirName, "prefetch*"))
	return left
}

// TestSpoolPushRemovesPrefetchAfterRecovery: once the data directory has
// neither recovery.signal nor standby.signal, wal-push removes the whole
// prefetch spool (files, records, leftovers); while either is there (a
// standby archiving with archive_mode=always), or when the data directory
// cannot be told, it leaves it. %p as PostgreSQL gives it (relative, in
// PGDATA), absolute, and through or behind a pg_wal symlink.
func TestSpoolPushRemovesPrefetchAfterRecovery(t *testing.T) {
	cases := []struct {
		what      string
		symlinked bool
		chdir     bool                                   // run in PGDATA, as PostgreSQL does
		path      func(c *spoolCluster, n string) string // %p
	}{
		{"relative in PGDATA", false, true, func(c *spoolCluster, n string) string { return filepath.Join("pg_wal", n) }},
		{"absolute", false, false, func(c *spoolCluster, n string) string { return filepath.Join(c.walDir, n) }},
		{"relative through a pg_wal symlink", true, true, func(c *spoolCluster, n string) string { return filepath.Join("pg_wal", n) }},
		{"absolute through a pg_wal symlink", true, false, func(c *spoolCluster, n string) string { return filepath.Join(c.walDir, n) }},
		{"symlink target, in PGDATA", true, true, func(c *spoolCluster, n string) string { return filepath.Join(c.realWal, n) }},
	}
	for _, tc := range cases {
		t.Run(tc.what, func(t *testing.T) {
			c := spoolNewCluster(t, tc.symlinked)
			c.signal("recovery.signal", true)
			for no := uint64(1); no <= 6; no++ {
				c.write(1, no, false)
			}
			if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 1))); err != nil {
				t.Fatal(err)
			}
			for no := uint64(2); no <= 6; no++ {
				if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, no))); err != nil {
					t.Fatal(err)
				}
			}
			c.fillPrefetch()
			if tc.chdir {
				t.Chdir(c.dataDir)
			}
			push := func(no uint64) {
				t.Helper()
				c.write(1, no, true)
				if err := c.pusher().Push(context.Background(), tc.path(c, name(1, no))); err != nil {
					t.Fatal(err)
				}
			}
			push(7)
			if len(c.prefetchLeft()) != 2 {
				t.Fatalf("wal-push during recovery (recovery.signal) touched the prefetch sdir: %v", c.prefetchLeft())
			}
			c.signal("recovery.signal", false)
			c.signal("standby.signal", true)
			push(8)
			if _, err := os.Stat(filepath.Join(c.pdir(), name(1, 2))); err != nil {
				t.Fatalf("wal-push on a standby (standby.signal) removed a prefetched segment: %v", err)
			}
			c.signal("standby.signal", false)
			// A record of the background archiver, which must survive.
			c.write(1, 10, true)
			archiver := c.pusher()
			archiver.ArchiverIdle = time.Millisecond
			if err := archiver.RunArchiver(context.Background(), c.walDir); err != nil {
				t.Fatal(err)
			}
			push(9)
			if left := c.prefetchLeft(); len(left) != 0 {
				t.Fatalf("after recovery ended, wal-push left %v", left)
			}
			if _, err := os.Stat(filepath.Join(c.realWal, spool.DirName, "pushed", name(1, 10))); err != nil {
				t.Fatalf("the archiver's records went too: %v", err)
			}
		})
	}
	t.Run("data directory unknown", func(t *testing.T) {
		c := spoolNewCluster(t, false)
		c.signal("recovery.signal", true)
		c.pushRange(1, 6)
		c.fillPrefetch()
		os.Remove(filepath.Join(c.dataDir, "PG_VERSION")) // not provably a data directory
		c.signal("recovery.signal", false)
		c.write(1, 7, false)
		if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 7))); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(c.pdir(), name(1, 2))); err != nil {
			t.Fatalf("wal-push removed a prefetched segment without knowing recovery had ended: %v", err)
		}
	})
}

// spoolBlockingStore makes every WAL download wait until its context ends
// or release is closed: a prefetcher on it runs until it is stopped.
// serverRuns makes the cluster's server run, as far as walsnap can tell:
// its postmaster.pid names a live process (this one) and the data
// directory.
func (c *spoolCluster) serverRuns(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dataDir, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", os.Getpid(), c.dataDir), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serverStops makes the cluster's server stop (see serverRuns).
func (c *spoolCluster) serverStops() {
	os.Remove(filepath.Join(c.dataDir, "postmaster.pid"))
}

type spoolBlockingStore struct {
	storage.Store
	waiting atomic.Int32
	release chan struct{} // nil: never
}

func (s *spoolBlockingStore) block(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, "wal/") {
		return nil
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.release:
		return nil
	}
}

// spoolWaitBlocked waits until a call is blocked in s.
func spoolWaitBlocked(t *testing.T, s *spoolBlockingStore) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.waiting.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no download started")
		}
	}
}

func (s *spoolBlockingStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := s.block(ctx, key); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *spoolBlockingStore) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := s.block(ctx, key); err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Store.Head(ctx, key)
}

func (s *spoolBlockingStore) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := s.block(ctx, key); err != nil {
		return err
	}
	return s.Store.PutIfAbsent(ctx, key, r, size, meta)
}

func (s *spoolBlockingStore) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := s.block(ctx, prefix); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, prefix)
}

// TestSpoolPrefetcherStopsWhenRecoveryEnds: a prefetcher keeps going while
// recovery.signal is there, stops soon after PostgreSQL removes it, and
// takes the prefetch directory with it; one started after recovery ended
// creates nothing.
func TestSpoolPrefetcherStopsWhenRecoveryEnds(t *testing.T) {
	c := spoolNewCluster(t, true)
	c.signal("recovery.signal", true)
	c.pushRange(1, 4)
	c.fillPrefetch()
	st, err := storagefs.New(c.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	slow := &spoolBlockingStore{Store: st}
	f := c.fetcher()
	f.Repo = repo.New(slow)
	f.Prefetch = 8
	done := make(chan error, 1)
	go func() { done <- f.RunPrefetch(context.Background(), name(1, 4), c.walDir) }()
	spoolWaitBlocked(t, slow)
	select {
	case err := <-done:
		t.Fatalf("the prefetcher stopped during recovery: %v", err)
	case <-time.After(3 * recoveryPoll):
	}
	c.signal("recovery.signal", false) // promotion
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunPrefetch = %v, want nil at the end of recovery", err)
		}
	case <-time.After(10 * recoveryPoll):
		t.Fatal("the prefetcher did not stop after recovery ended")
	}
	if left := c.prefetchLeft(); len(left) != 0 {
		t.Fatalf("the stopped prefetcher left %v", left)
	}
	// Started after the end of recovery (wal-fetch spawned it just before
	// promotion): it creates nothing.
	if err := c.fetcher().RunPrefetch(context.Background(), name(1, 1), c.walDir); err != nil {
		t.Fatal(err)
	}
	if left := c.prefetchLeft(); len(left) != 0 {
		t.Fatalf("a prefetcher started after recovery created %v", left)
	}
}

// spoolOwnerOf returns the uid and gid of path (not following symlinks).
func spoolOwnerOf(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// spoolWalkOwners reports every entry below root not owned by uid:gid,
// skipping the temporary names (*.tmp-*, *.fetch-*) that only their
// creator uses.
func spoolWalkOwners(root string, uid, gid int, skipTemps bool) []string {
	var bad []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed meanwhile
		}
		if skipTemps && (strings.Contains(d.Name(), ".tmp-") || strings.Contains(d.Name(), ".fetch-")) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			bad = append(bad, p)
		}
		return nil
	})
	return bad
}

// TestSpoolOwnedLikePgWal: run as root, wal-push (with push-ahead),
// wal-fetch and the prefetcher give every spool directory and file, and the
// file handed to PostgreSQL, the owner of pg_wal; a concurrent observer
// never sees a spool name owned by root; a root-owned spool left by an
// earlier version is given back.
func TestSpoolOwnedLikePgWal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const uid, gid = 4242, 4343
	c := spoolNewCluster(t, true)
	c.signal("recovery.signal", true)
	for _, d := range []string{c.realWal, filepath.Join(c.realWal, "archive_status")} {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	sdir := filepath.Join(c.realWal, spool.DirName)

	var stop atomic.Bool
	var seen []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			seen = append(seen, spoolWalkOwners(sdir, uid, gid, true)...)
		}
	})
	for no := uint64(1); no <= 8; no++ {
		c.write(1, no, no > 1)
	}
	if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 1))); err != nil {
		t.Fatal(err)
	}
	archiver := c.pusher()
	archiver.ArchiverIdle = time.Millisecond
	if err := archiver.RunArchiver(context.Background(), c.walDir); err != nil {
		t.Fatal(err)
	}
	if recs, _ := os.ReadDir(filepath.Join(sdir, walrec.PushedDir)); len(recs) == 0 {
		t.Fatal("no records of the background archiver")
	}
	f := c.fetcher()
	dest := filepath.Join(c.walDir, "RECOVERYXLOG")
	if err := f.Fetch(context.Background(), name(1, 1), dest); err != nil {
		t.Fatal(err)
	}
	if err := f.RunPrefetch(context.Background(), name(1, 1), c.walDir); err != nil {
		t.Fatal(err)
	}
	if ok, _ := filepath.Glob(filepath.Join(c.pdir(), "*"+walrec.RecordSuffix)); len(ok) == 0 {
		t.Fatal("nothing was prefetched")
	}
	stop.Store(true)
	wg.Wait()
	if len(seen) > 0 {
		t.Errorf("a concurrent call could see sdir entries not owned by %d:%d: %v", uid, gid, seen)
	}
	if bad := spoolWalkOwners(sdir, uid, gid, false); len(bad) > 0 {
		t.Errorf("not owned by pg_wal's owner %d:%d: %v", uid, gid, bad)
	}
	if u, g := spoolOwnerOf(t, dest); u != uid || g != gid {
		t.Errorf("the restored file is owned by %d:%d, want %d:%d", u, g, uid, gid)
	}
	// Served from the spool: still the owner's.
	os.Remove(dest)
	if err := f.Fetch(context.Background(), name(1, 2), dest); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.logs.String(), "restored (prefetched)") {
		t.Fatalf("segment 2 not served from the sdir:\n%s", c.logs)
	}
	if u, g := spoolOwnerOf(t, dest); u != uid || g != gid {
		t.Errorf("the file served from the sdir is owned by %d:%d, want %d:%d", u, g, uid, gid)
	}

	// A spool an earlier version left root's is given back.
	for _, d := range []string{sdir, filepath.Join(sdir, walrec.PushedDir), c.pdir()} {
		os.Chown(d, 0, 0)
	}
	c.write(1, 9, true)
	c.write(1, 10, true)
	if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 9))); err != nil {
		t.Fatal(err)
	}
	if err := archiver.RunArchiver(context.Background(), c.walDir); err != nil {
		t.Fatal(err)
	}
	if u, _ := spoolOwnerOf(t, filepath.Join(sdir, walrec.PushedDir)); u != uid {
		t.Errorf("a root-owned pushed directory was not given back")
	}
	for _, d := range []string{sdir, filepath.Join(sdir, walrec.PushedDir), c.pdir()} {
		os.Chown(d, 0, 0)
	}
	if err := f.RunPrefetch(context.Background(), name(1, 2), c.walDir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{sdir, c.pdir()} {
		if u, g := spoolOwnerOf(t, d); u != uid || g != gid {
			t.Errorf("%s left owned by %d:%d", d, u, g)
		}
	}
}

// TestSpoolHistoryFetchAfterRecoveryEnds: PostgreSQL removes
// recovery.signal before it fetches the parent timeline's history file, so
// the prefetch spool can be removed (by wal-push on a standby archiving
// with archive_mode=always, or by the prefetcher) while that wal-fetch
// downloads. The download must not live in the prefetch directory, and the
// fetch must not create it again.
func TestSpoolHistoryFetchAfterRecoveryEnds(t *testing.T) {
	c := spoolNewCluster(t, false)
	c.signal("recovery.signal", true)
	c.pushRange(1, 4)
	hist := []byte("1\t0/3000000\tno recovery target specified\n")
	hp := filepath.Join(c.walDir, "00000002.history")
	if err := os.WriteFile(hp, hist, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.pusher().Push(context.Background(), hp); err != nil {
		t.Fatal(err)
	}
	c.fillPrefetch()
	st, err := storagefs.New(c.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	slow := &spoolBlockingStore{Store: st, release: make(chan struct{})}
	f := c.fetcher()
	f.Repo = repo.New(slow)
	c.signal("recovery.signal", false) // the end of recovery
	dest := filepath.Join(c.walDir, "RECOVERYHISTORY")
	done := make(chan error, 1)
	go func() { done <- f.Fetch(context.Background(), "00000002.history", dest) }()
	spoolWaitBlocked(t, slow)
	c.write(1, 5, false)
	if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 5))); err != nil {
		t.Fatal(err)
	}
	if left := c.prefetchLeft(); len(left) != 0 {
		t.Fatalf("wal-push after recovery left %v", left)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatalf("the history fetch failed when the prefetch sdir went: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, hist) {
		t.Fatalf("restored history %q, want %q", got, hist)
	}
	if left := c.prefetchLeft(); len(left) != 0 {
		t.Fatalf("the fetch after recovery made %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(c.walDir, spool.DirName, "*.fetch-*")); len(left) != 0 {
		t.Fatalf("download temporaries left: %v", left)
	}
}

// TestSpoolDeadFetchSwept: a download left at the top of the spool by a
// wal-fetch that was killed is swept (by wal-push and by the prefetcher);
// one whose writer holds its lock is not.
func TestSpoolDeadFetchSwept(t *testing.T) {
	c := spoolNewCluster(t, false)
	c.signal("recovery.signal", true)
	c.pushRange(1, 3)
	sdir := filepath.Join(c.walDir, spool.DirName)
	mk := func(n string) string {
		p := filepath.Join(sdir, n)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Minute)
		os.Chtimes(p, old, old)
		return p
	}
	os.MkdirAll(sdir, 0o700)
	dead := mk(name(1, 2) + ".fetch-111")
	live := mk(name(1, 2) + ".fetch-222")
	lf, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	c.write(1, 4, false)
	if err := c.pusher().Push(context.Background(), filepath.Join(c.walDir, name(1, 4))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Error("wal-push left a dead wal-fetch's download")
	}
	dead = mk(name(1, 3) + ".fetch-333")
	if err := c.fetcher().RunPrefetch(context.Background(), name(1, 1), c.walDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Error("the prefetcher left a dead wal-fetch's download")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("a live wal-fetch's download was swept")
	}
}

// TestHelpersLeaveWithTheServer: the standing prefetcher and the background
// archiver leave as soon as their server has stopped — downloads and
// uploads in flight included — so that its volumes can be unmounted at
// once; the prefetch spool stays (recovery has not ended).
func TestHelpersLeaveWithTheServer(t *testing.T) {
	c := spoolNewCluster(t, false)
	c.signal("recovery.signal", true)
	c.pushRange(1, 4)
	c.write(1, 5, true)
	c.write(1, 6, true)
	st, err := storagefs.New(c.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct {
		what string
		run  func(r *repo.Repo) error
	}{
		{"prefetcher", func(r *repo.Repo) error {
			f := c.fetcher()
			f.Repo = r
			f.PrefetchIdle = time.Hour
			return f.RunPrefetch(context.Background(), name(1, 1), c.walDir)
		}},
		{"archiver", func(r *repo.Repo) error {
			p := c.pusher()
			p.Repo = r
			p.ArchiverIdle = time.Hour
			return p.RunArchiver(context.Background(), c.walDir)
		}},
	} {
		c.serverRuns(t)
		blocked := &spoolBlockingStore{Store: st}
		done := make(chan error, 1)
		go func() { done <- h.run(repo.New(blocked)) }()
		spoolWaitBlocked(t, blocked) // a download or upload in flight
		c.serverStops()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the %s: %v", h.what, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the %s stayed after its server stopped", h.what)
		}
	}
	if _, err := os.Stat(c.pdir()); err != nil {
		t.Fatalf("the prefetch spool went with a stopped (not promoted) server: %v", err)
	}
}

// TestSettleDownload: a downloaded file whose bytes or stat moved after
// it was verified is refused as changed; one that a call's sweep removed
// meanwhile (recovery went past it) is errSwept, which the prefetcher
// does not report as a failure.
func TestSettleDownload(t *testing.T) {
	path := filepath.Join(t.TempDir(), name(1, 1))
	data := segment(1, 1, sysID)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, sum := walrec.StatOf(fi), crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	if ok, err := settleDownload(path, st, sum); !ok || err != nil {
		t.Fatalf("an untouched download: settled %v, %v", ok, err)
	}
	if _, err := settleDownload(path, st, sum+1); err == nil || errors.Is(err, errSwept) {
		t.Fatalf("other bytes than verified: %v", err)
	}
	os.Remove(path)
	if _, err := settleDownload(path, st, sum); !errors.Is(err, errSwept) {
		t.Fatalf("a swept download: %v, want errSwept", err)
	}
}
