package archive

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/walrec"
)

// helperLeft waits (up to 20 s) for a helper's run to return, and fails
// the test if it does not.
func helperLeft(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the %s did not leave", what)
	}
}

// waitFile waits (up to 20 s) until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", path)
}

// TestArchiverLeavesOnNewSettings: an archiver whose settings are no
// longer those of PostgreSQL's calls leaves long before its idle time —
// when the inputs of its settings stamp differently (the config file was
// edited), and when a call with other settings (a new archive_command)
// found one of its records — so the next call starts one with the new
// settings, and walsnap-pg is not left without records it may use.
func TestArchiverLeavesOnNewSettings(t *testing.T) {
	t.Run("config changed", func(t *testing.T) {
		e := newEnv(t)
		for no := uint64(1); no <= 3; no++ {
			e.write(1, no, true)
		}
		p := e.pusher()
		p.ArchiverIdle = time.Hour
		var stamp atomic.Value
		stamp.Store("a")
		p.Settings, p.Restamp = "a", func() string { return stamp.Load().(string) }
		done := make(chan error, 1)
		go func() { done <- p.RunArchiver(context.Background(), e.walDir) }()
		waitFile(t, filepath.Join(e.walDir, spool.DirName, walrec.PushedDir, name(1, 3)))
		stamp.Store("b")
		helperLeft(t, done, "archiver")
		if !strings.Contains(e.logs.String(), "archiver leaving: PostgreSQL's calls have other settings") {
			t.Fatalf("no reason logged:\n%s", e.logs)
		}
	})
	t.Run("a call with other settings", func(t *testing.T) {
		e := newEnv(t)
		paths := map[uint64]string{}
		for no := uint64(1); no <= 3; no++ {
			paths[no], _ = e.write(1, no, true)
		}
		archiver := e.pusher()
		archiver.ArchiverIdle, archiver.Settings = time.Hour, "a"
		done := make(chan error, 1)
		go func() { done <- archiver.RunArchiver(context.Background(), e.walDir) }()
		waitFile(t, filepath.Join(e.walDir, spool.DirName, walrec.PushedDir, name(1, 2)))
		call := e.pusher()
		call.CallSettings = "b"
		if err := call.Push(context.Background(), paths[2]); err != nil {
			t.Fatal(err)
		}
		// The record is still good evidence for walsnap: same repository.
		if !strings.Contains(e.logs.String(), "archived (by the background archiver)") {
			t.Fatalf("the record was not used:\n%s", e.logs)
		}
		helperLeft(t, done, "archiver")
		// A call with the archiver's own settings retires nothing.
		e2 := newEnv(t)
		p2, _ := e2.write(1, 1, true)
		e2.write(1, 2, true)
		a2 := e2.pusher()
		a2.ArchiverIdle, a2.Settings = 300*time.Millisecond, "a"
		if err := a2.RunArchiver(context.Background(), e2.walDir); err != nil {
			t.Fatal(err)
		}
		same := e2.pusher()
		same.CallSettings = "a"
		if err := same.Push(context.Background(), p2); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(e2.walDir, spool.DirName, walrec.ArchiverRetire)); !os.IsNotExist(err) {
			t.Fatalf("a call with the archiver's settings retired it: %v", err)
		}
	})
}

