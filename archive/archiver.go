package archive

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
)

// The background archiver drains PostgreSQL's backlog of .ready files so
// that PostgreSQL's own (serial) archive_command calls find them archived.
//
// A wal-push call that sees more .ready files than its own starts one
// archiver per spool (the resolved walsnap executable, detached), unless
// one runs: it holds an flock on <spool>/archiver.lock. The archiver takes
// the .ready files in PostgreSQL's order, Concurrency at a time, and for
// each file it archived leaves a record in <spool>/pushed (see
// walrec.Pushed), which PostgreSQL's call for that file verifies and
// returns from. While it uploads a file it holds an flock on
// pushed/<name>.busy, so a call for that file waits for it instead of
// uploading twice; when it fails on a file it leaves the error in
// pushed/<name>.failed, and the call reports it and uploads the file
// itself. It never reads more than Concurrency files at once (memory: at
// most Concurrency segments and their compressed copies) and never keeps
// more than Ahead records that PostgreSQL has not used yet, so it runs at
// most that far ahead of the archiver. It leaves when nothing has been
// ready for archiverIdle. It never decides what is archived: PostgreSQL
// marks a file done only when its own call returns success.
const (
	failedSuffix = ".failed"
	// archiverIdle is how long an archiver without a server (or without
	// Pusher.ArchiverIdle) waits for new .ready files before it leaves.
	archiverIdle = 15 * time.Second
	// archiverPoll is how often it looks at archive_status when the
	// kernel does not tell it of new files (inotify), archiverPollWoken
	// when it does.
	archiverPoll      = 50 * time.Millisecond
	archiverPollWoken = 500 * time.Millisecond
	// busyWait bounds how long a call waits for the archiver to finish
	// the file it asks for.
	busyWait = 2 * time.Minute
	// callWait bounds how long the archiver holds a file it prepared
	// before PostgreSQL's call asked for it (PostgreSQL's archiver retries
	// a failed command after a minute at most).
	callWait = 2 * time.Minute
)

// errUnasked means PostgreSQL marked a file done that the archiver
// prepared and no call asked walsnap for: archive_command changed.
var errUnasked = errors.New("PostgreSQL archived it without asking walsnap")

// errNotAsked means no call asked for a prepared file within callWait.
var errNotAsked = errors.New("no call asked for it")

// RunArchiver is the background archiver for the WAL directory walDir. It
// returns at once when another archiver serves that spool, and when it has
// been idle for archiverIdle or ctx ends.
func (p *Pusher) RunArchiver(ctx context.Context, walDir string) error {
	sdir := spool.Dir(p.SpoolDir, walDir)
	pushedDir := filepath.Join(sdir, walrec.PushedDir)
	own := spool.OwnerOf(walDir)
	if err := own.MkdirAll(sdir, pushedDir); err != nil {
		return err
	}
	lock, err := helperLock(own, filepath.Join(sdir, walrec.ArchiverLock))
	if err != nil || lock == nil {
		return err
	}
	defer lock.Unlock()
	p.Log.Info("archiver started", "wal_dir", walDir)
	// A stopped server needs no archiver: leave at once, uploads and all
	// (PostgreSQL asks again when it runs).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// It lingers while its server runs, so that the next file of a quiet
	// server is uploaded by a warm process the moment it is ready; one
	// started where no server runs (a call by hand) leaves sooner.
	idle := cmp.Or(p.ArchiverIdle, archiverIdle)
	if !watchServer(ctx, cancel, dataDirOf(walDir)) {
		idle = min(idle, archiverIdle)
	}
	wake := wakeOn(ctx, filepath.Join(walDir, "archive_status"), pushedDir)

	type done struct {
		name string
		err  error
	}
	inflight := map[string]bool{}
	// archivedHere are the files this archiver archived: PostgreSQL marks
	// them done a moment after its call used the record, and until then
	// they must not be taken again.
	archivedHere := map[string]bool{}
	// retryAt holds off files that could not be taken (another process's
	// upload, a failed attempt) for a moment, so nothing spins.
	retryAt := map[string]time.Time{}
	// prepared are the files this archiver prepared before a call asked
	// for them (a quiet server's next file): each at most once.
	prepared := map[string]bool{}
	finished := make(chan done, max(1, p.Concurrency))
	idleSince := time.Now()
	tick := time.NewTicker(archiverPoll)
	if wake != nil {
		tick.Reset(archiverPollWoken)
	}
	defer tick.Stop()
	archived, failed := 0, 0
	checked := time.Now()
	retire := filepath.Join(sdir, walrec.ArchiverRetire)
	// abandoned is a file PostgreSQL archived without asking walsnap.
	abandoned := ""
	for {
		if ctx.Err() != nil {
			break
		}
		if time.Since(checked) > settingsCheck {
			checked = time.Now()
			if staleSettings(p.Settings, p.Restamp, retire) {
				p.Log.Info("archiver leaving: PostgreSQL's calls have other settings now (config file or command line); the next call starts one with them")
				break
			}
		}
		for name := range archivedHere {
			if _, err := os.Stat(filepath.Join(walDir, "archive_status", name+".ready")); err != nil {
				delete(archivedHere, name)
				// A call uses the record before PostgreSQL marks the file
				// done: one still there was never asked for.
				if _, err := os.Stat(filepath.Join(pushedDir, name)); err == nil {
					abandoned = name
				}
			}
		}
		if abandoned != "" {
			p.Log.Info("archiver leaving: PostgreSQL archived a file without asking walsnap (archive_command changed?)", "file", abandoned)
			break
		}
		if n := len(inflight); n < max(1, p.Concurrency) {
			for _, t := range p.pending(walDir, pushedDir, len(inflight), func(n string) bool {
				return inflight[n] || archivedHere[n] || time.Now().Before(retryAt[n])
			}, prepared) {
				if len(inflight) >= max(1, p.Concurrency) {
					break
				}
				inflight[t.name] = true
				if t.unasked {
					prepared[t.name] = true
				}
				go func() { finished <- done{t.name, p.archiveOne(ctx, walDir, pushedDir, t.name, own, t.unasked)} }()
			}
		}
		if len(inflight) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > idle {
			break
		}
		select {
		case d := <-finished:
			delete(inflight, d.name)
			if !errors.Is(d.err, errNotAsked) {
				// Only a file no call asked for stays prepared (not taken
				// unasked again): the map holds no more than those.
				delete(prepared, d.name)
			}
			switch {
			case errors.Is(d.err, errUnasked):
				abandoned = d.name
			case errors.Is(d.err, errNotAsked), ctx.Err() != nil:
				// Taken again when a call asks for it; or leaving.
			case errors.Is(d.err, errTaken):
				retryAt[d.name] = time.Now().Add(time.Second)
			case d.err != nil:
				retryAt[d.name] = time.Now().Add(time.Second)
				failed++
			default:
				archivedHere[d.name] = true
				archived++
			}
		case <-tick.C:
		case <-wake:
		case <-ctx.Done():
		}
	}
	for len(inflight) > 0 {
		d := <-finished
		delete(inflight, d.name)
	}
	p.Log.Info("archiver leaving", "archived", archived, "failed", failed)
	return nil
}

