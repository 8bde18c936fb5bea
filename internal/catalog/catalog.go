// Package catalog is walsnap's model of what a repository holds: its
// backups, its WAL by timeline and segment, and the timeline tree the
// .history files describe. It answers the questions that retention,
// verify, status and the restore drill all ask — which segments a recovery
// from a backup reads, where that chain has gaps, how far it reaches, and
// which timelines descend from a backup — in one place, from one listing
// of the repository.
//
// Recovery reads each segment number from one timeline: PostgreSQL follows
// the history of the timeline it recovers to, and reads a segment from the
// newest timeline of that history whose range holds it. A timeline that
// branched off its parent at switch point P takes over from the segment
// holding P (whose first part is the parent's WAL, copied when the new
// timeline began). So the route from a backup's start segment to timeline
// T is a list of spans: the backup's timeline up to the segment before the
// first switch, then each descendant from its switch segment on.
package catalog

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Timeline is one timeline of the repository's history.
type Timeline struct {
	ID uint32
	// Parent is the timeline this one branched off, 0 for a root (timeline
	// 1, or a timeline whose history file is missing: see Problems).
	Parent uint32
	// Switch is where it branched off Parent: the first LSN of its own.
	Switch wal.LSN
	// History reports whether the repository has its .history file.
	History bool
}

// Catalog is a snapshot of a repository.
type Catalog struct {
	Identity repo.Identity
	// Backups are every readable manifest, oldest first.
	Backups []*manifest.Manifest
	// BadBackups are the manifests that cannot be used.
	BadBackups []repo.BackupProblem
	// Timelines by id: every timeline that has WAL or a history file.
	Timelines map[uint32]*Timeline
	// Files is every WAL file listed, sorted by name.
	Files []repo.WALFile
	// Problems found while reading the history (unreadable or missing
	// history files).
	Problems []string

	segs map[uint32]map[uint64]repo.WALFile // complete segments by timeline and number
}

// Load lists the repository and reads its history files.
func Load(ctx context.Context, r *repo.Repo) (*Catalog, error) {
	id, err := r.Identity(ctx)
	if err != nil {
		return nil, err
	}
	backups, bad, err := r.Backups(ctx)
	if err != nil {
		return nil, err
	}
	files, err := r.ListWAL(ctx, 0)
	if err != nil {
		return nil, err
	}
	c := New(id, backups, files)
	c.BadBackups = bad
	for _, f := range files {
		if f.Kind != wal.KindHistory {
			continue
		}
		entries, err := r.ReadHistory(ctx, f.Name)
		if err != nil {
			c.Problems = append(c.Problems, fmt.Sprintf("timeline %d: history file %s: %v", f.TLI, f.Name, err))
			continue
		}
		c.SetHistory(f.TLI, entries)
	}
	for _, tl := range c.sortedTimelines() {
		if tl.ID > 1 && !tl.History {
			c.Problems = append(c.Problems, fmt.Sprintf("timeline %d: no history file (%s): recovery cannot follow it", tl.ID, wal.HistoryFileName(tl.ID)))
		}
	}
	return c, nil
}

// New builds a catalog from listings, without history (see SetHistory).
func New(id repo.Identity, backups []*manifest.Manifest, files []repo.WALFile) *Catalog {
	c := &Catalog{Identity: id, Backups: backups, Files: files, Timelines: map[uint32]*Timeline{}, segs: map[uint32]map[uint64]repo.WALFile{}}
	for _, f := range files {
		c.timeline(f.TLI)
		if f.Kind != wal.KindSegment {
			continue
		}
		s, err := wal.ParseSegmentName(f.Name, id.SegmentSize)
		if err != nil {
			continue
		}
		if c.segs[s.TLI] == nil {
			c.segs[s.TLI] = map[uint64]repo.WALFile{}
		}
		c.segs[s.TLI][s.No] = f
	}
	return c
}

// SetHistory records the history of timeline tli (its .history file's
// entries): its parent is the last entry's timeline, and the entries
// before describe the parent's own ancestry.
func (c *Catalog) SetHistory(tli uint32, entries []wal.HistoryEntry) {
	tl := c.timeline(tli)
	tl.History = true
	if len(entries) == 0 {
		return
	}
	last := entries[len(entries)-1]
	tl.Parent, tl.Switch = last.ParentTLI, last.SwitchPoint
	// The ancestors' own switches, for when their history files are gone.
	for i := len(entries) - 1; i > 0; i-- {
		p := c.timeline(entries[i].ParentTLI)
		if p.Parent == 0 && !p.History {
			p.Parent, p.Switch = entries[i-1].ParentTLI, entries[i-1].SwitchPoint
		}
	}
	c.timeline(last.ParentTLI)
}

