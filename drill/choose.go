package drill

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/restore"
)

// choose reads the repository, chooses the backup as restore does, finds
// pg_ctl of its major, and checks, before anything is built, that the
// WAL the recovery certainly needs is all there (naming the first gap)
// and that the scratch filesystem has room for a files backup.
func (r *run) choose(ctx context.Context, p *drillresult.Phase) error {
	c, err := catalog.Load(ctx, r.o.Repo)
	if err != nil {
		return err
	}
	r.cat = c
	for _, b := range c.BadBackups {
		r.o.Log.Warn("skipping a backup whose manifest cannot be used", "backup", b.ID, "err", b.Err)
	}
	m, err := restore.Choose(c.Backups, r.o.BackupID, c.Identity.SystemID, r.o.Target)
	if err != nil {
		return err
	}
	r.m = m
	r.res.Backup = drillresult.Backup{ID: m.ID, Provider: string(m.Provider), StopTime: m.StopTime.UTC(), StopLSN: m.StopLSN.String(), PGVersion: m.PGVersion}
	if info, err := manifest.LookupProvider(m.Provider); err != nil {
		return fmt.Errorf("backup %s: %w", m.ID, err)
	} else if info.InPlace {
		return fmt.Errorf("backup %s was recorded from snapshots an orchestrator took (provider %s), which walsnap cannot build: drill it by restoring them yourself", m.ID, m.Provider)
	}
	if r.pgctl, err = restore.FindPGCtl(r.o.PGBin, m.PGMajor()); err != nil {
		return err
	}
	detail, err := r.checkWAL(c, m)
	p.Detail = fmt.Sprintf("backup %s (%s, PostgreSQL %d, stopped %s at %s); %s", m.ID, m.Provider, m.PGMajor(),
		m.StopTime.UTC().Format("2006-01-02 15:04:05Z"), m.StopLSN, detail)
	if err != nil {
		return err
	}
	return r.checkRoom(m)
}

// checkWAL checks the WAL a recovery from m to the target reads, along
// the timeline it follows: every segment it certainly needs must be in
// the repository (from the backup's start to its stop; to the target LSN;
// to the first segment archived after the target time; for the end of
// the WAL, to the newest segment), or the drill fails at once, naming the
// first missing one. For the end of the WAL it also records the newest
// segment, which recovery must reach. It returns what it found.
func (r *run) checkWAL(c *catalog.Catalog, m *manifest.Manifest) (string, error) {
	segSize := c.Identity.SegmentSize
	start, err := wal.ParseSegmentName(m.StartWAL, segSize)
	if err != nil {
		return "", fmt.Errorf("backup %s: start segment: %w", m.ID, err)
	}
	stop, err := wal.ParseSegmentName(m.StopWAL, segSize)
	if err != nil {
		return "", fmt.Errorf("backup %s: stop segment: %w", m.ID, err)
	}
	t := r.o.Target
	tli := targetTimeline(c, m, t.Timeline)
	spans, err := c.Route(start, tli)
	if err != nil {
		return "", fmt.Errorf("backup %s cannot reach timeline %d: %w", m.ID, tli, err)
	}
	r.spans = spans
	upTo := stop.No
	switch t.Kind {
	case restore.TargetEnd:
		upTo = catalog.Open
	case restore.TargetLSN:
		upTo = max(upTo, uint64(t.LSN)/segSize)
	case restore.TargetTime:
		upTo = catalog.Open
		for _, f := range c.SegmentsAlong(spans) {
			if s, err := wal.ParseSegmentName(f.Name, segSize); err == nil && s.No >= stop.No && !f.ModTime.Before(t.Time) {
				upTo = s.No
				break
			}
		}
	}
	reach := c.Walk(spans, upTo)
	if len(reach.Gaps) > 0 {
		g := reach.Gaps[0]
		first, last := g.Names(segSize)
		missing := "segment " + first + " is missing"
		if first != last {
			missing = fmt.Sprintf("segments %s to %s are missing (%d segments)", first, last, g.Last-g.First+1)
		}
		end := "the recovery would end before it, short of the target"
		if g.First <= stop.No {
			end = "the backup can never become consistent"
		}
		return "WAL gap", fmt.Errorf("the WAL from backup %s to the target has a gap: timeline %d: %s: %s (walsnap verify lists every gap)", m.ID, g.TLI, missing, end)
	}
	if !reach.OK {
		return "no WAL", fmt.Errorf("backup %s: its first WAL segment %s is not in the repository", m.ID, m.StartWAL)
	}
	if t.Kind == restore.TargetEnd {
		r.endSeg = reach.End.No
	}
	return fmt.Sprintf("WAL from %s to %s on timeline %d, no gap", m.StartWAL, reach.End.Name(segSize), tli), nil
}

// targetTimeline is the timeline recovery follows: the one asked for, the
// backup's own (current), or the newest one that branches from it after
// its stop (latest, PostgreSQL's default).
func targetTimeline(c *catalog.Catalog, m *manifest.Manifest, tl restore.Timeline) uint32 {
	switch tl.Mode {
	case restore.TimelineNumber:
		return tl.Number
	case restore.TimelineCurrent:
		return m.Timeline
	}
	return slices.Max(c.Descendants(m.Timeline, m.StopLSN))
}

// checkRoom refuses a files backup whose files do not fit in the scratch
// filesystem.
func (r *run) checkRoom(m *manifest.Manifest) error {
	if m.Provider != manifest.ProviderFiles {
		return nil
	}
	p, err := manifest.PayloadOf[manifest.FilesPayload](m)
	if err != nil {
		return err
	}
	var need int64
	for _, part := range p.Parts {
		need += part.RawSize
	}
	need += 3 * int64(m.SegmentSize) // pg_wal during recovery, at least
	dir, err := filepath.Abs(r.o.Scratch)
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("scratch directory %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("the scratch filesystem of %s has %s free; backup %s needs %s: give --scratch on a filesystem with room",
			dir, manifest.Human(free), m.ID, manifest.Human(need))
	}
	return nil
}
