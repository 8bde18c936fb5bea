package basebackup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/backuplock"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// ErrBackupRunning means another backup (or a delete) holds the lock.
var ErrBackupRunning = backuplock.ErrHeld

// Options configures one backup.
type Options struct {
	Repo     *repo.Repo
	Conn     pg.ConnConfig
	PGData   string // expected data directory; "" = whatever the server reports
	SpoolDir string // the cluster's spool (spool_dir); "" = pg_wal/.walsnap
	Provider Provider
	Fast     bool   // request an immediate checkpoint
	Label    string // "" = "walsnap <id>"
	// LockTTL bounds how long a crashed backup's repository lock can block
	// others (a live backup on this host is detected by its pid sooner).
	LockTTL time.Duration
	// WALTimeout bounds the wait for the stop segment to reach the
	// repository (a standby does not wait for archiving itself).
	WALTimeout time.Duration
	// Pin pins the backup (repo.Pin): retention never deletes it.
	Pin      bool
	Log      *slog.Logger
	Progress func(done, total int64)
	// now returns the time used for the backup id; tests override it.
	now func() time.Time
}

// Run takes one base backup with o.Provider and returns its manifest,
// already stored. What a Preparer can check is checked before
// pg_backup_start; between pg_backup_start and pg_backup_stop only the
// capture runs, within its window's deadline.
func Run(ctx context.Context, o Options) (*manifest.Manifest, error) {
	if o.Provider == nil {
		return nil, errors.New("backup: no provider")
	}
	var win *Window
	b, err := begin(ctx, o, o.Provider.Name(), func(ctx context.Context, job *Job) (err error) {
		win, err = prepare(ctx, o.Provider, job)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer b.Abort()
	cap, err := b.capture(ctx, win)
	if err != nil {
		return nil, b.fail(ctx, win, fmt.Errorf("backup %s: %s: %w", b.m.ID, b.m.Provider, err))
	}
	m, err := b.End(ctx, cap)
	if err != nil && !b.stored {
		return nil, b.fail(ctx, win, err)
	}
	return m, err
}

// prepare runs p's preparation, if it has one, and returns its window.
func prepare(ctx context.Context, p Provider, job *Job) (*Window, error) {
	if pp, ok := p.(Preparer); ok {
		return pp.Prepare(ctx, job)
	}
	return &Window{Capture: func(ctx context.Context) (*Captured, error) { return p.Capture(ctx, job) }}, nil
}

// ErrWindowTimeout is the cause of a capture cut short by its window's
// deadline.
var ErrWindowTimeout = errors.New("the backup window reached its deadline")

// capture runs the window's capture under its deadline.
func (b *Backup) capture(ctx context.Context, win *Window) (*Captured, error) {
	if win.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, win.Timeout, ErrWindowTimeout)
		defer cancel()
	}
	cap, err := win.Capture(ctx)
	if err != nil && errors.Is(context.Cause(ctx), ErrWindowTimeout) {
		return nil, fmt.Errorf("%w (%s %s), so the backup is aborted: %w", ErrWindowTimeout, win.Setting, win.Timeout, err)
	}
	return cap, err
}

// fail ends a backup that no manifest names, with err: PostgreSQL leaves
// backup mode first, then the window's Cleanup removes what the capture
// left.
func (b *Backup) fail(ctx context.Context, win *Window, err error) error {
	b.Abort()
	if win.Cleanup == nil {
		return err
	}
	if cerr := win.Cleanup(context.WithoutCancel(ctx)); cerr != nil {
		return errors.Join(err, fmt.Errorf("clean up after the failed backup: %w", cerr))
	}
	return err
}

// Backup is a backup in progress: PostgreSQL is in backup mode on a
// dedicated session and the backup lock is held, from begin until End or
// Abort. External orchestrators capture the data between the two.
type Backup struct {
	o       Options
	sess    *pg.Session
	lock    *backuplock.Lock
	m       *manifest.Manifest
	log     *slog.Logger
	started time.Time // when pg_backup_start returned, by this host's clock
	// closed: the session is closed; released: so is the lock; stored: a
	// manifest names the backup.
	closed, released, stored bool
}

