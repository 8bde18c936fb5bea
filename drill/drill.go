// Package drill proves that a backup restores: it restores the backup
// somewhere that cannot touch production (a scratch directory, or volumes
// mounted under one), recovers it with archiving off and no TCP listener
// to the target, promotes the copy, checks it, measures every phase, and
// removes everything it built. The result goes into the repository, for
// walsnap status, and a backup that passes is marked drilled.
//
// The drill is a restore followed by checks: it builds on package restore
// (the backup choice, the providers, the recovery configuration, the
// server start), which is why, alone among the top-level packages, it
// imports another (internal/layering).
package drill

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/buildinfo"
	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/restore"
)

// Amcheck scopes of the pg_amcheck check.
const (
	AmcheckCatalogs = "catalogs" // the system catalogs of every database
	AmcheckAll      = "all"      // every relation of every database
	AmcheckNone     = "none"     // not run
)

// DefaultScratch is where a drill makes its scratch directory.
const DefaultScratch = "/var/tmp"

// TagDrill tags the EBS volumes a drill creates; its value is the drill's
// id.
const TagDrill = "walsnap:drill"

// SQLCheck is a --check-sql file: its name and its statements.
type SQLCheck struct {
	Name string
	SQL  string
}

// Options configure a drill.
type Options struct {
	Repo *repo.Repo
	// BackupID is the backup to drill; "" or LATEST: the newest complete
	// backup that reaches the target.
	BackupID string
	// Target is where recovery stops (TargetEnd: the end of the archived
	// WAL). The drill always promotes at it.
	Target restore.Target
	// Providers are the restore providers' settings; the drill mounts EBS
	// volumes under its scratch directory and tags them walsnap:drill.
	Providers restore.ProviderSettings
	// RestoreCommand is the restore_command of the scratch copy
	// (restore.CommandLine).
	RestoreCommand string
	Owner          string // OS user that runs the server ("" = postgres)
	PGBin          string // directory of pg_ctl ("" = found; see restore.FindPGCtl)
	User           string // role the checks connect as ("" = $PGUSER, else postgres)
	// Scratch is the directory in which the drill makes its own
	// (DefaultScratch when "").
	Scratch string
	// ServerConfig is the source's postgresql.conf, for data directories
	// that keep it elsewhere (Debian's /etc/postgresql/N/main); "" = the
	// data directory's own, when it has one.
	ServerConfig string
	// Set are server settings of the scratch copy (--set NAME=VALUE).
	Set [][2]string
	// Amcheck is AmcheckCatalogs (""), AmcheckAll or AmcheckNone.
	Amcheck string
	// CheckSQL are run in CheckDatabase ("" = postgres) after promotion.
	CheckSQL      []SQLCheck
	CheckDatabase string
	// Keep leaves the promoted copy running (and, after a failure, what
	// was built) for a look; the drill then says how to remove it.
	Keep bool
	// ReplayTimeout bounds the replay (0: no limit).
	ReplayTimeout time.Duration
	Out           io.Writer // progress lines
	Log           *slog.Logger
}

// ErrInterrupted means the drill was stopped (its context ended: a
// signal) before it had a verdict; it cleaned up, and stored no result.
var ErrInterrupted = errors.New("drill interrupted")

// teardownTimeout bounds the teardown, which runs even after a signal
// (detaching and deleting volumes may take minutes).
const teardownTimeout = 20 * time.Minute

// run is one drill.
type run struct {
	o       Options
	res     *drillresult.Result
	began   time.Time
	cat     *catalog.Catalog
	m       *manifest.Manifest
	pgctl   string
	scratch string // the drill's own directory
	dest    restore.Destinations
	built   *restore.Built
	started bool           // the server may be running
	spans   []catalog.Span // the route of recovery through the timelines
	endSeg  uint64         // TargetEnd: the newest segment, which recovery must reach
	server  server
}

