package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// drillSetup is a cluster with a table, a backup and WAL after it, all
// archived: rows 1-1000 are in the backup, 1001-1500 only in the WAL.
type drillSetup struct {
	*cluster
	backup  string
	scratch string // --scratch of the drills, a directory of the test's
	// between is a time after rows 1001-1200 were committed and archived,
	// before 1201-1400 were.
	between string
}

func newDrillSetup(t *testing.T, o clusterOptions) *drillSetup {
	t.Helper()
	return drillOn(t, newCluster(t, o), testrig.WorkDir(t))
}

// drillOn makes the table, the backup and the WAL after it on cluster c,
// whose drills make their scratch directories in scratch.
func drillOn(t *testing.T, c *cluster, scratch string) *drillSetup {
	t.Helper()
	s := &drillSetup{cluster: c, scratch: scratch}
	s.pg.Exec(t, "CREATE TABLE t AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 1000) g")
	s.backup = strings.Fields(s.walsnap(t, "backup", "--fast"))[1]
	// WAL over a few segments after the backup.
	for i := range 3 {
		s.pg.Exec(t, fmt.Sprintf("INSERT INTO t SELECT g, repeat('y', 500) FROM generate_series(%d, %d) g", 1001+i*200, min(1200+i*200, 1500)))
		s.archiveAll(t)
		if i == 0 {
			s.between = s.pg.QueryString(t, "SELECT now()::text")
		}
	}
	return s
}

// sqlFile writes a --check-sql file.
func sqlFile(t *testing.T, name, sql string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// drill runs walsnap drill --json with args; it returns the result, the
// progress (stderr) and the error.
func (s *drillSetup) drill(t *testing.T, args ...string) (*drillresult.Result, string, error) {
	t.Helper()
	cmd := s.command(append([]string{"drill", "--json", "--scratch", s.scratch, "--pg-bin", s.pg.BinDir}, args...)...)
	var out, progress bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &progress
	err := cmd.Run()
	t.Logf("walsnap drill %s:\n%s", strings.Join(args, " "), progress.String())
	var res drillresult.Result
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
		t.Fatalf("drill --json printed no result (%v, exit %v):\n%s", jerr, err, out.String())
	}
	s.leftNothing(t, res.ID)
	return &res, progress.String(), err
}

// leftNothing checks that no drill left its scratch directory, a mount
// below the scratch root, a process using it, or a server, nor drill id
// its socket directory.
func (s *drillSetup) leftNothing(t *testing.T, id string) {
	t.Helper()
	mounts, err := testrig.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if strings.HasPrefix(m.MountPoint, s.scratch+"/") {
			t.Errorf("still mounted under the scratch directory: %s (%s)", m.MountPoint, m.Source)
		}
	}
	if sock := filepath.Join(os.TempDir(), "walsnap-drill-"+id); id == "" || !errors.Is(statErr(sock), os.ErrNotExist) {
		t.Errorf("drill %q left its socket directory %s", id, sock)
	}
	ents, err := os.ReadDir(s.scratch)
	if err != nil || len(ents) != 0 {
		t.Errorf("the drill left %v in %s (%v)", ents, s.scratch, err)
	}
	if users := fsutil.ProcessesUsing(s.scratch); len(users) != 0 {
		t.Errorf("processes still use %s: %v", s.scratch, users)
	}
}

func statErr(path string) error { _, err := os.Stat(path); return err }

// drillID is the drill's id in its progress ("drill ID: target ...").
func drillID(progress string) string {
	for _, line := range strings.Split(progress, "\n") {
		if id, ok := strings.CutPrefix(line, "drill "); ok {
			if id, _, ok := strings.Cut(id, ": target "); ok {
				return id
			}
		}
	}
	return ""
}

