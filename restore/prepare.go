package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Options configures a restore.
type Options struct {
	Repo     *repo.Repo
	BackupID string // "" or LATEST: choose by target
	PGData   string // must be empty or absent unless Force
	Force    bool   // empty a non-empty PGData (and tablespace directories) first
	Target   Target
	Standby  bool // standby.signal instead of recovery.signal
	// TablespaceMap relocates tablespaces: old location → new location.
	TablespaceMap map[string]string
	// RestoreCommand is the restore_command written for PostgreSQL; it
	// must contain %f and %p.
	RestoreCommand string
	// Owner owns the restored files when walsnap runs as root ("" =
	// postgres). Without root, files belong to the current user.
	Owner string
	// NoArchive sets archive_mode = off in the restored server, so that a
	// copy restored for inspection does not push its new timeline into the
	// repository of the cluster it came from (the CLI's default; a server
	// that replaces the primary keeps the backup's archiving).
	NoArchive bool
	Providers map[manifest.Provider]Provider
	DryRun    bool
	Log       *slog.Logger
}

// Result describes a restore.
type Result struct {
	Backup *manifest.Manifest
	Dest   Destinations
	Plan   []string // what was (or, in a dry run, would be) done
	// Warnings are problems the restore foresees but that do not stop it,
	// such as a target past the archived WAL; each was also logged.
	Warnings []string
	// Built is what the provider built beyond the files (EBS volumes,
	// command.restore's mounts); Built.Undo removes it. The restore
	// leaves it in place: it is the restored server's.
	Built *Built
	// Materialized is how long the provider took to put the data in
	// place; Prepared how long the rest took (backup_label, recovery
	// configuration, owner, sync).
	Materialized, Prepared time.Duration
}

// Run chooses the backup, puts it in place and configures recovery. In a
// dry run it only returns the plan.
func Run(ctx context.Context, o Options) (*Result, error) {
	if !strings.Contains(o.RestoreCommand, "%f") || !strings.Contains(o.RestoreCommand, "%p") {
		return nil, fmt.Errorf("restore_command %q lacks %%f or %%p", o.RestoreCommand)
	}
	pgdata, err := filepath.Abs(o.PGData)
	if err != nil || o.PGData == "" {
		return nil, errors.New("restore: --pgdata is required")
	}
	id, err := o.Repo.Identity(ctx)
	if err != nil {
		return nil, err
	}
	backups, problems, err := o.Repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		o.Log.Warn("skipping a backup whose manifest cannot be used", "backup", p.ID, "err", p.Err)
	}
	m, err := Choose(backups, o.BackupID, id.SystemID, o.Target)
	if err != nil {
		return nil, err
	}
	if err := checkTimeline(ctx, o.Repo, m, o.Target.Timeline); err != nil {
		return nil, err
	}
	if err := checkKeys(ctx, o.Repo, id, m); err != nil {
		return nil, err
	}
	warnings, err := archiveWarnings(ctx, o.Repo, o.Target, m.SegmentSize)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		o.Log.Warn(w)
	}
	info, err := manifest.LookupProvider(m.Provider)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	prov, ok := o.Providers[m.Provider]
	if !ok {
		return nil, fmt.Errorf("backup %s was taken by the %q provider, which this restore cannot use", m.ID, m.Provider)
	}
	dest := Destinations{PGData: pgdata, Tablespaces: map[uint32]string{}}
	for _, ts := range m.Tablespaces {
		loc := ts.Location
		if nl, ok := o.TablespaceMap[ts.Location]; ok {
			loc = nl
		}
		if !filepath.IsAbs(loc) {
			return nil, fmt.Errorf("tablespace %s: new location %q must be absolute", ts.Name, loc)
		}
		dest.Tablespaces[ts.OID] = filepath.Clean(loc)
	}
	for old := range o.TablespaceMap {
		if !hasTablespace(m, old) {
			return nil, fmt.Errorf("--tablespace-map %s: backup %s has no tablespace at that location", old, m.ID)
		}
	}
	plan, err := prov.Plan(ctx, m, dest)
	if err != nil {
		return nil, err
	}
	plan = append([]string{fmt.Sprintf("restore backup %s (%s, %s, stop %s at %s) for target %s",
		m.ID, m.Provider, humanMajor(m.PGVersion), m.StopLSN, m.StopTime.Format(time.RFC3339), o.Target)}, plan...)
	signal := "recovery.signal"
	if o.Standby {
		signal = "standby.signal"
	}
	plan = append(plan,
		"write backup_label and tablespace_map from the manifest; clear pg_wal and pg_replslot",
		fmt.Sprintf("write restore_command and recovery target to postgresql.auto.conf; create %s", signal),
		archivingPlan(!o.NoArchive))
	res := &Result{Backup: m, Dest: dest, Plan: plan, Warnings: warnings}
	if o.DryRun {
		return res, nil
	}
	if info.InPlace {
		if pid, running := pg.RunningPostmaster(pgdata); running {
			return nil, fmt.Errorf("restore into %s: a PostgreSQL server (pid %d) is running there; stop it first", pgdata, pid)
		}
	} else {
		for _, dir := range append([]string{pgdata}, values(dest.Tablespaces)...) {
			if err := prepareDir(dir, o.Force); err != nil {
				return nil, err
			}
		}
	}
	uid, gid, err := owner(o.Owner)
	if err != nil {
		return nil, err
	}
	o.Log.Info("restoring", "backup", m.ID, "provider", m.Provider, "pgdata", pgdata)
	start := time.Now()
	built, err := prov.Materialize(ctx, m, dest)
	if err != nil {
		return nil, fmt.Errorf("restore backup %s: %w", m.ID, err)
	}
	res.Materialized = time.Since(start)
	start = time.Now()
	if err := prepare(m, dest, o, signal, uid, gid); err != nil {
		// What the provider built is removed: a half-prepared data
		// directory is of no use.
		if uerr := built.Undo(context.WithoutCancel(ctx)); uerr != nil {
			err = errors.Join(err, fmt.Errorf("remove what the restore built: %w", uerr))
		}
		return nil, fmt.Errorf("restore backup %s: %w", m.ID, err)
	}
	res.Built, res.Prepared = built, time.Since(start)
	return res, nil
}