// pending lists the .ready files the archiver should take next: in
// PostgreSQL's order, without those skip names, those with a record or a
// failure marker, and those another process is archiving, and only as many
// as keep the unused records and the inflight uploads under Ahead. While
// a backlog waits (more than one .ready file) it runs ahead of
// PostgreSQL's calls. Otherwise it uploads only the file a call asked for
// (walrec.CallSuffix), so that it archives nothing PostgreSQL no longer
// asks walsnap to; but it takes a quiet server's next file the moment it
// is ready, unasked (once: not those in prepared), to read, hash and
// compress it while PostgreSQL starts the call that will ask for it.
func (p *Pusher) pending(walDir, pushedDir string, inflight int, skip func(name string) bool, prepared map[string]bool) []take {
	unused := 0
	if ents, err := os.ReadDir(pushedDir); err == nil {
		for _, e := range ents {
			if _, err := wal.Classify(e.Name()); err == nil {
				unused++
			}
		}
	}
	room := p.Ahead - unused - inflight
	if room <= 0 {
		return nil
	}
	backlog := readyCount(walDir) > 1
	var out []take
	for _, name := range readyFiles(walDir, "", 4*p.Ahead, pushedDir) {
		if skip(name) || fsutil.IsLocked(filepath.Join(pushedDir, name+walrec.BusySuffix)) {
			continue
		}
		t := take{name: name}
		if _, err := os.Stat(filepath.Join(pushedDir, name+walrec.CallSuffix)); err != nil && !backlog {
			if prepared[name] {
				continue
			}
			t.unasked = true
		}
		if _, err := os.Stat(filepath.Join(pushedDir, name+failedSuffix)); err == nil {
			continue // PostgreSQL's own call retries it and reports why
		}
		out = append(out, t)
		if len(out) == room {
			break
		}
	}
	return out
}

// take is a file the archiver takes; unasked when no call asked for it
// yet and no backlog waits: it is uploaded only once a call asks.
type take struct {
	name    string
	unasked bool
}

// readyCount is the number of .ready files in walDir's archive_status.
func readyCount(walDir string) int {
	ents, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ready") {
			n++
		}
	}
	return n
}

// claim takes name's busy lock in pushedDir, so that no other process
// uploads the file meanwhile (errTaken: another holds it), and returns
// what gives it up.
func claim(own spool.Owner, pushedDir, name string) (release func(), err error) {
	busy := filepath.Join(pushedDir, name+walrec.BusySuffix)
	f, err := own.CreateExcl(busy)
	if errors.Is(err, os.ErrExist) {
		if fsutil.IsLocked(busy) {
			return nil, errTaken
		}
		// Left by a process that died (SIGKILL) while uploading it.
		os.Remove(busy)
		f, err = own.CreateExcl(busy)
	}
	if errors.Is(err, os.ErrExist) {
		return nil, errTaken
	}
	if err != nil {
		return nil, err
	}
	lock, err := fsutil.LockFileWait(f)
	if err != nil {
		f.Close()
		os.Remove(busy)
		return nil, err
	}
	return func() {
		os.Remove(busy)
		lock.Unlock()
	}, nil
}

