package archive_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/testrig"
)

// procsWith returns the pids of the processes whose command line holds
// every one of words.
func procsWith(words ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		all := true
		for _, w := range words {
			if !bytes.Contains(cmdline, []byte(w)) {
				all = false
				break
			}
		}
		if all {
			out = append(out, pid)
		}
	}
	return out
}

// kill SIGKILLs the processes and returns how many it reached.
func kill(pids []int) int {
	n := 0
	for _, pid := range pids {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// backlog makes a backlog of at least n .ready files without failures:
// every WAL upload stalls (PostgreSQL's own and any archiver's) while the
// load goes on, then the connections are reset (the uploads are retried
// within the call) and the backlog is there for the archiver.
func (a *faultArchive) backlog(n int) {
	a.t.Helper()
	stalls := a.proxy.Count("stall-upload")
	a.proxy.Arm(testrig.FaultRule{Action: testrig.Stall, Upload: true, After: 64 << 10, Match: faultWALPut})
	a.wait("stall-upload", 1, stalls)
	status := filepath.Join(a.pg.DataDir, "pg_wal", "archive_status")
	faultPoll(a.t, 2*time.Minute, "backlog of .ready files", func() bool {
		ents, _ := os.ReadDir(status)
		ready := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".ready") {
				ready++
			}
		}
		return ready >= n
	})
	a.proxy.Clear()
	a.proxy.ResetAll()
}

