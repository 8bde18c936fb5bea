package basebackup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

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
	Log        *slog.Logger
	Progress   func(done, total int64)
	// now returns the time used for the backup id; tests override it.
	now func() time.Time
}

// Run takes one base backup with o.Provider and returns its manifest,
// already stored.
func Run(ctx context.Context, o Options) (*manifest.Manifest, error) {
	if o.Provider == nil {
		return nil, errors.New("backup: no provider")
	}
	b, err := Begin(ctx, o)
	if err != nil {
		return nil, err
	}
	defer b.Abort()
	cap, err := o.Provider.Capture(ctx, b.Job())
	if err != nil {
		return nil, fmt.Errorf("backup %s: %s: %w", b.m.ID, b.m.Provider, err)
	}
	return b.End(ctx, cap)
}

// Backup is a backup in progress: PostgreSQL is in backup mode on a
// dedicated session and the backup lock is held, from Begin until End or
// Abort. External orchestrators capture the data between the two.
type Backup struct {
	o    Options
	sess *pg.Session
	lock *backupLock
	m    *manifest.Manifest
	log  *slog.Logger
	done bool
}

// Begin checks the cluster and the repository, takes the backup lock and
// starts a non-exclusive backup. The caller must call End or Abort.
func Begin(ctx context.Context, o Options) (b *Backup, err error) {
	if o.now == nil {
		o.now = time.Now
	}
	if o.LockTTL <= 0 {
		o.LockTTL = 24 * time.Hour
	}
	if o.WALTimeout <= 0 {
		o.WALTimeout = 10 * time.Minute
	}
	provider := manifest.ProviderExternal
	if o.Provider != nil {
		provider = o.Provider.Name()
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
	m := &manifest.Manifest{Provider: provider, PGVersion: sess.VersionNum()}
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
	lockPath, owner, err := localLock(o.SpoolDir, m.PGData)
	if err != nil {
		return nil, err
	}
	lock, err := acquireLock(ctx, o.Repo, lockPath, owner, m.ID, o.LockTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.release(context.WithoutCancel(ctx))
		}
	}()
	log := o.Log.With("backup", m.ID)
	if m.StartTime, err = sess.Now(ctx); err != nil {
		return nil, err
	}
	if m.StartLSN, err = sess.StartBackup(ctx, m.Label, o.Fast); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	log.Info("backup started", "start_lsn", m.StartLSN, "provider", m.Provider, "from_standby", m.FromStandby)
	return &Backup{o: o, sess: sess, lock: lock, m: m, log: log}, nil
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

// Abort ends a backup that did not reach End: closing the session makes
// PostgreSQL abandon the non-exclusive backup; the lock is released and no
// manifest is written. It is a no-op after End.
func (b *Backup) Abort() {
	if b.done {
		return
	}
	b.done = true
	b.sess.Close(context.Background())
	b.lock.release(context.Background())
}

// End stops the backup, waits until the WAL that makes it consistent is in
// the repository, and writes the manifest for what was captured: complete,
// or pending then complete or failed when the capture finishes later
// (cap.Complete).
func (b *Backup) End(ctx context.Context, cap *Captured) (*manifest.Manifest, error) {
	defer b.Abort()
	m, log := b.m, b.log
	stop, err := b.sess.StopBackup(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	if m.StopTime, err = b.sess.Now(ctx); err != nil {
		return nil, err
	}
	if err := fillFromStop(m, stop); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	m.BytesIn, m.BytesOut = cap.BytesIn, cap.BytesOut
	log.Info("backup stopped", "stop_lsn", m.StopLSN, "stop_wal", m.StopWAL)

	if err := waitForWAL(ctx, b.o.Repo, m.StopWAL, b.o.WALTimeout, log); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	if err := m.SetPayload(cap.Payload); err != nil {
		return nil, err
	}
	if cap.Complete == nil {
		m.Status = manifest.StatusComplete
		if err := b.o.Repo.PutManifest(ctx, m); err != nil {
			return nil, err
		}
		return m, nil
	}
	m.Status = manifest.StatusPending
	if err := b.o.Repo.PutManifest(ctx, m); err != nil {
		return nil, err
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
