package catalog

import (
	"fmt"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Claim is a run of WAL that a backup needs: segments First to Last (Last
// may be Open) of timeline TLI, with their .partial and .backup files.
type Claim struct {
	TLI         uint32
	First, Last uint64
	Backup      string // the id of the backup that needs it
}

// Claims returns the WAL that restores from backup m read.
//
// With onward, it is everything a restore from m to any later point may
// read: m's timeline from its start segment on, and every timeline that
// branches from it at or after that segment (or from one of those), whole.
// Without, it is only what makes m consistent: the route from its start
// segment to its stop segment (what a pinned backup keeps).
func (c *Catalog) Claims(m *manifest.Manifest, onward bool) ([]Claim, error) {
	segSize := c.Identity.SegmentSize
	start, err := wal.ParseSegmentName(m.StartWAL, segSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: start segment: %w", m.ID, err)
	}
	if onward {
		out := []Claim{{TLI: start.TLI, First: start.No, Last: Open, Backup: m.ID}}
		for _, tli := range c.Descendants(start.TLI, start.StartLSN(segSize))[1:] {
			out = append(out, Claim{TLI: tli, First: 0, Last: Open, Backup: m.ID})
		}
		return out, nil
	}
	stop, err := wal.ParseSegmentName(m.StopWAL, segSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: stop segment: %w", m.ID, err)
	}
	spans, err := c.Route(start, stop.TLI)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	var out []Claim
	for _, s := range spans {
		if s.First > stop.No {
			break
		}
		out = append(out, Claim{TLI: s.TLI, First: s.First, Last: min(s.Last, stop.No), Backup: m.ID})
	}
	return out, nil
}

// Claimed returns the claim that holds WAL file f (a segment, .partial or
// .backup file), if any. A history file is never in a claim (it is never
// deleted either). A file whose segment cannot be read from its name is
// reported claimed, by no backup, so that whoever asks keeps it.
func (c *Catalog) Claimed(claims []Claim, f repo.WALFile) (Claim, bool) {
	if f.Kind == wal.KindHistory {
		return Claim{}, false
	}
	fn, err := wal.ParseFileName(f.Name, c.Identity.SegmentSize)
	if err != nil {
		return Claim{}, true
	}
	for _, cl := range claims {
		if cl.TLI == fn.TLI && fn.Segment.No >= cl.First && fn.Segment.No <= cl.Last {
			return cl, true
		}
	}
	return Claim{}, false
}