// checkPassed checks a passed drill's result: every phase timed, the
// replay measured, every check passed (pg_amcheck where the major has
// one).
func checkPassed(t *testing.T, res *drillresult.Result, backup string, amcheck bool) {
	t.Helper()
	if !res.OK || res.Error != "" || res.Backup.ID != backup || res.Target != "end of archived WAL" {
		t.Fatalf("drill result: ok %v, error %q, backup %s (want %s), target %q", res.OK, res.Error, res.Backup.ID, backup, res.Target)
	}
	var phases []string
	for _, p := range res.Phases {
		phases = append(phases, p.Name)
		if p.Seconds <= 0 {
			t.Errorf("phase %s took %v s", p.Name, p.Seconds)
		}
	}
	if want := []string{"choose", "materialize", "replay", "checks", "teardown"}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if r := res.Replay; r == nil || r.Segments < 3 || r.Bytes <= 0 || r.BytesPerSecond <= 0 || res.Reached == nil || res.RecoverySeconds <= 0 {
		t.Errorf("replay %+v, reached %+v, recovery %v s", res.Replay, res.Reached, res.RecoverySeconds)
	}
	status := map[string]string{}
	for _, c := range res.Checks {
		status[c.Name] = c.Status
	}
	amStatus := drillresult.Skip
	if amcheck {
		amStatus = drillresult.Pass
	}
	if status["promoted"] != drillresult.Pass || status["connections"] != drillresult.Pass || status["pg_amcheck"] != amStatus {
		t.Errorf("checks %+v, want promoted and connections to pass, pg_amcheck %s", res.Checks, amStatus)
	}
	var times []string
	for _, p := range res.Phases {
		times = append(times, fmt.Sprintf("%s %.2fs", p.Name, p.Seconds))
	}
	t.Logf("drill of %s: %s; recovery %.2fs; %d segments, %d bytes at %.0f B/s", backup, strings.Join(times, ", "),
		res.RecoverySeconds, res.Replay.Segments, res.Replay.Bytes, res.Replay.BytesPerSecond)
}

// TestDrillEveryMajor: on each major, a drill of the newest backup to the
// end of the archived WAL passes, with its phases timed, its --check-sql
// run on the promoted copy, and nothing left behind; status shows it and
// backup-list marks the backup drilled.
func TestDrillEveryMajor(t *testing.T) {
	testrig.ForEachMajor(t, func(t *testing.T, major int) {
		t.Parallel()
		s := newDrillSetup(t, clusterOptions{major: major})
		rows := sqlFile(t, "rows.sql", "SELECT count(*) = 1500 FROM t;\nSELECT max(id) FROM t;")
		res, progress, err := s.drill(t, "--check-sql", rows)
		if err != nil {
			t.Fatalf("drill: %v", err)
		}
		checkPassed(t, res, s.backup, s.pg.HasBin("pg_amcheck")) // Debian's 15; the npm builds have none
		for _, want := range []string{"choose: ", "materialize: ", "replay: ", "check check-sql " + rows + ": pass", "teardown: ", "drill passed: backup " + s.backup} {
			if !strings.Contains(progress, want) {
				t.Errorf("progress lacks %q", want)
			}
		}
		s.checkStored(t, res)
	})
}

// checkStored checks that the passed drill res is stored: status shows
// it as the last drill, and backup-list marks the setup's backup (its
// only one) drilled.
func (s *drillSetup) checkStored(t *testing.T, res *drillresult.Result) {
	t.Helper()
	var st struct {
		LastDrill struct {
			ID     string `json:"id"`
			OK     bool   `json:"ok"`
			Backup string `json:"backup"`
		} `json:"last_drill"`
	}
	if err := json.Unmarshal([]byte(s.walsnap(t, "status", "--json")), &st); err != nil || !st.LastDrill.OK || st.LastDrill.ID != res.ID || st.LastDrill.Backup != s.backup {
		t.Errorf("status: last drill %+v (%v), want drill %s of %s, ok", st.LastDrill, err, res.ID, s.backup)
	}
	var list []struct {
		ID      string     `json:"id"`
		Drilled *time.Time `json:"drilled"`
	}
	if err := json.Unmarshal([]byte(s.walsnap(t, "backup-list", "--json")), &list); err != nil || len(list) != 1 || list[0].Drilled == nil {
		t.Fatalf("backup-list --json: %+v (%v), want %s drilled", list, err, s.backup)
	}
	if table := s.walsnap(t, "backup-list"); !strings.Contains(strings.Split(table, "\n")[0], "DRILLED") || !strings.Contains(table, list[0].Drilled.UTC().Format("2006-01-02 15:04")) {
		t.Errorf("backup-list does not show the drill:\n%s", table)
	}
}

