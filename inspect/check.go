package inspect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Verdicts of a check.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
)

// CheckLine is one check's verdict.
type CheckLine struct {
	Check   string `json:"check"`
	Status  string `json:"status"` // Pass, Warn or Fail
	Message string `json:"message"`
}

// CheckOptions configure Check.
type CheckOptions struct {
	Repo *repo.Repo
	// RepoErr is why the repository could not be opened (Repo is nil).
	RepoErr error
	RepoURL string // the configured repository, as an archive_command would name it
	Conn    pg.ConnConfig
	// Encryption describes the configured server-side encryption for the
	// messages ("": the bucket's default).
	Encryption string
	Provider   manifest.Provider
	// EBS is what an ebs-provider check needs; used only for that provider.
	EBS EBSCheck
	// Timeout bounds the live test: how long to wait for the switched
	// segment to reach the repository (0: one minute).
	Timeout time.Duration
	// Codec is the preferred codec to fetch the switched segment with.
	Codec compress.Codec
}

// EBSCheck is what the check of the ebs provider needs.
type EBSCheck struct {
	Client     func(ctx context.Context) (*ebs.Client, error)
	InstanceID string   // "": from the instance metadata service
	Volumes    []string // ebs.volumes, instead of discovery
	// Mountinfo and SysRoot are what discovery reads ("": the real mount
	// table and blockdev.SysRoot).
	Mountinfo, SysRoot string
}

// DefaultSwitchTimeout bounds the live test by default.
const DefaultSwitchTimeout = time.Minute

// Failed reports whether any line is a failure.
func Failed(lines []CheckLine) bool {
	return slices.ContainsFunc(lines, func(l CheckLine) bool { return l.Status == Fail })
}

// checker is one run of Check.
type checker struct {
	o     CheckOptions
	lines []CheckLine
}

func (k *checker) add(check, status, format string, args ...any) {
	k.lines = append(k.lines, CheckLine{Check: check, Status: status, Message: fmt.Sprintf(format, args...)})
}

// Check checks that the cluster archives into the repository and that
// archiving works now: the server's settings and archiver, the
// repository (reachable, writable, this cluster's), the provider's
// permissions, then a live WAL switch whose segment must reach the
// repository and fetch back intact within o.Timeout. It returns one line
// per check.
func Check(ctx context.Context, o CheckOptions) []CheckLine {
	if o.Timeout <= 0 {
		o.Timeout = DefaultSwitchTimeout
	}
	k := &checker{o: o}
	s, err := pg.Connect(ctx, o.Conn)
	if err != nil {
		k.add("connection", Fail, "%v", err)
		k.repository(ctx, nil)
		return k.lines
	}
	defer s.Close(context.WithoutCancel(ctx))
	k.add("connection", Pass, "%s, PostgreSQL %d", o.Conn, s.Major())
	settings, err := s.ArchiveSettings(ctx)
	if err != nil {
		k.add("settings", Fail, "%v", err)
		return k.lines
	}
	k.settings(settings)
	k.archiver(ctx, s, settings)
	sameCluster := k.repository(ctx, s)
	if o.Provider == manifest.ProviderEBS {
		k.ebs(ctx, s)
	}
	switch {
	case settings.InRecovery:
		k.add("live archive test", Warn, "skipped: the server is a standby, which cannot switch WAL; run walsnap check on the primary")
	case !sameCluster:
		k.add("live archive test", Fail, "skipped: the repository is not usable for this cluster")
	default:
		k.live(ctx, s)
	}
	return k.lines
}