// TestArchiverUnderPostgres: the background archiver drains a backlog
// while PostgreSQL archives, PostgreSQL's calls return from its records,
// and nothing is ever lost: not when it is SIGKILLed mid-upload, again
// and again, nor when the store is down for 30 seconds during a backlog.
func TestArchiverUnderPostgres(t *testing.T) {
	start := time.Now()
	a := faultStartArchive(t, true, 12)
	walDir := filepath.Join(a.pg.DataDir, "pg_wal")
	defer func() { t.Logf("%v in all", time.Since(start).Round(time.Second)) }()
	a.waitArchived(2)

	// A backlog without failures: every WAL upload stalls (PostgreSQL's
	// own and any archiver's) while the load goes on, then the
	// connections are reset (the uploads are retried within the call) and
	// the backlog is there for the archiver.
	diagnose := func() {
		b, _ := os.ReadFile(a.pg.LogFile)
		lines := strings.Split(string(b), "\n")
		st, _ := faultQuery(a.pg, "SELECT format('archived %s failed %s last %s', archived_count, failed_count, last_archived_wal) FROM pg_stat_archiver")
		ents, _ := os.ReadDir(filepath.Join(walDir, spool.DirName, "pushed"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Logf("%s; pushed/: %v; archivers %v; pushes %v\nserver log tail:\n%s", st, names, procsWith("wal-archiver", walDir),
			procsWith("wal-push", a.cfg), strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	backlog := func(n int) {
		t.Helper()
		defer func() {
			if t.Failed() {
				diagnose()
			}
		}()
		a.backlog(n)
	}
	backlog(5)
	faultPoll(t, 2*time.Minute, "PostgreSQL's calls answered from the archiver's records", func() bool {
		return strings.Count(faultLog(a.pg), "archived (by the background archiver)") >= 3
	})
	if failed := a.pg.QueryString(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("pg_stat_archiver failed_count %s while draining a backlog without faults", failed)
	}
	t.Logf("%v: backlog drained through the archiver", time.Since(start).Round(time.Second))

	// The archiver SIGKILLed mid-upload, three times: each time a
	// backlog, then a stalled upload; when the stalled upload is the
	// archiver's, it is killed. Every stall ends with a reset of all
	// connections, which makes whoever was stalled retry.
	for kills, tries := 0, 0; kills < 3; tries++ {
		if tries == 20 {
			t.Fatalf("the archiver was caught mid-upload only %d times in %d tries", kills, tries)
		}
		backlog(4)
		// The stall is for the archiver's uploads: arm it once one runs.
		faultPoll(t, 2*time.Minute, "the archiver to start on the backlog", func() bool {
			return len(procsWith("wal-archiver", walDir)) > 0
		})
		stalls := a.proxy.Count("stall-upload")
		a.proxy.Arm(testrig.FaultRule{Action: testrig.Stall, Upload: true, After: 128 << 10, Times: 1, Match: faultWALPut})
		a.wait("stall-upload", 1, stalls)
		n := kill(procsWith("wal-archiver", walDir))
		a.proxy.Clear()
		a.proxy.ResetAll()
		if n > 0 {
			kills++
			a.waitArchived(1)
			t.Logf("archiver killed mid-upload (%d); archived %d", kills, a.archived())
		}
	}

	// The store down for 30 seconds during a backlog.
	dials := a.proxy.Count(testrig.FaultDialFailed)
	a.minio.Kill(t)
	a.wait(testrig.FaultDialFailed, 1, dials)
	time.Sleep(30 * time.Second) // the length of the outage, not a synchronisation
	a.minio.Restart(t)
	a.waitArchived(2)
	t.Logf("%v: archiving again after the outage", time.Since(start).Round(time.Second))

	fig := a.drainAndCheck()
	t.Log(a.report(fig, 0))
	if fig.lost != 0 {
		t.Fatalf("lost %d segments", fig.lost)
	}
	// The spool stays bounded: once the archiver has gone, nothing but
	// unused records (at most push.ahead) and no upload in progress.
	faultPoll(t, 2*time.Minute, "the archiver to leave", func() bool { return len(procsWith("wal-archiver", walDir)) == 0 })
	pushed := filepath.Join(walDir, spool.DirName, "pushed")
	a.pg.Exec(t, "INSERT INTO fault_load (v) VALUES ('sweep'); SELECT pg_switch_wal()") // a call sweeps the spool
	a.waitArchived(1)
	ents, _ := os.ReadDir(pushed)
	var left []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".busy") || strings.Contains(e.Name(), ".tmp-") {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 10*time.Second {
				left = append(left, e.Name())
			}
		}
	}
	if len(left) > 0 || len(ents) > 16+4 {
		t.Fatalf("the spool is not bounded or not cleaned: %d entries, leftovers %v", len(ents), left)
	}
}

// TestPrefetcherKilled: the standing prefetcher SIGKILLed in the middle of
// a download never leads to a bad file: recovery reaches the target with
// exactly the right rows.
func TestPrefetcherKilled(t *testing.T) {
	src := faultMakeSource(t)
	p := testrig.StartFaultProxy(t, faultHost(t, src.s3.Endpoint))
	cfg := faultConfig(t, faultConfigDir(t), "kill.yaml", src.s3, p.URL(), "src", nil, "")
	rst := src.restore(t, cfg)
	walDir := filepath.Join(rst.DataDir, "pg_wal")
	done := make(chan string, 1)
	go func() { done <- faultRecover(t, rst) }()
	// Stall a download, kill the prefetchers, reset every connection (a
	// stalled download that was PostgreSQL's own wal-fetch resumes), until
	// a prefetcher has died mid-download three times.
	killed := 0
	for tries := 0; killed < 3 && tries < 20; tries++ {
		stalls := p.Count("stall")
		p.Arm(testrig.FaultRule{Action: testrig.Stall, After: 1 << 20, Times: 1, Match: faultWALGet(faultNotRanged)})
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := p.Wait(ctx, "stall", stalls+1)
		cancel()
		if err != nil {
			break // recovery needs no more downloads
		}
		killed += kill(procsWith("wal-prefetch", walDir))
		p.Clear()
		p.ResetAll()
		select {
		case outcome := <-done:
			done <- outcome
			tries = 20
		default:
		}
	}
	p.Clear()
	outcome := <-done
	if outcome != "promoted" {
		t.Fatalf("recovery %s:\n%s", outcome, faultLog(rst))
	}
	faultCheckTarget(t, rst)
	if killed == 0 {
		t.Fatal("no prefetcher was ever caught mid-download")
	}
	t.Logf("prefetchers SIGKILLed mid-download: %d", killed)
}