// prepare turns the materialized backup into a data directory set up for
// recovery (finishDataDir), owned by uid:gid (-1: left alone), and flushes
// it to disk.
func prepare(m *manifest.Manifest, dest Destinations, o Options, signal string, uid, gid int) error {
	if err := finishDataDir(m, dest, o, signal); err != nil {
		return err
	}
	if uid >= 0 {
		for _, dir := range ownedDirs(dest) {
			if err := chownTree(dir, uid, gid); err != nil {
				return err
			}
		}
	}
	return syncFS(dest.PGData)
}

// archivingPlan says what the restored server does with its WAL, for the
// plan and the final messages.
func archivingPlan(archiving bool) string {
	if archiving {
		return "keep the backup's archive_command (--archive-mode preserve): once promoted, the server archives " +
			"its new timeline into this repository, as a replacement for the primary must"
	}
	return "set archive_mode = off (--archive-mode off, the default): the restored copy never archives into this " +
		"repository; to replace the primary, restore with --archive-mode preserve"
}

// archiveWarnings says when the target may lie past the WAL archived so
// far: recovery would then end before reaching it, and PostgreSQL stops
// with "recovery ended before configured recovery target was reached". It
// compares a target time with the time the newest segment was archived,
// and a target LSN with the end of the newest segment.
func archiveWarnings(ctx context.Context, r *repo.Repo, t Target, segSize uint64) ([]string, error) {
	if t.Kind != TargetTime && t.Kind != TargetLSN {
		return nil, nil
	}
	files, err := r.ListWAL(ctx, 0)
	if err != nil {
		return nil, err
	}
	var newest *repo.WALFile
	var end wal.LSN
	for i, f := range files {
		if f.Kind != wal.KindSegment && f.Kind != wal.KindPartial {
			continue
		}
		fn, err := wal.ParseFileName(f.Name, segSize)
		if err != nil {
			continue
		}
		if e := fn.Segment.StartLSN(segSize) + wal.LSN(segSize); e > end {
			end = e
		}
		if newest == nil || f.ModTime.After(newest.ModTime) {
			newest = &files[i]
		}
	}
	const fix = "; on the primary run SELECT pg_switch_wal() and wait until pg_stat_archiver.last_archived_wal " +
		"has passed it (or wait for archive_timeout), or recovery ends before the target"
	switch {
	case newest == nil:
		return []string{"the repository holds no archived WAL segment yet: the WAL that reaches the target is not archived" + fix}, nil
	case t.Kind == TargetTime && t.Time.After(newest.ModTime):
		return []string{fmt.Sprintf("the target %s is later than the newest archived WAL segment %s (archived %s): "+
			"the WAL that reaches the target may not be archived yet%s", t, newest.Name,
			newest.ModTime.Local().Format("2006-01-02 15:04:05-07:00"), fix)}, nil
	case t.Kind == TargetLSN && t.LSN >= end:
		return []string{fmt.Sprintf("the target %s is past the end of the newest archived WAL segment (%s): "+
			"the WAL that reaches the target is not archived yet%s", t, end, fix)}, nil
	}
	return nil, nil
}