// settings judges wal_level, archive_mode, archive_command and
// archive_timeout, one line each.
func (k *checker) settings(a pg.ArchiveSettings) {
	switch a.WALLevel {
	case "replica", "logical":
		k.add("wal_level", Pass, "%s", a.WALLevel)
	default:
		k.add("wal_level", Fail, "%s: set wal_level = replica in postgresql.conf and restart PostgreSQL", a.WALLevel)
	}
	switch {
	case a.ArchiveMode == "always" || a.ArchiveMode == "on" && !a.InRecovery:
		k.add("archive_mode", Pass, "%s", a.ArchiveMode)
	case a.ArchiveMode == "on":
		k.add("archive_mode", Warn, "on, so this standby archives nothing itself: its primary must archive into the same repository (or set archive_mode = always)")
	default:
		k.add("archive_mode", Fail, "%s: set archive_mode = on in postgresql.conf and restart PostgreSQL", a.ArchiveMode)
	}
	switch other := otherRepo(a.ArchiveCommand, k.o.RepoURL); {
	case a.ArchiveMode != "on" && a.ArchiveMode != "always":
		k.add("archive_command", Fail, "not in force while archive_mode is %s", a.ArchiveMode)
	case a.ArchiveLibrary != "":
		k.add("archive_command", Fail, "archive_library %q replaces archive_command: set archive_library = '' and archive_command = '%s'", a.ArchiveLibrary, pg.ExampleArchiveCommand)
	case !pg.IsWalsnapPush(a.ArchiveCommand):
		k.add("archive_command", Fail, "%q does not run walsnap wal-push %%p: set archive_command = '%s' and reload", a.ArchiveCommand, pg.ExampleArchiveCommand)
	case other != "":
		k.add("archive_command", Fail, "%q archives into %s, not into %s", a.ArchiveCommand, other, k.o.RepoURL)
	default:
		k.add("archive_command", Pass, "%q (the live test shows whether it reaches this repository)", a.ArchiveCommand)
	}
	switch t := a.ArchiveTimeout; {
	case t == 0:
		k.add("archive_timeout", Warn, "0: on a quiet server the newest WAL waits for a full segment before it is archived; set archive_timeout = 60")
	case t > 5*time.Minute:
		k.add("archive_timeout", Warn, "%s: up to that much committed data is at risk; set 5 minutes or less", t)
	default:
		k.add("archive_timeout", Pass, "%s", t)
	}
}

// otherRepo is the repository an archive_command names with --repo when
// it is not url, else "".
func otherRepo(command, url string) string {
	fields := strings.Fields(command)
	for i, f := range fields {
		var v string
		switch {
		case strings.HasPrefix(f, "--repo="):
			v = strings.TrimPrefix(f, "--repo=")
		case f == "--repo" && i+1 < len(fields):
			v = fields[i+1]
		default:
			continue
		}
		if v = strings.Trim(v, `'"`); v != url {
			return v
		}
	}
	return ""
}

// archiver judges pg_stat_archiver: failures after the last success
// fail, failures in the last day warn.
func (k *checker) archiver(ctx context.Context, s *pg.Session, a pg.ArchiveSettings) {
	st, err := s.ArchiverStats(ctx)
	if err != nil {
		k.add("archiver", Fail, "%v", err)
		return
	}
	now, err := s.Now(ctx)
	if err != nil {
		now = time.Now()
	}
	last := "nothing archived since the statistics were reset"
	if !st.LastArchivedTime.IsZero() {
		last = fmt.Sprintf("last archived %s, %s ago", st.LastArchivedWAL, age(now.Sub(st.LastArchivedTime)))
	}
	switch {
	case st.FailedCount > 0 && st.LastFailedTime.After(st.LastArchivedTime):
		k.add("archiver", Fail, "failing: %s failed at %s (%d failures); %s; see the server log", st.LastFailedWAL, stamp(st.LastFailedTime), st.FailedCount, last)
	case st.FailedCount > 0 && now.Sub(st.LastFailedTime) < 24*time.Hour:
		k.add("archiver", Warn, "recovered, but %s failed at %s (%d failures); %s", st.LastFailedWAL, stamp(st.LastFailedTime), st.FailedCount, last)
	case a.ArchiveTimeout > 0 && !st.LastArchivedTime.IsZero() && now.Sub(st.LastArchivedTime) > 2*a.ArchiveTimeout+time.Minute:
		k.add("archiver", Warn, "%s (longer than archive_timeout %s: a quiet server, or archiving stalled)", last, a.ArchiveTimeout)
	default:
		k.add("archiver", Pass, "%d archived, %d failed; %s", st.ArchivedCount, st.FailedCount, last)
	}
}