// TestPrefetcherLeavesOnNewSettings: the same for the standing
// prefetcher, which would otherwise follow recovery with old settings.
func TestPrefetcherLeavesOnNewSettings(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 6)
	f := e.fetcher()
	f.PrefetchIdle = time.Hour
	var stamp atomic.Value
	stamp.Store("a")
	f.Settings, f.Restamp = "a", func() string { return stamp.Load().(string) }
	done := make(chan error, 1)
	go func() { done <- f.RunPrefetch(context.Background(), name(1, 1), e.walDir) }()
	waitFile(t, filepath.Join(e.walDir, spool.DirName, walrec.PrefetchDir, name(1, 2)+walrec.RecordSuffix))
	stamp.Store("b")
	helperLeft(t, done, "prefetcher")
	if !strings.Contains(e.logs.String(), "prefetcher leaving: PostgreSQL's calls have other settings") {
		t.Fatalf("no reason logged:\n%s", e.logs)
	}

	// A wal-fetch with other settings that meets one of its records.
	e.logs.Reset()
	f2 := e.fetcher()
	f2.PrefetchIdle, f2.Settings = time.Hour, "a"
	done = make(chan error, 1)
	go func() { done <- f2.RunPrefetch(context.Background(), name(1, 1), e.walDir) }()
	waitFile(t, filepath.Join(e.walDir, spool.DirName, walrec.PrefetchDir, name(1, 3)+walrec.RecordSuffix))
	call := e.fetcher()
	call.CallSettings = "b"
	if err := call.Fetch(context.Background(), name(1, 3), filepath.Join(e.walDir, "RECOVERYXLOG")); err != nil {
		t.Fatal(err)
	}
	helperLeft(t, done, "prefetcher")
}

// lingeringArchiver runs a background archiver for e (as PostgreSQL's
// calls start one: lingering) that logs at debug level, and waits until it
// serves the spool; cancel stops it and done reports its return.
func (e *env) lingeringArchiver(t *testing.T) (cancel func(), done <-chan error) {
	archiver := e.pusher()
	archiver.Log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	archiver.ArchiverIdle = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ran := make(chan error, 1)
	go func() { ran <- archiver.RunArchiver(ctx, e.walDir) }()
	waitFile(t, filepath.Join(e.walDir, spool.DirName, walrec.ArchiverLock))
	return cancel, ran
}

// TestArchiverTakesEachNewFile: on a quiet server (one .ready file at a
// time) a lingering archiver takes each new file the moment it is ready,
// and PostgreSQL's call for it only confirms the archiver's upload: one
// upload per file, never the call's and the archiver's both.
func TestArchiverTakesEachNewFile(t *testing.T) {
	e := newEnv(t)
	cancel, done := e.lingeringArchiver(t)
	for no := uint64(1); no <= 4; no++ {
		e.logs.Reset()
		path, data := e.write(1, no, true)
		// Taken without a call (a call that came first would wait up to
		// walrec's pickup bound for it, which a loaded machine can miss).
		e.logs.await(t, `uploaded when it asks" file=`+name(1, no))
		if err := e.pusher().Push(context.Background(), path); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.logs.String(), "archived (by the background archiver)") {
			t.Fatalf("file %d: the call did not use the archiver's upload:\n%s", no, e.logs)
		}
		if strings.Count(e.logs.String(), "msg=archived ") != 1 || strings.Contains(e.logs.String(), "already archived") {
			t.Fatalf("file %d: not exactly one upload:\n%s", no, e.logs)
		}
		if got, err := e.fetchBytes(name(1, no)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("file %d not in the repository: %v", no, err)
		}
		// PostgreSQL marks it done.
		status := filepath.Join(e.walDir, "archive_status", name(1, no))
		if err := os.Rename(status+".ready", status+".done"); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	helperLeft(t, done, "archiver")
}

