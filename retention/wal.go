package retention

import (
	"fmt"
	"time"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// WALRange is a run of WAL files of one timeline that share a fate.
type WALRange struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
	Delete   bool   `json:"delete"`
	Reason   string `json:"reason"`
}

// The reasons of WAL fates.
const (
	walHistory = "timeline history: never deleted"
	walNewer   = "archived after the oldest kept backup began"
	walOdd     = "its name does not fit the segment size"
	walUnused  = "no kept backup needs it"
)

// planWAL decides the fate of every WAL file (DESIGN.md rule 8). A backup
// kept onward keeps its timeline from its start segment on and every
// timeline that branches from it after (catalog.Claims); a pinned backup
// kept only as pinned keeps its start to its stop. History files are
// never deleted. Of the rest, a file goes only if it was archived before
// the oldest backup kept onward began: so WAL newer than the newest
// backup never goes, nor a branch newer than every kept backup (a
// restore promoted since, which may be the new primary), while abandoned
// branches older than every kept backup do.
func (p *Plan) planWAL() {
	var onward, pinned []*manifest.Manifest
	for _, b := range p.Backups {
		switch {
		case b.Delete:
		case b.onward:
			onward = append(onward, b.m)
		case b.Pinned:
			pinned = append(pinned, b.m)
		}
	}
	switch {
	case len(p.Problems) > 0:
		p.WALKept = "the repository has problems (see above): no WAL is deleted until they are solved"
	case len(onward) == 0:
		p.WALKept = "no complete backup is kept: no WAL is deleted"
	}
	var claims []catalog.Claim
	var oldest time.Time // the start of the oldest backup kept onward
	for _, m := range onward {
		if oldest.IsZero() || m.StartTime.Before(oldest) {
			oldest = m.StartTime
		}
	}
	for _, b := range []struct {
		ms     []*manifest.Manifest
		onward bool
	}{{onward, true}, {pinned, false}} {
		for _, m := range b.ms {
			if p.WALKept != "" {
				break
			}
			c, err := p.cat.Claims(m, b.onward)
			if err != nil {
				p.WALKept = fmt.Sprintf("%v: no WAL is deleted", err)
			}
			claims = append(claims, c...)
		}
	}
	pinnedOnly := map[string]bool{}
	for _, m := range pinned {
		pinnedOnly[m.ID] = true
	}
	for _, f := range p.cat.Files {
		del, why := p.walFate(f, claims, pinnedOnly, oldest)
		p.fates = append(p.fates, fileFate{f, del, why})
	}
	p.settleWAL()
}

// fileFate is what happens to one WAL file, and why.
type fileFate struct {
	f      repo.WALFile
	delete bool
	why    string
}

// settleWAL derives, from the files' fates, the files to delete and the
// ranges shown.
func (p *Plan) settleWAL() {
	p.walGone, p.WAL = nil, nil
	for _, ff := range p.fates {
		f := ff.f
		if ff.delete {
			p.walGone = append(p.walGone, f)
		}
		n := len(p.WAL)
		if n > 0 && p.WAL[n-1].Timeline == f.TLI && p.WAL[n-1].Delete == ff.delete && p.WAL[n-1].Reason == ff.why && f.Kind != wal.KindHistory {
			r := &p.WAL[n-1]
			r.Last, r.Files, r.Bytes = f.Name, r.Files+1, r.Bytes+f.Size
			continue
		}
		p.WAL = append(p.WAL, WALRange{Timeline: f.TLI, First: f.Name, Last: f.Name, Files: 1, Bytes: f.Size, Delete: ff.delete, Reason: ff.why})
	}
}

// walFate says whether WAL file f goes, and why.
func (p *Plan) walFate(f repo.WALFile, claims []catalog.Claim, pinnedOnly map[string]bool, oldest time.Time) (bool, string) {
	if f.Kind == wal.KindHistory {
		return false, walHistory
	}
	if p.WALKept != "" {
		return false, "no WAL is deleted"
	}
	if c, ok := p.cat.Claimed(claims, f); ok {
		if c.Backup == "" {
			return false, walOdd
		}
		if pinnedOnly[c.Backup] {
			return false, "makes pinned backup " + c.Backup + " consistent"
		}
		return false, "needed by backup " + c.Backup
	}
	if !f.ModTime.Before(oldest) {
		return false, walNewer
	}
	return true, walUnused
}