// repository checks that the repository answers, belongs to the server's
// cluster (s nil: not known) and takes a write; it reports whether it
// can be used for this cluster.
func (k *checker) repository(ctx context.Context, s *pg.Session) bool {
	if k.o.RepoErr != nil {
		k.add("repository", Fail, "%s: %v", k.o.RepoURL, k.o.RepoErr)
		return false
	}
	id, err := k.o.Repo.Identity(ctx)
	switch {
	case errors.Is(err, repo.ErrNoIdentity):
		k.add("repository", Warn, "%s is reachable but empty: the first wal-push creates it", k.o.Repo)
	case err != nil:
		k.add("repository", Fail, "%s: %v", k.o.Repo, err)
		return false
	case s == nil:
		k.add("repository", Pass, "%s: database system %d", k.o.Repo, id.SystemID)
	default:
		sys, err1 := s.SystemID(ctx)
		size, err2 := s.SegmentSize(ctx)
		if err := errors.Join(err1, err2); err != nil {
			k.add("repository", Fail, "%v", err)
			return false
		}
		if err := id.CheckSame(repo.Identity{SystemID: sys, SegmentSize: size}); err != nil {
			k.add("repository", Fail, "%s: %v", k.o.Repo, err)
			return false
		}
		k.add("repository", Pass, "%s belongs to this cluster (database system %d)", k.o.Repo, sys)
	}
	enc := "the bucket's default encryption"
	if k.o.Encryption != "" {
		enc = k.o.Encryption
	}
	if err := k.o.Repo.ProbeWrite(ctx); err != nil {
		k.add("repository write", Fail, "%v (written with %s)", err, enc)
		return false
	}
	k.add("repository write", Pass, "a test object written with %s, read back and deleted", enc)
	return true
}

// ebs checks that the PostgreSQL directories are on EBS volumes and that
// EC2 would let walsnap snapshot the volumes (DryRun).
func (k *checker) ebs(ctx context.Context, s *pg.Session) {
	e := k.o.EBS
	mapped := k.ebsVolumes(ctx, s)
	ids := mapped
	if len(e.Volumes) > 0 {
		ids = e.Volumes
		for _, id := range mapped {
			if strings.HasPrefix(id, "vol-") && !slices.Contains(e.Volumes, id) {
				k.add("ebs volumes", Fail, "PostgreSQL has data on %s, which ebs.volumes does not list", id)
			}
		}
	}
	if len(ids) == 0 {
		k.add("ebs permissions", Fail, "no volumes to check: set ebs.volumes, or keep the PostgreSQL directories on EBS")
		return
	}
	client, err := e.Client(ctx)
	if err != nil {
		k.add("ebs permissions", Fail, "%v", err)
		return
	}
	instance := e.InstanceID
	if instance == "" {
		if instance, _, err = ebs.InstanceIdentity(ctx); err != nil {
			k.add("ebs permissions", Fail, "%v (set ebs.instance_id)", err)
			return
		}
	}
	if err := client.CanSnapshot(ctx, instance, ids); err != nil {
		k.add("ebs permissions", Fail, "%v", err)
		return
	}
	k.add("ebs permissions", Pass, "EC2 would snapshot %s of %s (checked with DryRun)", strings.Join(ids, ", "), instance)
}

