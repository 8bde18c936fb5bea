package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// StatusOptions configure ReadStatus.
type StatusOptions struct {
	Repo *repo.Repo
	// Conn reaches the server for its WAL position and archiver
	// statistics; nil leaves them out.
	Conn *pg.ConnConfig
	Now  time.Time // zero: time.Now()
}

// Status is where the archive and the backups stand.
type Status struct {
	Time        time.Time `json:"time"`
	Repository  string    `json:"repository"`
	SystemID    uint64    `json:"system_identifier,string"`
	PGMajor     int       `json:"pg_major"`
	SegmentSize uint64    `json:"wal_segment_size"`
	// NewestSegment is the segment archived last, NewestTime when.
	NewestSegment string     `json:"newest_segment,omitempty"`
	NewestTime    *time.Time `json:"newest_segment_time,omitempty"`
	Server        *Server    `json:"server,omitempty"`
	Backups       Backups    `json:"backups"`
	Size          Size       `json:"size"`
	// LastVerify is the latest stored verify result (nil: never run).
	LastVerify *VerifySummary `json:"last_verify,omitempty"`
	// LastDrill is the latest stored drill result (nil: never run).
	LastDrill *DrillSummary `json:"last_drill,omitempty"`
	// Problems are what could not be read (the last verify result, history
	// files, manifests).
	Problems []string `json:"problems"`
}

// Server is what the server says of its WAL and archiver.
type Server struct {
	// Error is why the server could not be asked; the other fields are
	// then empty.
	Error          string `json:"error,omitempty"`
	InRecovery     bool   `json:"in_recovery"`
	CurrentLSN     string `json:"current_lsn,omitempty"`
	CurrentSegment string `json:"current_segment,omitempty"`
	// ArchiveLagBytes is the current position minus the end of the newest
	// archived segment of its timeline (nil on a standby).
	ArchiveLagBytes  *int64     `json:"archive_lag_bytes,omitempty"`
	ArchivedCount    int64      `json:"archived_count"`
	FailedCount      int64      `json:"failed_count"`
	LastFailedWAL    string     `json:"last_failed_wal,omitempty"`
	LastFailedTime   *time.Time `json:"last_failed_time,omitempty"`
	LastArchivedWAL  string     `json:"last_archived_wal,omitempty"`
	LastArchivedTime *time.Time `json:"last_archived_time,omitempty"`
}

// Backups summarises the backups.
type Backups struct {
	Count      int            `json:"count"`
	ByStatus   map[string]int `json:"by_status"` // complete, pending, failed, unreadable
	Newest     string         `json:"newest,omitempty"`
	NewestStop *time.Time     `json:"newest_stop_time,omitempty"`
	NewestAge  float64        `json:"newest_age_seconds,omitempty"`
	// OldestRecoveryPoint is the earliest moment a backup restores to.
	OldestRecoveryPoint *time.Time `json:"oldest_recovery_point,omitempty"`
}

// Size is what the repository and the snapshots hold.
type Size struct {
	WALBytes    int64 `json:"wal_bytes"`
	BackupBytes int64 `json:"backup_bytes"` // manifests and files-provider parts
	// EBSSnapshotGiB adds up the sizes of the volumes the complete EBS
	// backups' snapshots were taken of.
	EBSSnapshotGiB int64 `json:"ebs_snapshot_gib"`
}

// VerifySummary is the gist of a stored verify result.
type VerifySummary struct {
	Time     time.Time `json:"time"`
	OK       bool      `json:"ok"`
	Deep     bool      `json:"deep"`
	Problems int       `json:"problems"`
}

// DrillSummary is the gist of a stored drill result.
type DrillSummary struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	OK     bool      `json:"ok"`
	Backup string    `json:"backup,omitempty"`
	Target string    `json:"target"`
	// RecoverySeconds is the time the drilled backup took to restore and
	// recover on the drill's host (0 when the drill did not get there).
	RecoverySeconds float64 `json:"recovery_seconds"`
	Host            string  `json:"host"`
	Error           string  `json:"error,omitempty"`
}

// LastDrill reads the latest stored drill result; an error matching
// repo.ErrNoResult when no drill ran.
func LastDrill(ctx context.Context, r *repo.Repo) (*drillresult.Result, error) {
	stored, err := r.LatestResult(ctx, repo.ResultDrill)
	if err != nil {
		return nil, err
	}
	res, err := drillresult.Parse(stored.Data)
	if err != nil {
		return nil, fmt.Errorf("the stored drill result: %w", err)
	}
	return res, nil
}