// TestDrillFailures (PostgreSQL 15): a drill to a target time passes
// with the data as at that time; a --check-sql that returns false or
// no rows fails the drill; a WAL object deleted from the middle of the
// range fails it before anything is built, naming the missing segment;
// --keep leaves the promoted copy reachable and says how to remove it.
// Each failure is stored: status shows it.
func TestDrillFailures(t *testing.T) {
	t.Parallel()
	s := newDrillSetup(t, clusterOptions{major: 15, localRepo: true})

	t.Run("keep", func(t *testing.T) {
		cmd := s.command("drill", "--keep", "--scratch", s.scratch, "--pg-bin", s.pg.BinDir, "--amcheck", "none")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("drill --keep: %v\n%s", err, out)
		}
		text := string(out)
		var sock, cleanup string
		sc := bufio.NewScanner(strings.NewReader(text))
		for removing := false; sc.Scan(); {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "  psql -h "):
				sock = strings.Fields(line)[2]
			case line == "to remove it, as root:":
				removing = true
			case removing && strings.HasPrefix(line, "  "):
				cleanup += line + "\n"
			}
		}
		if sock == "" || !strings.Contains(cleanup, "pg_ctl") || !strings.Contains(cleanup, "rm -rf "+s.scratch+"/walsnap-drill-") {
			t.Fatalf("drill --keep does not say how to connect and clean up:\n%s", text)
		}
		kept := server{t: t, sock: sock, port: 5432}
		if got := kept.query("SELECT count(*)::text FROM t"); got != "1500" {
			t.Errorf("the kept copy has %s rows, want 1500", got)
		}
		if got := kept.query("SELECT current_setting('listen_addresses') || '/' || current_setting('archive_mode') || '/' || pg_is_in_recovery()::text"); got != "/off/false" {
			t.Errorf("the kept copy runs with listen_addresses/archive_mode/in recovery %s, want no TCP, no archiving, promoted", got)
		}
		if out, err := exec.Command("sh", "-ec", cleanup).CombinedOutput(); err != nil {
			t.Fatalf("the printed clean-up failed: %v\n%s\n%s", err, cleanup, out)
		}
		s.leftNothing(t, drillID(text))
	})

	t.Run("target time", func(t *testing.T) {
		res, _, err := s.drill(t, "--target-time", s.between, "--check-sql", sqlFile(t, "rows.sql", "SELECT count(*) = 1200 FROM t"))
		if err != nil || !res.OK || !strings.Contains(res.Target, "time") || res.Reached == nil {
			t.Fatalf("drill to %s: %v; ok %v, target %q, reached %+v", s.between, err, res.OK, res.Target, res.Reached)
		}
	})

	t.Run("check-sql false or no rows", func(t *testing.T) {
		res, progress, err := s.drill(t, "--check-sql", sqlFile(t, "false.sql", "SELECT count(*) = 1 AS one_row FROM t"),
			"--check-sql", sqlFile(t, "none.sql", "SELECT 1 FROM t WHERE id < 0"))
		if err == nil || res.OK {
			t.Fatal("a drill with failing checks passed")
		}
		for _, want := range []string{"one_row is false in row 1", "statement 1 returned no rows", "2 checks failed"} {
			if !strings.Contains(res.Error, want) {
				t.Errorf("the drill's error %q lacks %q", res.Error, want)
			}
		}
		if !strings.Contains(progress, "drill FAILED") {
			t.Errorf("progress does not say the drill failed:\n%s", progress)
		}
		if st := s.walsnap(t, "status"); !strings.Contains(st, "last drill:        FAILED") {
			t.Errorf("status does not show the failed drill:\n%s", st)
		}
	})

	t.Run("a gap in the WAL", func(t *testing.T) {
		r := s.repo(t)
		files, err := r.ListWAL(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var segs []string
		for _, f := range files {
			if f.Kind == wal.KindSegment {
				segs = append(segs, f.Name)
			}
		}
		if len(segs) < 5 {
			t.Fatalf("only %d segments archived: %v", len(segs), segs)
		}
		gone := segs[len(segs)-2] // after the backup, before the newest
		for _, f := range files {
			if f.Name == gone {
				if err := r.DeleteWALFiles(t.Context(), []repo.WALFile{f}); err != nil {
					t.Fatal(err)
				}
			}
		}
		res, _, err := s.drill(t)
		if err == nil || res.OK || !strings.Contains(res.Error, "segment "+gone+" is missing") {
			t.Fatalf("drill over a gap: %v; error %q, want segment %s named", err, res.Error, gone)
		}
		if p := res.Phase(drillresult.PhaseMaterialize); p != nil {
			t.Errorf("the drill built something over a gap: %+v", p)
		}
	})
}

