package archive

import (
	"bytes"
	"errors"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/walrec"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/testrig"
)

// spoolRun runs the walsnap binary in dir, as cred's user (nil: as
// ourselves), and returns its exit status and stderr.
func spoolRun(t *testing.T, cred *syscall.Credential, dir string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testrig.Walsnap(t), args...)
	cmd.Dir = dir
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatalf("run walsnap: %v", err)
	}
	return 0, stderr.String()
}

// spoolWaitPrefetcher waits (bounded) until no prefetcher holds the lock in
// pdir.
func spoolWaitPrefetcher(t *testing.T, pdir string) {
	t.Helper()
	lock := filepath.Join(pdir, walrec.PrefetcherLock)
	for deadline := time.Now().Add(60 * time.Second); fsutil.IsLocked(lock); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a prefetcher is still running after a minute")
		}
	}
}

// TestSpoolPrefetchGoneAfterPromotion: a real PostgreSQL 15 recovers a
// pg_basebackup with wal-fetch and prefetch to a target time and pauses
// there, with segments past the target prefetched (the junk of issue 7,
// defect 8); once promoted, it archives into the same repository, and by
// the time its first segment on the new timeline is archived wal-push has
// removed the prefetch directory.
func TestSpoolPrefetchGoneAfterPromotion(t *testing.T) {
	bin := testrig.Walsnap(t)
	work := testrig.WorkDir(t)
	repoURL := "file://" + filepath.Join(work, "repo")
	archiveCommand := bin + " --repo " + repoURL + " wal-push %p"
	pg := testrig.StartPG(t, testrig.PGOptions{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": archiveCommand,
	}})
	pg.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	pg.Exec(t, "INSERT INTO t SELECT generate_series(1, 100)")
	backup := filepath.Join(work, "restored")
	pg.RunAs(t, "pg_basebackup", "-X", "none", "-c", "fast", "-D", backup)
	pg.Exec(t, "INSERT INTO t SELECT generate_series(101, 200)")
	pg.Exec(t, "SELECT pg_switch_wal()")
	time.Sleep(1100 * time.Millisecond)
	target := pg.QueryString(t, "SELECT now()::text")
	time.Sleep(1100 * time.Millisecond)
	pg.Exec(t, "INSERT INTO t SELECT generate_series(201, 250)")
	// Segments after the target, for the prefetcher to fetch in vain.
	pg.RunAs(t, "pgbench", "-i", "-s", "4", "-q", "postgres")
	last := pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	pg.Exec(t, "SELECT pg_switch_wal()")
	pg.WaitFor(t, 2*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
	pg.Stop(t)

	if err := os.WriteFile(filepath.Join(backup, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rst := testrig.NewPGFromDataDir(t, 15, backup, nil) // gives backup to postgres
	rst.AppendConf(t, map[string]string{
		"archive_mode":           "on",
		"archive_command":        archiveCommand,
		"restore_command":        bin + " --repo " + repoURL + " wal-fetch %f %p",
		"recovery_target_time":   target,
		"recovery_target_action": "pause",
	})
	rst.Start(t)
	rst.WaitFor(t, 3*time.Minute, "paused", "SELECT pg_get_wal_replay_pause_state()")
	pdir := filepath.Join(backup, "pg_wal", spool.DirName, "prefetch")
	spoolWaitPrefetcher(t, pdir)
	ahead, _ := filepath.Glob(filepath.Join(pdir, "*"+walrec.RecordSuffix))
	if len(ahead) == 0 {
		t.Fatalf("nothing prefetched past the target: the test does not reproduce the leftover; server log:\n%s", spoolReadFile(rst.LogFile))
	}
	t.Logf("paused at the target with %d segments prefetched past it", len(ahead))
	// While recovery goes on (paused, recovery.signal present) nothing
	// removes them: a standby's archiver would run wal-push now.
	if _, err := os.Stat(ahead[0]); err != nil {
		t.Fatal(err)
	}

	rst.Exec(t, "SELECT pg_promote()")
	rst.WaitFor(t, time.Minute, "f", "SELECT pg_is_in_recovery()")
	if got := rst.QueryString(t, "SELECT count(*) FROM t"); got != "200" {
		t.Fatalf("recovered table has %s rows, want 200", got)
	}
	rst.Exec(t, "CREATE TABLE after_promotion AS SELECT 1 AS x")
	rst.Exec(t, "SELECT pg_switch_wal()")
	rst.WaitFor(t, 2*time.Minute, "t", "SELECT coalesce(last_archived_wal ~ '^00000002[0-9A-F]{16}$', false) FROM pg_stat_archiver")
	if left, _ := filepath.Glob(filepath.Join(backup, "pg_wal", spool.DirName, "prefetch*")); len(left) != 0 {
		t.Fatalf("after promotion and a segment archived, the prefetch sdir is still there: %v", left)
	}
	if failed := rst.QueryString(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Errorf("the promoted server's archiver reported %s failures; log:\n%s", failed, spoolReadFile(rst.LogFile))
	}
}

func spoolReadFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// spoolPostgresCred returns the postgres user's credential.
func spoolPostgresCred(t *testing.T) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		testrig.Unavailable(t, "no postgres user: %v", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// TestSpoolRootThenPostgres: the walsnap binary is run as root first
// (wal-push with push-ahead, wal-fetch with its detached prefetcher), in a
// data directory and pg_wal owned by the postgres user; everything it
// leaves in the spool, and the file it restored, is the postgres user's,
// and the postgres user's next calls work (issue 7, defect 8: they failed
// on a root-owned spool).
func TestSpoolRootThenPostgres(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cred := spoolPostgresCred(t)
	uid, gid := int(cred.Uid), int(cred.Gid)
	work := testrig.WorkDir(t) // the postgres user's
	data := filepath.Join(work, "data")
	walDir := filepath.Join(data, "pg_wal")
	repoDir := filepath.Join(work, "repo")
	for _, d := range []string{data, walDir, filepath.Join(walDir, "archive_status"), repoDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for p, body := range map[string]string{"PG_VERSION": "15\n", "recovery.signal": ""} {
		if err := os.WriteFile(filepath.Join(data, p), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for no := uint64(1); no <= 10; no++ {
		p := filepath.Join(walDir, name(1, no))
		if err := os.WriteFile(p, segment(1, no, sysID), 0o600); err != nil {
			t.Fatal(err)
		}
		if no >= 2 && no <= 4 {
			os.WriteFile(filepath.Join(walDir, "archive_status", name(1, no)+".ready"), nil, 0o600)
		}
	}
	if err := filepath.Walk(work, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	repo := []string{"--repo", "file://" + repoDir, "--push-ahead", "4", "--fetch-prefetch", "4"}
	sdir := filepath.Join(walDir, spool.DirName)
	pdir := filepath.Join(sdir, walrec.PrefetchDir)
	t.Cleanup(func() { spoolWaitPrefetcher(t, pdir) })
	walsnap := func(cred *syscall.Credential, args ...string) string {
		t.Helper()
		who := "root"
		if cred != nil {
			who = "postgres"
		}
		code, stderr := spoolRun(t, cred, data, append(repo, args...)...)
		if code != 0 {
			t.Fatalf("walsnap %s as %s: exit %d: %s", strings.Join(args, " "), who, code, stderr)
		}
		return stderr
	}

	// As root.
	walsnap(nil, "wal-push", "pg_wal/"+name(1, 1))
	for no := uint64(5); no <= 8; no++ {
		walsnap(nil, "wal-push", "pg_wal/"+name(1, no))
	}
	walsnap(nil, "wal-fetch", name(1, 1), "pg_wal/RECOVERYXLOG")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ok, _ := filepath.Glob(filepath.Join(pdir, "*"+walrec.RecordSuffix))
		if len(ok) == 4 && !fsutil.IsLocked(filepath.Join(pdir, walrec.PrefetcherLock)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the root prefetcher committed %d of 4 segments", len(ok))
		}
	}
	if recs, _ := os.ReadDir(filepath.Join(sdir, walrec.PushedDir)); len(recs) == 0 {
		t.Fatal("wal-push as root left no push-ahead records")
	}
	if bad := spoolWalkOwners(sdir, uid, gid, false); len(bad) > 0 {
		t.Errorf("left by root, not owned by postgres (%d:%d): %v", uid, gid, bad)
	}
	if u, g := spoolOwnerOf(t, filepath.Join(walDir, "RECOVERYXLOG")); u != uid || g != gid {
		t.Errorf("RECOVERYXLOG restored as root is owned by %d:%d", u, g)
	}

	// As postgres: served from the spool root filled, downloaded into it,
	// pushed with push-ahead records.
	if stderr := walsnap(cred, "wal-fetch", name(1, 2), "pg_wal/RECOVERYXLOG"); !strings.Contains(stderr, "restored (prefetched)") {
		t.Errorf("segment 2 not served from the sdir root filled: %s", stderr)
	}
	walsnap(cred, "wal-fetch", name(1, 8), "pg_wal/RECOVERYXLOG")
	walsnap(cred, "wal-push", "pg_wal/"+name(1, 3)) // pushed ahead by root
	os.WriteFile(filepath.Join(walDir, "archive_status", name(1, 10)+".ready"), nil, 0o600)
	walsnap(cred, "wal-push", "pg_wal/"+name(1, 9))
	if _, err := os.Stat(filepath.Join(sdir, "pushed", name(1, 10))); err != nil {
		t.Errorf("no push-ahead record written by postgres: %v", err)
	}
	spoolWaitPrefetcher(t, pdir)
	if bad := spoolWalkOwners(sdir, uid, gid, false); len(bad) > 0 {
		t.Errorf("not owned by postgres (%d:%d): %v", uid, gid, bad)
	}
}