// ReadStatus reads the repository (one listing of its WAL and backups,
// the manifests, the history files and the last verify and drill
// results) and, with o.Conn, the server.
func ReadStatus(ctx context.Context, o StatusOptions) (*Status, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	c, err := catalog.Load(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	id := c.Identity
	st := &Status{Time: now.UTC(), Repository: o.Repo.String(), SystemID: id.SystemID, PGMajor: id.PGMajor,
		SegmentSize: id.SegmentSize, Problems: slices.Clone(c.Problems)}
	if st.Problems == nil {
		st.Problems = []string{}
	}
	if last, ok := c.LastArchived(); ok {
		t := last.ModTime.UTC()
		st.NewestSegment, st.NewestTime = last.Name, &t
	}
	for _, f := range c.Files {
		st.Size.WALBytes += f.Size
	}
	objs, err := o.Repo.BackupObjects(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		st.Size.BackupBytes += obj.Size
	}
	st.backups(c, now)
	if res, err := LastVerify(ctx, o.Repo); err == nil {
		st.LastVerify = &VerifySummary{Time: res.Time, OK: res.OK, Deep: res.Deep, Problems: len(res.Problems)}
	} else if !errors.Is(err, repo.ErrNoResult) {
		st.Problems = append(st.Problems, err.Error())
	}
	if res, err := LastDrill(ctx, o.Repo); err == nil {
		st.LastDrill = &DrillSummary{ID: res.ID, Time: res.Time, OK: res.OK, Backup: res.Backup.ID, Target: res.Target,
			RecoverySeconds: res.RecoverySeconds, Host: res.Host, Error: res.Error}
	} else if !errors.Is(err, repo.ErrNoResult) {
		st.Problems = append(st.Problems, err.Error())
	}
	if o.Conn != nil {
		st.Server = readServer(ctx, *o.Conn, c)
	}
	return st, nil
}

func (st *Status) backups(c *catalog.Catalog, now time.Time) {
	b := &st.Backups
	b.ByStatus = map[string]int{manifest.StatusComplete: 0, manifest.StatusPending: 0, manifest.StatusFailed: 0, "unreadable": len(c.BadBackups)}
	b.Count = len(c.Backups)
	for _, m := range c.Backups {
		b.ByStatus[m.Status]++
		if m.Status == manifest.StatusComplete {
			t := m.StopTime.UTC()
			b.Newest, b.NewestStop, b.NewestAge = m.ID, &t, now.Sub(t).Seconds()
		}
		if p, err := manifest.PayloadOf[manifest.EBSPayload](m); err == nil && m.Status == manifest.StatusComplete {
			for _, s := range p.Snapshots {
				st.Size.EBSSnapshotGiB += int64(s.SizeGiB)
			}
		}
	}
	for _, bad := range c.BadBackups {
		st.Problems = append(st.Problems, bad.Err.Error())
	}
	if t, _, ok := c.OldestRecoveryPoint(); ok {
		t = t.UTC()
		b.OldestRecoveryPoint = &t
	}
}

// serverTimeout bounds what status asks the server.
const serverTimeout = 10 * time.Second

// readServer asks the server for its WAL position and archiver.
func readServer(ctx context.Context, conn pg.ConnConfig, c *catalog.Catalog) *Server {
	ctx, cancel := context.WithTimeout(ctx, serverTimeout)
	defer cancel()
	srv := &Server{}
	fail := func(err error) *Server { return &Server{Error: err.Error()} }
	s, err := pg.Connect(ctx, conn)
	if err != nil {
		return fail(err)
	}
	defer s.Close(context.WithoutCancel(ctx))
	if srv.InRecovery, err = s.InRecovery(ctx); err != nil {
		return fail(err)
	}
	a, err := s.ArchiverStats(ctx)
	if err != nil {
		return fail(err)
	}
	srv.ArchivedCount, srv.FailedCount, srv.LastFailedWAL, srv.LastArchivedWAL = a.ArchivedCount, a.FailedCount, a.LastFailedWAL, a.LastArchivedWAL
	srv.LastFailedTime, srv.LastArchivedTime = timeOrNil(a.LastFailedTime), timeOrNil(a.LastArchivedTime)
	if srv.InRecovery {
		return srv
	}
	pos, err := s.CurrentWAL(ctx, c.Identity.SegmentSize)
	if err != nil {
		return fail(err)
	}
	srv.CurrentLSN, srv.CurrentSegment = pos.LSN.String(), pos.Segment.Name(c.Identity.SegmentSize)
	lag := archiveLag(c, pos)
	srv.ArchiveLagBytes = &lag
	return srv
}

// archiveLag is how far the server's position is past the end of the
// newest archived segment of its timeline or, when that timeline has
// none yet, of its ancestors.
func archiveLag(c *catalog.Catalog, pos pg.WALPosition) int64 {
	segSize := c.Identity.SegmentSize
	var end wal.LSN
	ancestry := c.Ancestry(pos.Segment.TLI)
	for i := len(ancestry) - 1; i >= 0; i-- {
		if no, ok := c.Newest(ancestry[i]); ok {
			end = wal.Segment{TLI: ancestry[i], No: no + 1}.StartLSN(segSize)
			break
		}
	}
	return max(int64(pos.LSN)-int64(end), 0)
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// WriteText writes the status for people, one line per item.
func (st *Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "repository:        %s (database system %d, PostgreSQL %d, %s segments)\n",
		st.Repository, st.SystemID, st.PGMajor, manifest.Human(int64(st.SegmentSize)))
	if st.NewestTime != nil {
		fmt.Fprintf(w, "newest segment:    %s, archived %s (%s ago)\n", st.NewestSegment, stamp(*st.NewestTime), age(st.Time.Sub(*st.NewestTime)))
	} else {
		fmt.Fprintln(w, "newest segment:    none archived")
	}
	switch s := st.Server; {
	case s == nil:
	case s.Error != "":
		fmt.Fprintf(w, "server:            not reachable: %s\n", s.Error)
	default:
		if s.ArchiveLagBytes != nil {
			fmt.Fprintf(w, "archive lag:       %s (server at %s in %s)\n", manifest.Human(*s.ArchiveLagBytes), s.CurrentLSN, s.CurrentSegment)
		} else {
			fmt.Fprintln(w, "archive lag:       n/a (a standby)")
		}
		fmt.Fprintf(w, "archiver:          %d archived, %d failed", s.ArchivedCount, s.FailedCount)
		if s.LastFailedTime != nil {
			fmt.Fprintf(w, " (last failure %s at %s)", s.LastFailedWAL, stamp(*s.LastFailedTime))
		}
		fmt.Fprintln(w)
	}
	b := st.Backups
	fmt.Fprintf(w, "backups:           %d (%d complete, %d pending, %d failed, %d unreadable)\n", b.Count,
		b.ByStatus[manifest.StatusComplete], b.ByStatus[manifest.StatusPending], b.ByStatus[manifest.StatusFailed], b.ByStatus["unreadable"])
	if b.NewestStop != nil {
		fmt.Fprintf(w, "newest backup:     %s, stopped %s (%s ago)\n", b.Newest, stamp(*b.NewestStop), age(time.Duration(b.NewestAge*float64(time.Second))))
	}
	if b.OldestRecoveryPoint != nil {
		fmt.Fprintf(w, "recoverable from:  %s\n", stamp(*b.OldestRecoveryPoint))
	} else {
		fmt.Fprintln(w, "recoverable from:  nothing (no complete backup with its WAL)")
	}
	fmt.Fprintf(w, "size:              WAL %s, backups %s, EBS snapshots %d GiB\n", manifest.Human(st.Size.WALBytes), manifest.Human(st.Size.BackupBytes), st.Size.EBSSnapshotGiB)
	if v := st.LastVerify; v != nil {
		verdict := "ok"
		if !v.OK {
			verdict = fmt.Sprintf("FAILED, %d problems", v.Problems)
		}
		if v.Deep {
			verdict += " (deep)"
		}
		fmt.Fprintf(w, "last verify:       %s at %s (%s ago)\n", verdict, stamp(v.Time), age(st.Time.Sub(v.Time)))
	} else {
		fmt.Fprintln(w, "last verify:       never")
	}
	switch d := st.LastDrill; {
	case d == nil:
		fmt.Fprintln(w, "last drill:        never")
	case d.OK:
		fmt.Fprintf(w, "last drill:        ok at %s (%s ago) on %s: backup %s recovered to %s in %s\n", stamp(d.Time), age(st.Time.Sub(d.Time)),
			d.Host, d.Backup, d.Target, recoveryTime(d.RecoverySeconds))
	default:
		fmt.Fprintf(w, "last drill:        FAILED at %s (%s ago) on %s: %s\n", stamp(d.Time), age(st.Time.Sub(d.Time)), d.Host, firstLine(d.Error))
	}
	for _, p := range st.Problems {
		fmt.Fprintln(w, "problem:", p)
	}
}

// recoveryTime renders a drill's recovery time: to 100 ms under a
// minute (a small database recovers in a second or two), else to the
// second.
func recoveryTime(s float64) time.Duration {
	d := time.Duration(s * float64(time.Second))
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// firstLine is the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// age renders a duration for people, to the second.
func age(d time.Duration) string { return max(d, 0).Round(time.Second).String() }