// ownedDirs lists the trees a restore hands to the server's owner: the data
// directory, every tablespace and, when pg_wal is a symlink to its own
// volume (which a tree walk does not follow), its target.
func ownedDirs(dest Destinations) []string {
	dirs := append([]string{dest.PGData}, values(dest.Tablespaces)...)
	walDir := filepath.Join(dest.PGData, "pg_wal")
	if target, err := filepath.EvalSymlinks(walDir); err == nil && target != walDir {
		dirs = append(dirs, target)
	}
	return dirs
}

func hasTablespace(m *manifest.Manifest, loc string) bool {
	for _, ts := range m.Tablespaces {
		if ts.Location == loc {
			return true
		}
	}
	return false
}

func values(m map[uint32]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func humanMajor(versionNum int) string { return "PostgreSQL " + strconv.Itoa(versionNum/10000) }

// prepareDir makes sure dir exists and is empty: absent and empty are
// fine; anything else needs force, and a directory a running server uses
// is never touched. Missing parents are made as mkdir -p would (0755), so
// that the server's user can reach dir; dir itself is the owner's only.
func prepareDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("restore into %s: %w", dir, err)
		}
		return os.Mkdir(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("restore into %s: %w", dir, err)
	}
	if len(ents) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("restore into %s: directory is not empty (use --force to replace its contents)", dir)
	}
	if pid, ok := pg.RunningPostmaster(dir); ok {
		return fmt.Errorf("restore into %s: a PostgreSQL server (pid %d) is running there; stop it first", dir, pid)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restore into %s: %w", dir, err)
		}
	}
	return nil
}

// finishDataDir applies DESIGN.md rules 3 and 4 to the restored data
// directory: backup_label and tablespace_map from the manifest, no
// postmaster.pid/opts, empty pg_wal and pg_replslot, the recovery
// configuration and exactly one signal file.
func finishDataDir(m *manifest.Manifest, dest Destinations, o Options, signal string) error {
	d := dest.PGData
	for _, f := range []string{"postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal", "recovery.done", "backup_label.old", "tablespace_map.old"} {
		if err := os.Remove(filepath.Join(d, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := emptyDir(filepath.Join(d, "pg_wal"), "archive_status"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(d, "pg_wal", "archive_status"), 0o700); err != nil {
		return err
	}
	if err := emptyDir(filepath.Join(d, "pg_replslot")); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(d, "backup_label"), []byte(m.BackupLabel), 0o600); err != nil {
		return err
	}
	tsmap := tablespaceMap(m, dest)
	os.Remove(filepath.Join(d, "tablespace_map"))
	if tsmap != "" {
		if err := fsutil.WriteFileAtomic(filepath.Join(d, "tablespace_map"), []byte(tsmap), 0o600); err != nil {
			return err
		}
	}
	settings := append([][2]string{{"restore_command", o.RestoreCommand}}, o.Target.Settings()...)
	if o.NoArchive {
		settings = append(settings, [2]string{"archive_mode", "off"})
	}
	if err := writeAutoConf(filepath.Join(d, "postgresql.auto.conf"), m.ID, settings); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, signal), nil, 0o600); err != nil {
		return err
	}
	return os.Chmod(d, 0o700)
}

