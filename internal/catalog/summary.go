package catalog

import (
	"cmp"
	"slices"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// LastArchived returns the segment the repository received last (by the
// store's time; on a tie the higher name), or false when it holds none.
func (c *Catalog) LastArchived() (repo.WALFile, bool) {
	var last repo.WALFile
	found := false
	for _, f := range c.Files {
		if f.Kind != wal.KindSegment {
			continue
		}
		if !found || f.ModTime.After(last.ModTime) || f.ModTime.Equal(last.ModTime) && f.Name > last.Name {
			last, found = f, true
		}
	}
	return last, found
}

// OldestRecoveryPoint is the earliest moment a complete backup can be
// restored to: the stop of the oldest complete backup whose WAL from start
// to stop is all there. false when no backup is restorable.
func (c *Catalog) OldestRecoveryPoint() (time.Time, *manifest.Manifest, bool) {
	for _, m := range c.Backups { // oldest first
		if m.Status != manifest.StatusComplete {
			continue
		}
		ws, err := c.Windows(m)
		if err == nil && slices.ContainsFunc(ws, func(w Window) bool { return w.Consistent }) {
			return m.StopTime, m, true
		}
	}
	return time.Time{}, nil, false
}

// SegmentsAlong returns the archived segments a recovery along spans
// reads, in order: each span from its first segment to its last, an Open
// span to its timeline's newest segment.
func (c *Catalog) SegmentsAlong(spans []Span) []repo.WALFile {
	var out []repo.WALFile
	for _, s := range spans {
		last := s.Last
		if last == Open {
			newest, ok := c.Newest(s.TLI)
			if !ok || newest < s.First {
				continue
			}
			last = newest
		}
		for no, f := range c.segs[s.TLI] {
			if no >= s.First && no <= last {
				out = append(out, f)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b repo.WALFile) int { return cmp.Compare(a.Name[8:], b.Name[8:]) })
	return out
}

// MergeGaps returns gaps as the fewest ranges that cover the same missing
// segments: per timeline, overlapping and adjacent ranges joined, sorted
// by timeline and first segment.
func MergeGaps(gaps []Gap) []Gap {
	sorted := slices.Clone(gaps)
	slices.SortFunc(sorted, func(a, b Gap) int {
		return cmp.Or(cmp.Compare(a.TLI, b.TLI), cmp.Compare(a.First, b.First))
	})
	var out []Gap
	for _, g := range sorted {
		if n := len(out); n > 0 && out[n-1].TLI == g.TLI && g.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, g.Last)
			continue
		}
		out = append(out, g)
	}
	return out
}