// Run drills a backup and stores its result in the repository (unless
// interrupted). It returns the result; the error is the drill's failure,
// ErrInterrupted, or that the result could not be stored.
func Run(ctx context.Context, o Options) (*drillresult.Result, error) {
	o.Amcheck = cmp.Or(o.Amcheck, AmcheckCatalogs)
	o.Scratch = cmp.Or(o.Scratch, DefaultScratch)
	o.CheckDatabase = cmp.Or(o.CheckDatabase, pg.DefaultDatabase)
	// pg_amcheck would take the OS user's name (root) for the role.
	o.User = cmp.Or(o.User, os.Getenv("PGUSER"), pg.DefaultUser)
	if o.Target.Kind != restore.TargetEnd {
		o.Target.Action = restore.ActionPromote
	}
	host, _ := os.Hostname()
	now := time.Now()
	r := &run{o: o, began: now, res: &drillresult.Result{
		ID: manifest.NewID(now), Time: now.UTC(), WalsnapVersion: buildinfo.Version(), Host: host,
		Repository: o.Repo.String(), Target: o.Target.String(), Phases: []drillresult.Phase{}, Checks: []drillresult.Check{},
	}}
	r.printf("drill %s: target %s\n", r.res.ID, o.Target)
	err := r.drill(ctx)
	switch {
	case r.scratch == "": // nothing was built
	case o.Keep:
		r.res.Kept = true
		r.keepNotes()
	default:
		if terr := r.phase(drillresult.PhaseTeardown, func(p *drillresult.Phase) error { return r.teardown(ctx, p) }); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	res := r.res
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	res.Seconds = time.Since(r.began).Seconds()
	if ctx.Err() != nil {
		r.printf("drill %s interrupted; what it built is removed\n", res.ID)
		return res, errors.Join(ErrInterrupted, err)
	}
	r.summary()
	storeErr := r.store(context.WithoutCancel(ctx))
	if err != nil {
		return res, errors.Join(err, storeErr)
	}
	return res, storeErr
}

// drill runs the phases up to the checks.
func (r *run) drill(ctx context.Context) error {
	if err := r.phase(drillresult.PhaseChoose, func(p *drillresult.Phase) error { return r.choose(ctx, p) }); err != nil {
		return err
	}
	recovering := time.Now()
	if err := r.phase(drillresult.PhaseMaterialize, func(p *drillresult.Phase) error { return r.materialize(ctx, p) }); err != nil {
		return err
	}
	if err := r.phase(drillresult.PhaseReplay, func(p *drillresult.Phase) error { return r.replay(ctx, p) }); err != nil {
		return err
	}
	r.res.RecoverySeconds = r.res.Phase(drillresult.PhaseChoose).Seconds + time.Since(recovering).Seconds()
	return r.phase(drillresult.PhaseChecks, func(*drillresult.Phase) error { return r.checks(ctx) })
}

// phase runs f as the phase name, timed, and reports it.
func (r *run) phase(name string, f func(p *drillresult.Phase) error) error {
	p := drillresult.Phase{Name: name}
	start := time.Now()
	err := f(&p)
	p.Seconds = time.Since(start).Seconds()
	r.res.Phases = append(r.res.Phases, p)
	line := fmt.Sprintf("%s: %s", name, seconds(p.Seconds))
	if p.Detail != "" {
		line += " (" + p.Detail + ")"
	}
	if err != nil {
		line += ": FAILED"
	}
	r.printf("%s\n", line)
	return err
}

func (r *run) printf(format string, args ...any) {
	if r.o.Out != nil {
		fmt.Fprintf(r.o.Out, format, args...)
	}
}

// store writes the result into the repository and, when it passed, marks
// the backup drilled.
func (r *run) store(ctx context.Context) error {
	data, err := json.MarshalIndent(r.res, "", "  ")
	if err != nil {
		return err
	}
	if _, err := r.o.Repo.PutResult(ctx, repo.ResultDrill, append(data, '\n')); err != nil {
		return fmt.Errorf("store the drill result in the repository: %w", err)
	}
	if r.res.OK {
		if err := r.o.Repo.MarkDrilled(ctx, r.m.ID, r.res.ID); err != nil {
			return fmt.Errorf("mark backup %s drilled: %w", r.m.ID, err)
		}
	}
	return nil
}

// scratchDir creates the drill's own directory in o.Scratch, private to
// the server's owner (and root).
func (r *run) scratchDir() error {
	parent, err := filepath.Abs(r.o.Scratch)
	if err != nil {
		return err
	}
	dir := filepath.Join(parent, dirPrefix+r.res.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	r.scratch = dir
	r.res.Scratch = dir
	return r.own(dir)
}

// dirPrefix begins the name of the drill's scratch directory and of its
// socket directory, each followed by the drill's id.
const dirPrefix = "walsnap-drill-"

// socketDir creates the directory of the copy's unix socket, private to
// the server's owner (and root): in the temporary directory ($TMPDIR, else
// /tmp), not in the scratch directory, whose path may be too long for a
// socket (108 bytes at most, with the socket's name .s.PGSQL.NNNNN).
func (r *run) socketDir() (string, error) {
	dir := filepath.Join(os.TempDir(), dirPrefix+r.res.ID)
	if n := len(dir) + len("/.s.PGSQL.65535"); n > 107 {
		return "", fmt.Errorf("the temporary directory %s is too long a path for the server's unix socket (%d bytes of 107): set TMPDIR to a shorter one", os.TempDir(), n)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	return dir, r.own(dir)
}

// own gives path to the server's owner when walsnap runs as root.
func (r *run) own(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := pg.OSUser(r.o.Owner)
	if err != nil {
		return fmt.Errorf("drill: %w (PostgreSQL refuses to run as root; give --owner)", err)
	}
	return os.Chown(path, int(uid), int(gid))
}

// seconds renders a duration in seconds for people.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