// emptyDir removes everything in dir (creating it if absent), except the
// named entries, which are emptied in turn.
func emptyDir(dir string, keep ...string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if contains(keep, e.Name()) && e.IsDir() {
			if err := emptyDir(p); err != nil {
				return err
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// tablespaceMap is the manifest's tablespace_map, byte for byte, unless
// tablespaces were relocated: then each relocated line names the new path.
func tablespaceMap(m *manifest.Manifest, dest Destinations) string {
	if m.TablespaceMap == "" {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(m.TablespaceMap, "\n") {
		oidText, _, ok := strings.Cut(strings.TrimRight(line, "\n"), " ")
		oid, err := strconv.ParseUint(oidText, 10, 32)
		if ok && err == nil {
			if loc, ok := dest.Tablespaces[uint32(oid)]; ok && !hasTablespace(m, loc) {
				b.WriteString(oidText + " " + loc + "\n")
				continue
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

// recoveryKeys are settings a restore replaces in postgresql.auto.conf
// (archive_mode only there: the one in postgresql.conf is left alone).
var recoveryKeys = []string{"archive_mode", "restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn",
	"recovery_target_xid", "recovery_target_name", "recovery_target_inclusive", "recovery_target_action", "recovery_target_timeline"}

// writeAutoConf drops any earlier recovery settings from
// postgresql.auto.conf and appends ours (PostgreSQL 12+ reads recovery
// settings from the ordinary configuration files).
func writeAutoConf(path, backupID string, settings [][2]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(old), "\n") {
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		if contains(recoveryKeys, strings.TrimSpace(key)) {
			continue
		}
		b.WriteString(line)
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "# walsnap restore of backup %s\n", backupID)
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], QuoteConf(kv[1]))
	}
	return fsutil.WriteFileAtomic(path, b.Bytes(), 0o600)
}

// QuoteConf quotes a value for postgresql.conf.
func QuoteConf(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", "''") + "'"
}

// owner resolves the user that must own the restored files; uid -1 means
// "leave ownership alone" (not running as root).
func owner(name string) (int, int, error) {
	if os.Geteuid() != 0 {
		return -1, -1, nil
	}
	uid, gid, err := pg.OSUser(name)
	if err != nil {
		return 0, 0, fmt.Errorf("restore: %w (PostgreSQL refuses to run as root; give --owner)", err)
	}
	return int(uid), int(gid), nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// syncFS flushes the filesystem holding dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// checkTimeline refuses a backup that cannot lead to the requested
// timeline: its timeline must be the target or one of the target's
// ancestors, left after the backup's stop point.
func checkTimeline(ctx context.Context, r *repo.Repo, m *manifest.Manifest, timeline Timeline) error {
	tl := timeline.Number
	if timeline.Mode != TimelineNumber || tl == m.Timeline {
		return nil // latest/current are PostgreSQL's to resolve
	}
	if tl < m.Timeline {
		return fmt.Errorf("backup %s is on timeline %d, after the target timeline %d", m.ID, m.Timeline, tl)
	}
	name := wal.HistoryFileName(tl)
	data, err := r.ReadWAL(ctx, name)
	if err != nil {
		return fmt.Errorf("target timeline %d: history file %s: %w", tl, name, err)
	}
	entries, err := wal.ParseHistory(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, e := range entries {
		if e.ParentTLI == m.Timeline {
			if e.SwitchPoint < m.StopLSN {
				return fmt.Errorf("timeline %d left timeline %d at %s, before backup %s was consistent (%s)", tl, m.Timeline, e.SwitchPoint, m.ID, m.StopLSN)
			}
			return nil
		}
	}
	return fmt.Errorf("timeline %d does not descend from timeline %d of backup %s", tl, m.Timeline, m.ID)
}

// checkKeys proves, before anything is changed, that this host can read
// what the restore of m and the recovery after it read: when the
// repository expects encryption, that the identity loads and opens the
// newest segment of the backup's timeline; and that the backup's first
// WAL segment and first part (files backups) open, which for encrypted
// ones takes the identity they were encrypted to.
func checkKeys(ctx context.Context, r *repo.Repo, id repo.Identity, m *manifest.Manifest) error {
	fail := func(err error) error {
		if !errors.Is(err, repo.ErrNoKey) {
			return err
		}
		return fmt.Errorf("restore refused before anything was changed: %w (set encryption.identity_file to a file "+
			"the server's user can read too: its restore_command reads it)", err)
	}
	if id.Encryption != "" {
		if err := r.CheckIdentity(); err != nil {
			return fail(fmt.Errorf("the repository is encrypted (walsnap.json: encryption %s): %w", id.Encryption, err))
		}
		files, err := r.ListWAL(ctx, m.Timeline)
		if err != nil {
			return err
		}
		for i := len(files) - 1; i >= 0; i-- {
			if files[i].Kind == wal.KindSegment {
				if err := r.ProbeWAL(ctx, files[i].Name); err != nil && !errors.Is(err, repo.ErrNotExist) {
					return fail(err)
				}
				break
			}
		}
	}
	if err := r.ProbeWAL(ctx, m.StartWAL); err != nil && !errors.Is(err, repo.ErrNotExist) {
		return fail(fmt.Errorf("backup %s: %w", m.ID, err))
	}
	if p, err := manifest.PayloadOf[manifest.FilesPayload](m); err == nil && len(p.Parts) > 0 {
		if err := r.ProbePart(ctx, m.ID, p.Parts[0].Key); err != nil {
			return fail(fmt.Errorf("backup %s: %w", m.ID, err))
		}
	}
	return nil
}