// TestDrillInterrupted: a drill killed with SIGTERM mid-replay (the
// download of a segment it needs stalls) stops the server, removes its
// scratch directory, leaves no process behind, and stores no result.
func TestDrillInterrupted(t *testing.T) {
	t.Parallel()
	s := newDrillSetup(t, clusterOptions{major: 15})
	newest := strings.TrimSpace(s.pg.QueryString(t, "SELECT last_archived_wal FROM pg_stat_archiver"))
	proxy := testrig.StartFaultProxy(t, strings.TrimPrefix(s.s3.Endpoint, "http://"))
	proxy.Arm(testrig.FaultRule{Action: testrig.Stall, Match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, newest)
	}})
	cmd := s.command("--s3-endpoint", proxy.URL(), "drill", "--scratch", s.scratch, "--pg-bin", s.pg.BinDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	proxy.WaitCount(t, "stall", 1, 3*time.Minute) // the replay needs the newest segment, which does not come
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	t.Logf("walsnap drill, SIGTERM:\n%s", out.String())
	if err == nil || !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), "FAILED") || strings.Contains(out.String(), "\nchecks: ") {
		t.Fatalf("the drill did not report the interruption during the replay: %v", err)
	}
	if !strings.Contains(out.String(), "teardown: ") || !strings.Contains(out.String(), "server stopped") {
		t.Errorf("the interrupted drill did not tear down")
	}
	s.leftNothing(t, drillID(out.String()))
	if st := s.walsnap(t, "status"); !strings.Contains(st, "last drill:        never") {
		t.Errorf("an interrupted drill stored a result:\n%s", st)
	}
}

// cleanupScript is command.cleanup for restoreScript's copies: unmount
// the data directory it bind-mounted, detach the loop device and remove
// the copy of the image.
const cleanupScript = `#!/bin/sh
set -eu
dev=$(findmnt -n -o SOURCE --mountpoint "$WALSNAP_PGDATA" | cut -d'[' -f1)
umount "$WALSNAP_PGDATA"
back=$(losetup -n -O BACK-FILE "$dev")
losetup -d "$dev"
rm -f "$back"
echo "cleanup: $dev ($back) released"
`

// TestDrillCommandProvider: the command provider on loop devices (as
// TestCommandProviderBlockSnapshot): command.restore attaches a copy of
// the snapshot image as a new loop device and bind-mounts its data
// directory at the drill's WALSNAP_PGDATA; the drill passes, and
// command.cleanup releases the mount, the loop device and the copy.
func TestDrillCommandProvider(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "fsfreeze", "findmnt", "blockdev"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrig.Unavailable(t, "%s: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "loop devices and mounts need root")
	}
	work := testrig.WorkDir(t)
	snaps, mnt := filepath.Join(work, "snapshots"), filepath.Join(work, "mnt")
	for _, d := range []string{snaps, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	newLoopFS(t, work, filepath.Join(work, "volume.img"), mnt)
	s := newDrillSetup(t, clusterOptions{dataDir: filepath.Join(mnt, "pgdata"), config: fmt.Sprintf(
		"backup:\n  provider: command\ncommand:\n  snapshot: %q\n  restore: %q\n  cleanup: %q\n",
		writeScript(t, filepath.Join(work, "snapshot.sh"), fmt.Sprintf(snapshotScript, mnt, snaps)),
		writeScript(t, filepath.Join(work, "restore.sh"), fmt.Sprintf(restoreScript, snaps)),
		writeScript(t, filepath.Join(work, "cleanup.sh"), cleanupScript))})
	loops := func() []string {
		out := mustRun(t, "losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE")
		var copies []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if _, back, ok := strings.Cut(line, " "); ok && strings.HasPrefix(back, snaps+"/restore-") {
				copies = append(copies, line)
			}
		}
		return copies
	}
	res, progress, err := s.drill(t, "--amcheck", "all", "--check-sql", sqlFile(t, "rows.sql", "SELECT count(*) = 1500 FROM t"))
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	checkPassed(t, res, s.backup, true)
	if !strings.Contains(progress, "check pg_amcheck: pass") || !strings.Contains(progress, "every relation of every database") {
		t.Errorf("--amcheck all did not check every relation:\n%s", progress)
	}
	if p := res.Phase(drillresult.PhaseMaterialize); p == nil || len(p.Steps) == 0 || p.Steps[0].Name != "command.restore" {
		t.Errorf("materialize phase %+v, want the command.restore step", p)
	}
	if td := res.Phase(drillresult.PhaseTeardown); td == nil || !strings.Contains(td.Detail, "command.cleanup ran") {
		t.Errorf("teardown %+v, want command.cleanup run", td)
	}
	if !strings.Contains(progress, "cleanup: /dev/loop") {
		t.Errorf("command.cleanup's output is not in the drill's:\n%s", progress)
	}
	if left := loops(); len(left) != 0 {
		t.Errorf("loop devices of restored copies left: %v", left)
	}
	if copies, _ := filepath.Glob(filepath.Join(snaps, "restore-*")); len(copies) != 0 {
		t.Errorf("copies of the image left: %v", copies)
	}
}