// ebsVolumes maps the server's directories (data directory, pg_wal,
// tablespaces) to their volumes (ids, or on Xen attachment names) and
// reports the outcome; nil when they do not all map to EBS.
func (k *checker) ebsVolumes(ctx context.Context, s *pg.Session) []string {
	e := k.o.EBS
	bad := Fail
	if len(e.Volumes) > 0 {
		bad = Warn // backups work, but a restore cannot mount the volumes
	}
	dataDir, err := s.DataDirectory(ctx)
	var tss []manifest.Tablespace
	if err == nil {
		tss, err = s.Tablespaces(ctx)
	}
	var paths []string
	if err == nil {
		locs := make([]string, len(tss))
		for i, ts := range tss {
			locs[i] = ts.Location
		}
		paths, err = blockdev.PostgreSQLPaths(dataDir, locs)
	}
	var found []blockdev.Volume
	if err == nil {
		found, err = blockdev.Discover(paths, cmp.Or(e.Mountinfo, blockdev.DefaultMountinfo), cmp.Or(e.SysRoot, blockdev.SysRoot()))
	}
	if err != nil {
		k.add("ebs volumes", bad, "the PostgreSQL directories do not map to EBS volumes: %v", err)
		return nil
	}
	var ids []string
	for _, v := range found {
		ids = append(ids, cmp.Or(v.VolumeID, v.DeviceName))
	}
	k.add("ebs volumes", Pass, "the PostgreSQL directories are on %s", strings.Join(ids, ", "))
	return ids
}

// live switches WAL and waits until the finished segment is in the
// repository, then fetches it back and checks it.
func (k *checker) live(ctx context.Context, s *pg.Session) {
	start := time.Now()
	name, err := s.SwitchWAL(ctx)
	if err != nil {
		k.add("live archive test", Fail, "%v", err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, k.o.Timeout)
	defer cancel()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		if ok, _ := k.o.Repo.HasWAL(wctx, name); ok {
			break
		}
		if wctx.Err() != nil {
			msg := fmt.Sprintf("%s was not in the repository %s after pg_switch_wal()", name, age(time.Since(start)))
			if st, serr := s.ArchiverStats(ctx); serr == nil && st.LastFailedWAL == name {
				msg += fmt.Sprintf("; the archiver failed on it at %s: see the server log", stamp(st.LastFailedTime))
			}
			k.add("live archive test", Fail, "%s", msg)
			return
		}
		select {
		case <-wctx.Done():
		case <-time.After(delay):
		}
	}
	archived := time.Since(start)
	id, err := k.o.Repo.Identity(ctx)
	if err != nil {
		k.add("live archive test", Fail, "%v", err)
		return
	}
	content, err := fetchBack(ctx, k.o.Repo, id, name, k.o.Codec)
	if err != nil {
		k.add("live archive test", Fail, "%s archived, but fetching it back failed: %v", name, err)
		return
	}
	if !content {
		k.add("live archive test", Pass, "pg_switch_wal(): %s archived in %s, encrypted, and its stored bytes fetched back intact "+
			"(this host has no encryption.identity_file to check the content, as a database host should not)", name, archived.Round(time.Millisecond))
		return
	}
	k.add("live archive test", Pass, "pg_switch_wal(): %s archived in %s and fetched back intact", name, archived.Round(time.Millisecond))
}

// fetchBack reads a segment back whole and checks it: its stored bytes
// against their SHA-256 when it is encrypted, and, when this host can
// read its content (content true), its size and SHA-256 as wal-fetch
// would and its header against the identity.
func fetchBack(ctx context.Context, r *repo.Repo, id repo.Identity, name string, codec compress.Codec) (content bool, err error) {
	var head headWriter
	d, err := r.DigestWAL(ctx, name, codec, &head)
	if err != nil {
		return false, err
	}
	if err := d.Check(); err != nil || !d.Content {
		return d.Content, err
	}
	seg, err := wal.ParseSegmentName(name, id.SegmentSize)
	if err != nil {
		return true, err
	}
	if uint64(d.Raw) != id.SegmentSize {
		return true, fmt.Errorf("%d bytes, want %d", d.Raw, id.SegmentSize)
	}
	_, err = wal.CheckSegmentHeader(seg, id.SegmentSize, head.b, id.SystemID)
	return true, err
}

// WriteCheckText writes one line per check: the verdict, the check, what
// was found.
func WriteCheckText(w io.Writer, lines []CheckLine) {
	for _, l := range lines {
		fmt.Fprintf(w, "%-4s  %-18s %s\n", l.Status, l.Check, l.Message)
	}
}