// begin checks the cluster and the repository, takes the backup lock,
// runs prepare (when not nil) and starts a non-exclusive backup whose
// provider is name. The caller must call End or Abort.
func begin(ctx context.Context, o Options, name manifest.Provider, prepare func(ctx context.Context, job *Job) error) (b *Backup, err error) {
	if o.now == nil {
		o.now = time.Now
	}
	if o.LockTTL <= 0 {
		o.LockTTL = 24 * time.Hour
	}
	if o.WALTimeout <= 0 {
		o.WALTimeout = 10 * time.Minute
	}
	sess, err := pg.Connect(ctx, o.Conn)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			sess.Close(context.WithoutCancel(ctx))
		}
	}()
	m := &manifest.Manifest{Provider: name, PGVersion: sess.VersionNum()}
	if m.SystemID, err = sess.SystemID(ctx); err != nil {
		return nil, err
	}
	if m.SegmentSize, err = sess.SegmentSize(ctx); err != nil {
		return nil, err
	}
	warnings, err := sess.CheckArchiving(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup refused: %w", err)
	}
	for _, w := range warnings {
		o.Log.Warn(w)
	}
	// The repository must belong to this cluster; a new repository takes
	// its identity from it.
	want := repo.Identity{SystemID: m.SystemID, SegmentSize: m.SegmentSize, PGMajor: m.PGMajor()}
	id, err := o.Repo.InitIdentity(ctx, want)
	if err != nil {
		return nil, err
	}
	if err := id.CheckSame(want); err != nil {
		return nil, fmt.Errorf("backup refused: %w", err)
	}
	if m.FromStandby, err = sess.InRecovery(ctx); err != nil {
		return nil, err
	}
	if m.PGData, err = dataDirectory(ctx, sess, o.PGData); err != nil {
		return nil, err
	}
	if m.Tablespaces, err = sess.Tablespaces(ctx); err != nil {
		return nil, err
	}
	m.Host, _ = os.Hostname()
	m.ID = manifest.NewID(o.now())
	m.Label = o.Label
	if m.Label == "" {
		m.Label = "walsnap " + m.ID
	}
	lockPath, owner, err := backuplock.LocalPath(o.SpoolDir, m.PGData)
	if err != nil {
		return nil, err
	}
	lock, err := backuplock.Acquire(ctx, o.Repo, lockPath, owner, repo.Lease{BackupID: m.ID}, o.LockTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Release(context.WithoutCancel(ctx))
		}
	}()
	if o.Pin { // before pg_backup_start, as every step that can fail
		if err := o.Repo.Pin(ctx, m.ID); err != nil {
			return nil, fmt.Errorf("backup %s: %w", m.ID, err)
		}
	}
	b = &Backup{o: o, sess: sess, lock: lock, m: m, log: o.Log.With("backup", m.ID)}
	if prepare != nil {
		if err := prepare(ctx, b.Job()); err != nil {
			return nil, fmt.Errorf("backup refused: %s: %w", name, err)
		}
	}
	if m.StartTime, err = sess.Now(ctx); err != nil {
		return nil, err
	}
	if m.StartLSN, err = sess.StartBackup(ctx, m.Label, o.Fast); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	b.started = time.Now()
	b.log.Info("backup started", "start_lsn", m.StartLSN, "provider", m.Provider, "from_standby", m.FromStandby)
	return b, nil
}

// ID is the backup's id.
func (b *Backup) ID() string { return b.m.ID }

// StartLSN is where the backup starts.
func (b *Backup) StartLSN() wal.LSN { return b.m.StartLSN }

// Job describes the backup for a provider.
func (b *Backup) Job() *Job {
	m := b.m
	return &Job{ID: m.ID, Label: m.Label, SystemID: m.SystemID, StartLSN: m.StartLSN, PGData: m.PGData, Tablespaces: m.Tablespaces, Repo: b.o.Repo, Log: b.log, Progress: b.o.Progress}
}

// Abort ends a backup: closing the session makes PostgreSQL abandon a
// non-exclusive backup not yet stopped, and the lock is released. It
// writes no manifest, and does nothing more when called again (or after
// End).
func (b *Backup) Abort() {
	b.closeSession()
	if !b.released {
		b.released = true
		b.lock.Release(context.Background())
	}
}

func (b *Backup) closeSession() {
	if !b.closed {
		b.closed = true
		b.sess.Close(context.Background())
	}
}

// End stops the backup, waits until the WAL that makes it consistent is in
// the repository, and writes the manifest for what was captured: complete,
// or pending then complete or failed when the capture finishes later
// (cap.Complete).
func (b *Backup) End(ctx context.Context, cap *Captured) (*manifest.Manifest, error) {
	defer b.Abort()
	if err := b.stop(ctx); err != nil {
		return nil, err
	}
	if err := b.store(ctx, cap); err != nil {
		return nil, err
	}
	return b.complete(ctx, cap)
}