// TestArchiverFollowsCalls: without a backlog the archiver uploads only
// the file a call asks for, so that it archives nothing once PostgreSQL no
// longer calls walsnap (archive_command changed) — it prepares a lone
// file unasked, once; with a backlog it runs ahead; and when PostgreSQL
// marks done a file the archiver took but no call asked for, it leaves.
func TestArchiverFollowsCalls(t *testing.T) {
	e := newEnv(t)
	p := e.pusher()
	pushedDir := filepath.Join(e.walDir, spool.DirName, walrec.PushedDir)
	if err := os.MkdirAll(pushedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }
	e.write(1, 1, true)
	want := func(what string, got []take, w ...take) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("%s: the archiver would take %v, want %v", what, got, w)
		}
	}
	want("one .ready file, no call", p.pending(e.walDir, pushedDir, 0, none, nil), take{name(1, 1), true})
	want("one .ready file prepared before", p.pending(e.walDir, pushedDir, 0, none, map[string]bool{name(1, 1): true}))
	if err := os.WriteFile(filepath.Join(pushedDir, name(1, 1)+walrec.CallSuffix), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want("a called file", p.pending(e.walDir, pushedDir, 0, none, map[string]bool{name(1, 1): true}), take{name(1, 1), false})
	os.Remove(filepath.Join(pushedDir, name(1, 1)+walrec.CallSuffix))
	e.write(1, 2, true)
	e.write(1, 3, true)
	want("a backlog of 3", p.pending(e.walDir, pushedDir, 0, none, nil), take{name(1, 1), false}, take{name(1, 2), false}, take{name(1, 3), false})

	// The backlog archived ahead, then marked done by PostgreSQL without
	// a walsnap call (archive_command = 'true').
	p.ArchiverIdle = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.RunArchiver(ctx, e.walDir) }()
	for no := uint64(1); no <= 3; no++ {
		waitFile(t, filepath.Join(pushedDir, name(1, no)))
	}
	for no := uint64(1); no <= 3; no++ {
		status := filepath.Join(e.walDir, "archive_status", name(1, no))
		if err := os.Rename(status+".ready", status+".done"); err != nil {
			t.Fatal(err)
		}
	}
	helperLeft(t, done, "archiver")
	if !strings.Contains(e.logs.String(), "archiver leaving: PostgreSQL archived a file without asking walsnap") {
		t.Fatalf("no reason logged:\n%s", e.logs)
	}
}

// TestArchiverPreparesAhead: a lingering archiver reads and compresses a
// quiet server's next file the moment it is ready, but uploads it only
// when PostgreSQL's call asks for it; when PostgreSQL marks the file done
// without asking walsnap (archive_command changed), it leaves having
// uploaded nothing — but not when a walsnap call uploaded it itself.
func TestArchiverPreparesAhead(t *testing.T) {
	e := newEnv(t)
	_, done := e.lingeringArchiver(t)

	path, data := e.write(1, 1, true)
	e.logs.await(t, "prepared ahead of PostgreSQL's call")
	if ok, err := e.repo.HasWAL(context.Background(), name(1, 1)); err != nil || ok {
		t.Fatalf("uploaded before a call asked (has=%v, err=%v):\n%s", ok, err, e.logs)
	}
	if err := e.pusher().Push(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "archived (by the background archiver)") || strings.Count(logs, "msg=archived ") != 1 ||
		!regexp.MustCompile(`msg=archived file=`+name(1, 1)+` .*call_wait_ms=`).MatchString(logs) {
		t.Fatalf("the call did not use the prepared upload, exactly once:\n%s", logs)
	}
	if got, err := e.fetchBytes(name(1, 1)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file 1 not in the repository: %v", err)
	}
	markDone := func(no uint64) {
		t.Helper()
		status := filepath.Join(e.walDir, "archive_status", name(1, no))
		if err := os.Rename(status+".ready", status+".done"); err != nil {
			t.Fatal(err)
		}
	}
	markDone(1)

	// File 2 is uploaded by a walsnap call of its own (one that stopped
	// waiting for the archiver) and marked done: not a changed
	// archive_command, the archiver stays and takes file 3.
	e.logs.Reset()
	path, _ = e.write(1, 2, true)
	e.logs.await(t, `uploaded when it asks" file=`+name(1, 2))
	if r := e.pusher().pushOne(context.Background(), path, identityOf(context.Background(), e.repo)); r.err != nil {
		t.Fatal(r.err)
	}
	markDone(2)
	e.write(1, 3, true)
	e.logs.await(t, `uploaded when it asks" file=`+name(1, 3))
	if strings.Contains(e.logs.String(), "archiver leaving") {
		t.Fatalf("left over a file a walsnap call archived:\n%s", e.logs)
	}

	// File 3 is archived by another archive_command.
	markDone(3)
	helperLeft(t, done, "archiver")
	if !strings.Contains(e.logs.String(), "archiver leaving: PostgreSQL archived a file without asking walsnap") {
		t.Fatalf("no reason logged:\n%s", e.logs)
	}
	if ok, err := e.repo.HasWAL(context.Background(), name(1, 3)); err != nil || ok {
		t.Fatalf("a file no call asked for was uploaded (has=%v, err=%v):\n%s", ok, err, e.logs)
	}
}
