package archive_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/archive"
	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/walrec"
)

// servedByFrontEnd matches the log line of a call walsnap-pg answered
// itself, and captures the file.
var servedByFrontEnd = regexp.MustCompile(`msg="(?:archived \(by the background archiver\)|restored \(prefetched\))" cmd=wal-(?:push|fetch) file=([0-9A-F]{24}) ms=\d+ by=walsnap-pg`)

// frontEndServed returns the files walsnap-pg answered itself, per the log.
func frontEndServed(log string) map[string]bool {
	out := map[string]bool{}
	for _, m := range servedByFrontEnd.FindAllStringSubmatch(log, -1) {
		out[m[1]] = true
	}
	return out
}

// gatedRestore is restore_command for TestFrontEndRecovery: walsnap-pg,
// except that a call for a file marked <name>.wait in the gate directory
// first waits until the test says <name>.go, so that the test decides
// when PostgreSQL may ask for it.
const gatedRestore = `#!/bin/sh
f=$1
if [ -e '%[1]s'/"$f".wait ]; then
	i=0
	while [ ! -e '%[1]s'/"$f".go ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done
fi
exec '%[2]s' --config '%[3]s' wal-fetch "$@"
`

// TestFrontEndRecovery: with walsnap-pg as restore_command, recovery
// reaches the target with exactly the right rows; walsnap-pg serves the
// standing prefetcher's verified segments itself, and a prefetched
// segment changed in the spool is never served: walsnap-pg hands the
// call to walsnap, which discards it and downloads the segment again.
func TestFrontEndRecovery(t *testing.T) {
	src := faultMakeSource(t)
	dir := faultConfigDir(t)
	cfg := faultConfig(t, dir, "fe.yaml", src.s3, src.s3.Endpoint, "src", nil, "")
	gate := filepath.Join(dir, "gate")
	if err := os.Mkdir(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "restore.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, gatedRestore, gate, testrig.WalsnapPG(t), cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	rst := src.restoreCmd(t, script+" %f %p")
	pdir := filepath.Join(rst.DataDir, "pg_wal", faultPrefetchDir)
	// The three segments after the backup's first, all replayed before
	// the target: PostgreSQL asks for each only once the prefetcher has
	// committed it; the middle one is changed first.
	gated := src.segs[1:4]
	tampered := gated[1]
	for _, n := range gated {
		if err := os.WriteFile(filepath.Join(gate, n+".wait"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan string, 1)
	go func() { done <- faultRecover(t, rst) }()
	for _, n := range gated {
		faultPoll(t, 2*time.Minute, "the prefetcher to commit "+n, func() bool {
			_, err := os.Stat(filepath.Join(pdir, n+walrec.RecordSuffix))
			return err == nil
		})
		if n == gated[0] {
			// The prefetcher yields the CPU to recovery's own work.
			procs := procsWith("wal-prefetch", filepath.Join(rst.DataDir, "pg_wal"))
			if len(procs) != 1 {
				t.Fatalf("prefetcher processes: %v", procs)
			}
			// The kernel reports 20 - nice.
			if p, err := syscall.Getpriority(syscall.PRIO_PROCESS, procs[0]); err != nil || 20-p != archive.PrefetchNice {
				t.Errorf("the prefetcher runs at nice %d (%v), not %d", 20-p, err, archive.PrefetchNice)
			}
		}
		if n == tampered {
			faultFlip(t, filepath.Join(pdir, n), faultSegSize/3)
		}
		if err := os.WriteFile(filepath.Join(gate, n+".go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-done; got != "promoted" {
		t.Fatalf("recovery: %s; log:\n%s", got, faultLog(rst))
	}
	faultCheckTarget(t, rst)
	log := faultLog(rst)
	served := frontEndServed(log)
	for _, n := range []string{gated[0], gated[2]} {
		if !served[n] {
			t.Errorf("walsnap-pg did not serve the prefetched %s itself (served %v):\n%s", n, served, log)
		}
	}
	if served[tampered] || regexp.MustCompile(`restored \(prefetched\).*`+tampered).MatchString(log) {
		t.Fatalf("the changed %s was served:\n%s", tampered, log)
	}
	if !regexp.MustCompile(`discarding a prefetched file.*` + tampered).MatchString(log) {
		t.Fatalf("the changed %s was not reported as discarded:\n%s", tampered, log)
	}
	t.Logf("walsnap-pg served %d segments itself: %v", len(served), served)
}

// TestFrontEndArchive: with walsnap-pg as archive_command, under load and
// through a backlog, PostgreSQL's calls for the files the background
// archiver archived are answered by walsnap-pg from its records, and
// every segment is in the repository, byte for byte.
func TestFrontEndArchive(t *testing.T) {
	a := faultStartArchiveWith(t, true, 12, testrig.WalsnapPG(t))
	a.waitArchived(2)
	a.backlog(5)
	faultPoll(t, 2*time.Minute, "calls answered by walsnap-pg from the archiver's records", func() bool {
		return len(frontEndServed(faultLog(a.pg))) >= 3
	})
	// PostgreSQL's own calls started it: it lingers for the next file.
	if walDir := filepath.Join(a.pg.DataDir, "pg_wal"); len(procsWith("wal-archiver", walDir, "linger")) == 0 {
		t.Fatalf("no lingering archiver for PostgreSQL's calls: %v", procsWith("wal-archiver", walDir))
	}
	fig := a.drainAndCheck()
	t.Log(a.report(fig, 0))
	if fig.lost != 0 {
		t.Fatalf("lost %d segments", fig.lost)
	}
	if fig.failedCount != "0" {
		t.Fatalf("pg_stat_archiver failed_count %s", fig.failedCount)
	}
}

// TestFrontEndNewSettings: records the archiver wrote with one set of
// settings never answer a call made with others. The archiver archives a
// backlog into repository A and leaves its records; then the config file
// names repository B. Every call PostgreSQL makes after that must put
// its file in B: walsnap-pg sees that the settings' stamp changed and
// hands the calls to walsnap, which sees records for another repository
// and archives the files into B.
func TestFrontEndNewSettings(t *testing.T) {
	fe := testrig.WalsnapPG(t)
	s3 := testrig.S3(t)
	dir := faultConfigDir(t)
	cfg := faultConfig(t, dir, "ab.yaml", s3, s3.Endpoint, "fe-a", nil, "")
	pg := testrig.StartPG(t, testrig.PGOptions{
		Conf: map[string]string{"archive_mode": "on", "archive_command": "/bin/false", "wal_keep_size": "1GB"},
		Env:  s3.Environ(),
	})
	walDir := filepath.Join(pg.DataDir, "pg_wal")
	pg.Exec(t, "CREATE TABLE pad (v text)")
	var backlog []string
	for range 6 {
		backlog = append(backlog, pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())"))
		pg.Exec(t, "INSERT INTO pad SELECT repeat(md5(g::text), 4) FROM generate_series(1, 2000) g")
		pg.Exec(t, "SELECT pg_switch_wal()")
	}
	// One call as PostgreSQL would make it (its environment, the data
	// directory as working directory, the same command line) archives
	// the first file into A and starts the archiver for the rest.
	pid, err := os.ReadFile(filepath.Join(pg.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	environ, err := os.ReadFile(filepath.Join("/proc", strings.SplitN(string(pid), "\n", 2)[0], "environ"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	call := pg.Command(ctx, fe, "--config", cfg, "wal-push", "pg_wal/"+backlog[0])
	call.Dir, call.Env = pg.DataDir, strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	// Output to a file, as PostgreSQL's log: the archiver the call starts
	// keeps it open.
	out, err := os.Create(filepath.Join(dir, "call.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	call.Stdout, call.Stderr = out, out
	if err := call.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("wal-push %s: %v\n%s", backlog[0], err, b)
	}
	// A call made by hand starts an archiver for the backlog that does
	// not linger (its caller may wait on the output they share).
	if all, lingering := procsWith("wal-archiver", walDir), procsWith("wal-archiver", walDir, "linger"); len(all) == 0 || len(lingering) != 0 {
		t.Fatalf("after a call by hand: archivers %v, lingering %v; want one that does not linger", all, lingering)
	}
	pushed := filepath.Join(walDir, spool.DirName, walrec.PushedDir)
	faultPoll(t, 2*time.Minute, "the archiver's records of the backlog", func() bool {
		for _, n := range backlog[1:] {
			if _, err := os.Stat(filepath.Join(pushed, n)); err != nil {
				return false
			}
		}
		return true
	})
	// The records are for A, with the settings of that call.
	cfgA, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(cfgA), "/fe-a", "/fe-b", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, "ALTER SYSTEM SET archive_command = '"+fe+" --config "+cfg+" wal-push %p'")
	pg.Reload(t)
	last := backlog[len(backlog)-1]
	pg.WaitFor(t, 3*time.Minute, "t", "SELECT coalesce(last_archived_wal >= $1, false) FROM pg_stat_archiver", last)
	objs, err := faultStore(t, s3, "fe-b").List(t.Context(), "wal/00000001/")
	if err != nil {
		t.Fatal(err)
	}
	inB := map[string]bool{}
	for _, o := range objs {
		inB[strings.TrimSuffix(filepath.Base(o.Key), compress.Default.Suffix())] = true
	}
	log := faultLog(pg)
	for _, n := range backlog {
		if !inB[n] {
			t.Errorf("%s was reported archived after the config named repository B, but B does not have it", n)
		}
	}
	if served := frontEndServed(log); len(served) > 0 {
		for _, n := range backlog {
			if served[n] {
				t.Errorf("walsnap-pg answered %s from a record made with other settings", n)
			}
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", log)
	}
	// The scenario happened: the archiver had archived the backlog into A.
	objs, err = faultStore(t, s3, "fe-a").List(t.Context(), "wal/00000001/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < len(backlog) {
		t.Fatalf("repository A holds %d WAL objects, not the backlog of %d", len(objs), len(backlog))
	}
}