// errTaken means another process holds the file's busy lock.
var errTaken = errors.New("another process is archiving it")

// archiveOne archives one file for the archiver, holding its busy lock,
// and leaves a record or the reason it failed. An unasked file is
// prepared at once but uploaded only when a call asks for it (awaitCall).
func (p *Pusher) archiveOne(ctx context.Context, walDir, pushedDir, name string, own spool.Owner, unasked bool) error {
	release, err := claim(own, pushedDir, name)
	if err != nil {
		return err
	}
	defer func() {
		os.Remove(filepath.Join(pushedDir, name+walrec.CallSuffix))
		release()
	}()
	fctx, cancel := context.WithTimeout(ctx, p.fileTimeout())
	defer cancel()
	// The identity is read from the repository for every file, as a call
	// does: an archiver outliving a repository's replacement is refused.
	f := p.prepare(fctx, filepath.Join(walDir, name), identityOf(fctx, p.Repo))
	if f.res.err == nil && unasked {
		p.Log.Debug("prepared ahead of PostgreSQL's call; uploaded when it asks", "file", name, "ms", f.took.Milliseconds())
		t := time.Now()
		err := awaitCall(ctx, walDir, pushedDir, name)
		if errors.Is(err, errUnasked) {
			// A walsnap call that uploaded the file itself (it asked
			// before the archiver took it, then waited no longer) is not
			// a changed archive_command.
			if has, herr := p.Repo.HasWAL(ctx, name); herr != nil || has {
				return errNotAsked
			}
		}
		if err != nil {
			return err
		}
		f.res.callWaitT = time.Since(t)
		// The upload's own bound starts now.
		cancel()
		fctx, cancel = context.WithTimeout(ctx, p.fileTimeout())
		defer cancel()
	}
	r := f.res
	if r.err == nil {
		r = p.upload(fctx, f)
	}
	r.pushedFor = "archiver"
	p.report(r)
	if r.err != nil {
		own.WriteRecord(filepath.Join(pushedDir, name+failedSuffix), []byte(r.err.Error()))
		return r.err
	}
	// Not fsynced: a record lost in a crash only costs a re-push.
	return own.WriteRecord(filepath.Join(pushedDir, name), mustJSON(p.recordOf(r)))
}

// awaitCall waits until a call asks for name (its walrec.CallSuffix
// marker), for at most callWait (errNotAsked). When PostgreSQL marks the
// file done without asking, it returns errUnasked.
func awaitCall(ctx context.Context, walDir, pushedDir, name string) error {
	call := filepath.Join(pushedDir, name+walrec.CallSuffix)
	ready := filepath.Join(walDir, "archive_status", name+".ready")
	asked := func() bool {
		_, err := os.Stat(call)
		return err == nil
	}
	start := time.Now()
	for {
		if asked() {
			return nil
		}
		if _, err := os.Stat(ready); errors.Is(err, os.ErrNotExist) {
			// A call leaves its marker before PostgreSQL can mark the
			// file done.
			if asked() {
				return nil
			}
			return errUnasked
		}
		waited := time.Since(start)
		if waited > callWait {
			return errNotAsked
		}
		// PostgreSQL's call comes within milliseconds of the .ready file
		// unless its archiver is waiting to retry a failure.
		poll := 500 * time.Microsecond
		if waited > 100*time.Millisecond {
			poll = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// recordOf is the record of a file the archiver archived.
func (p *Pusher) recordOf(r pushResult) walrec.Pushed {
	return walrec.Pushed{Format: walrec.Format, Name: r.name, Repo: p.Repo.String(), Key: r.key, SHA256: r.sha,
		Size: int64(r.in), Stat: r.stat, Settings: p.Settings, Log: p.LogHint}
}

// fileTimeout bounds one file's upload by the archiver.
func (p *Pusher) fileTimeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return 5 * time.Minute
}

// waitArchiver waits while the archiver uploads name, and returns the
// archiver's error for it if it failed (the failure is then consumed: the
// caller pushes the file itself).
func (p *Pusher) waitArchiver(ctx context.Context, pushedDir, name string) error {
	busy := filepath.Join(pushedDir, name+walrec.BusySuffix)
	if fsutil.IsLocked(busy) {
		wctx, cancel := context.WithTimeout(ctx, busyWait)
		err := fsutil.WaitUnlocked(wctx, busy)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.Log.Warn("the archiver is still on this file; pushing it here", "file", name)
		}
	}
	failed := filepath.Join(pushedDir, name+failedSuffix)
	msg, err := os.ReadFile(failed)
	if err != nil {
		return nil
	}
	os.Remove(failed)
	return fmt.Errorf("the background archiver failed on it: %s", strings.TrimSpace(string(msg)))
}

// archiverRunning reports whether an archiver serves the spool sdir.
func archiverRunning(sdir string) bool {
	return fsutil.IsLocked(filepath.Join(sdir, walrec.ArchiverLock))
}