func (c *Catalog) timeline(id uint32) *Timeline {
	tl, ok := c.Timelines[id]
	if !ok {
		tl = &Timeline{ID: id}
		c.Timelines[id] = tl
	}
	return tl
}

func (c *Catalog) sortedTimelines() []*Timeline {
	var out []*Timeline
	for _, tl := range c.Timelines {
		out = append(out, tl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Has reports whether segment no of timeline tli is archived.
func (c *Catalog) Has(tli uint32, no uint64) bool {
	_, ok := c.segs[tli][no]
	return ok
}

// Segment returns the archived segment no of timeline tli.
func (c *Catalog) Segment(tli uint32, no uint64) (repo.WALFile, bool) {
	f, ok := c.segs[tli][no]
	return f, ok
}

// Newest returns the highest segment number archived on timeline tli.
func (c *Catalog) Newest(tli uint32) (uint64, bool) {
	var max uint64
	found := false
	for no := range c.segs[tli] {
		if !found || no > max {
			max, found = no, true
		}
	}
	return max, found
}

// SwitchSegment is the number of the first segment read from timeline tli
// after its parent: the one holding its switch point.
func (c *Catalog) SwitchSegment(tli uint32) uint64 {
	tl := c.Timelines[tli]
	if tl == nil || tl.Parent == 0 {
		return 0
	}
	return uint64(tl.Switch) / c.Identity.SegmentSize
}

// Ancestry returns tli and its ancestors, oldest first.
func (c *Catalog) Ancestry(tli uint32) []uint32 {
	var chain []uint32
	for id := tli; id != 0; {
		if slices.Contains(chain, id) {
			break // a cycle in damaged history files
		}
		chain = append(chain, id)
		tl := c.Timelines[id]
		if tl == nil {
			break
		}
		id = tl.Parent
	}
	slices.Reverse(chain)
	return chain
}

// Descendants returns tli and every timeline that branches from it, or
// from one of its descendants, at or after LSN from, in id order.
func (c *Catalog) Descendants(tli uint32, from wal.LSN) []uint32 {
	out := []uint32{tli}
	for _, tl := range c.sortedTimelines() {
		if tl.ID == tli || tl.Parent == 0 {
			continue
		}
		chain := c.Ancestry(tl.ID)
		i := slices.Index(chain, tli)
		if i < 0 {
			continue
		}
		// Every switch after tli on the way down must be at or after from.
		ok := true
		for _, id := range chain[i+1:] {
			if c.Timelines[id].Switch < from {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, tl.ID)
		}
	}
	return out
}

// Span is a range of segment numbers read from one timeline, both ends
// included.
type Span struct {
	TLI         uint32
	First, Last uint64
}

// Open is Span.Last for a span that runs to the end of its timeline.
const Open = math.MaxUint64

// Route returns the spans a recovery that starts at segment from (on
// from.TLI) and follows timeline to reads, in order; the last span is
// Open. to must be from.TLI or a descendant of it that branched at or
// after from's segment.
func (c *Catalog) Route(from wal.Segment, to uint32) ([]Span, error) {
	chain := c.Ancestry(to)
	i := slices.Index(chain, from.TLI)
	if i < 0 {
		return nil, fmt.Errorf("timeline %d does not descend from timeline %d", to, from.TLI)
	}
	chain = chain[i:]
	var spans []Span
	first := from.No
	for j, id := range chain {
		last := uint64(Open)
		if j+1 < len(chain) {
			sw := c.SwitchSegment(chain[j+1])
			if sw < first {
				return nil, fmt.Errorf("timeline %d branched off timeline %d at %s, before segment %s", chain[j+1], id, c.Timelines[chain[j+1]].Switch,
					wal.Segment{TLI: from.TLI, No: from.No}.Name(c.Identity.SegmentSize))
			}
			if sw == 0 {
				return nil, fmt.Errorf("timeline %d: switch point unknown", chain[j+1])
			}
			last = sw - 1
		}
		if last != Open && last < first {
			// The switch is in the first segment: nothing read from id.
			first = last + 1
			continue
		}
		spans = append(spans, Span{TLI: id, First: first, Last: last})
		if last != Open {
			first = last + 1
		}
	}
	return spans, nil
}

// Gap is a range of segments of one timeline missing from the repository,
// both ends included.
type Gap struct {
	TLI         uint32
	First, Last uint64
}

// Names renders the gap as segment names.
func (g Gap) Names(segSize uint64) (first, last string) {
	return wal.Segment{TLI: g.TLI, No: g.First}.Name(segSize), wal.Segment{TLI: g.TLI, No: g.Last}.Name(segSize)
}

// Reach is where a walk along spans got: the gaps up to upTo, and the last
// segment of the unbroken prefix.
type Reach struct {
	Gaps []Gap
	// End is the last segment of the unbroken run from the start; ok is
	// false when not even the first segment is there.
	End wal.Segment
	OK  bool
	// EndFile is End's object (its ModTime is when it was archived).
	EndFile repo.WALFile
}

// Walk checks the segments of spans up to segment number upTo (the Open
// end of the last span stops at its timeline's newest segment, or upTo).
func (c *Catalog) Walk(spans []Span, upTo uint64) Reach {
	var r Reach
	broken := false
	var gap *Gap
	for _, s := range spans {
		last := s.Last
		if last == Open {
			newest, ok := c.Newest(s.TLI)
			if !ok || newest < s.First {
				newest = s.First
				if !c.Has(s.TLI, s.First) {
					// Nothing archived on this timeline yet: the chain
					// ends before it, without a gap.
					break
				}
			}
			last = newest
		}
		last = min(last, upTo)
		for no := s.First; no <= last; no++ {
			f, ok := c.segs[s.TLI][no]
			switch {
			case ok && gap != nil:
				r.Gaps = append(r.Gaps, *gap)
				gap = nil
			case ok && !broken:
				r.End, r.OK, r.EndFile = wal.Segment{TLI: s.TLI, No: no}, true, f
			case !ok && gap != nil && gap.TLI == s.TLI:
				gap.Last = no
			case !ok:
				if gap != nil {
					r.Gaps = append(r.Gaps, *gap)
				}
				gap = &Gap{TLI: s.TLI, First: no, Last: no}
				broken = true
			}
			if no == math.MaxUint64 {
				break
			}
		}
		if last == upTo {
			break
		}
	}
	if gap != nil {
		r.Gaps = append(r.Gaps, *gap)
	}
	return r
}

// Window is what one backup can restore to along one timeline.
type Window struct {
	Backup   *manifest.Manifest
	Timeline uint32
	// Consistent reports whether the WAL from the backup's start to its
	// stop is all there: without it the backup restores to nothing.
	Consistent bool
	// From is the earliest point (the backup's stop); To the newest, the
	// time its last unbroken segment was archived, and ToSegment that
	// segment.
	From, To  time.Time
	ToSegment wal.Segment
	// Gaps are the missing ranges from the backup's start to the newest
	// segment of the timeline (a gap after the stop shortens the window).
	Gaps []Gap
}

// Windows returns, for a complete backup, its recovery window on each
// timeline it can follow: its own, and every timeline that branched from
// it (or from one of those) after its stop.
func (c *Catalog) Windows(m *manifest.Manifest) ([]Window, error) {
	segSize := c.Identity.SegmentSize
	start, err := wal.ParseSegmentName(m.StartWAL, segSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: start segment: %w", m.ID, err)
	}
	stop, err := wal.ParseSegmentName(m.StopWAL, segSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: stop segment: %w", m.ID, err)
	}
	var out []Window
	for _, tli := range c.Descendants(m.Timeline, m.StopLSN) {
		spans, err := c.Route(start, tli)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", m.ID, err)
		}
		w := Window{Backup: m, Timeline: tli, From: m.StopTime}
		inBackup := c.Walk(spans, stop.No)
		w.Consistent = len(inBackup.Gaps) == 0 && inBackup.OK && inBackup.End.No == stop.No
		all := c.Walk(spans, Open)
		w.Gaps = all.Gaps
		if w.Consistent {
			w.ToSegment, w.To = all.End, all.EndFile.ModTime
			if w.To.Before(w.From) {
				w.To = w.From
			}
		}
		out = append(out, w)
	}
	return out, nil
}