// stop runs pg_backup_stop, which ends the backup window, and records what
// it returned. The session is closed after it.
func (b *Backup) stop(ctx context.Context) error {
	defer b.closeSession()
	m := b.m
	b.log.Info("stopping the backup: on a primary, PostgreSQL waits until the backup's last WAL segment is archived")
	stop, err := b.sess.StopBackup(ctx)
	if err != nil {
		return fmt.Errorf("backup %s: %w", m.ID, err)
	}
	window := time.Since(b.started).Round(time.Millisecond)
	if m.StopTime, err = b.sess.Now(ctx); err != nil {
		return err
	}
	if err := fillFromStop(m, stop); err != nil {
		return fmt.Errorf("backup %s: %w", m.ID, err)
	}
	b.log.Info("backup stopped", "stop_lsn", m.StopLSN, "stop_wal", m.StopWAL, "window", window)
	return nil
}

// store waits until the stop segment is in the repository and writes the
// manifest of what cap captured: complete, or pending while cap.Complete
// is left to run.
func (b *Backup) store(ctx context.Context, cap *Captured) error {
	m := b.m
	if err := waitForWAL(ctx, b.o.Repo, m.StopWAL, b.o.WALTimeout, b.log); err != nil {
		return fmt.Errorf("backup %s: %w", m.ID, err)
	}
	m.BytesIn, m.BytesOut = cap.BytesIn, cap.BytesOut
	if err := m.SetPayload(cap.Payload); err != nil {
		return err
	}
	m.Status = manifest.StatusComplete
	if cap.Complete != nil {
		m.Status = manifest.StatusPending
	}
	if err := b.o.Repo.PutManifest(ctx, m); err != nil {
		return err
	}
	b.stored = true
	return nil
}

// complete runs cap.Complete, when there is one, and replaces the pending
// manifest with the final one: complete, or failed with its error.
func (b *Backup) complete(ctx context.Context, cap *Captured) (*manifest.Manifest, error) {
	m := b.m
	if cap.Complete == nil {
		return m, nil
	}
	payload, cerr := cap.Complete(ctx)
	if payload != nil {
		if err := m.SetPayload(payload); err != nil {
			return nil, err
		}
	}
	m.Status = manifest.StatusComplete
	if cerr != nil {
		m.Status, m.Error = manifest.StatusFailed, cerr.Error()
	}
	if err := b.o.Repo.FinishManifest(context.WithoutCancel(ctx), m); err != nil {
		return nil, err
	}
	if cerr != nil {
		return m, fmt.Errorf("backup %s failed: %w", m.ID, cerr)
	}
	return m, nil
}

// dataDirectory returns the server's data directory, checked against the
// configured one when there is one.
func dataDirectory(ctx context.Context, sess *pg.Session, configured string) (string, error) {
	dir, err := sess.DataDirectory(ctx)
	if err != nil {
		return "", err
	}
	if configured == "" {
		return dir, nil
	}
	a, errA := filepath.EvalSymlinks(dir)
	b, errB := filepath.EvalSymlinks(configured)
	if errA != nil || errB != nil || a != b {
		return "", fmt.Errorf("backup refused: the server's data directory is %s, not the configured pgdata %s", dir, configured)
	}
	return dir, nil
}

// fillFromStop records what pg_backup_stop returned and what its label says.
func fillFromStop(m *manifest.Manifest, stop pg.StopResult) error {
	label, err := pg.ParseBackupLabel(stop.BackupLabel)
	if err != nil {
		return err
	}
	if label.StartLSN != m.StartLSN {
		return fmt.Errorf("backup_label start %s differs from pg_backup_start's %s", label.StartLSN, m.StartLSN)
	}
	m.StopLSN = stop.LSN
	m.BackupLabel = stop.BackupLabel
	m.TablespaceMap = stop.TablespaceMap
	m.Timeline = label.StartTimeline
	m.StartWAL = wal.SegmentForLSN(m.Timeline, m.StartLSN, m.SegmentSize).Name(m.SegmentSize)
	// The stop LSN may be the first byte of the next segment; the record
	// that makes the backup consistent ends before it.
	end := m.StopLSN
	if end > m.StartLSN && uint64(end)%m.SegmentSize == 0 {
		end--
	}
	m.StopWAL = wal.SegmentForLSN(m.Timeline, end, m.SegmentSize).Name(m.SegmentSize)
	return nil
}

// waitForWAL waits until the segment holding the backup's stop point is in
// the repository: without it the backup can never become consistent.
// pg_backup_stop waits for archiving on a primary; a standby does not.
func waitForWAL(ctx context.Context, r *repo.Repo, segment string, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for first := true; ; first = false {
		if ok, err := r.HasWAL(ctx, segment); err == nil && ok {
			return nil
		}
		if first {
			log.Info("waiting for WAL to reach the repository", "segment", segment)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("WAL segment %s did not reach the repository within %v: is archiving working (pg_stat_archiver)?", segment, timeout)
		case <-time.After(time.Second):
		}
	}
}
