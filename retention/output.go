package retention

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// Totals counts what the plan deletes (or deleted).
type Totals struct {
	Backups   int   `json:"backups"`
	Snapshots int   `json:"snapshots"`
	Orphans   int   `json:"orphans"`
	WALFiles  int   `json:"wal_files"`
	Bytes     int64 `json:"bytes"` // repository bytes: payloads, orphans, WAL
}

// Totals counts what goes: in a plan not yet carried out, what would; in
// one carried out, what went.
func (p *Plan) Totals() Totals {
	var t Totals
	for _, b := range p.Backups {
		if b.Delete && (!p.Done || b.Outcome == "deleted" || strings.HasPrefix(b.Outcome, "deleted;")) {
			t.Backups++
			t.Bytes += b.Bytes
			if b.Provider == manifest.ProviderEBS {
				t.Snapshots += len(b.Snapshots)
			}
		}
	}
	for _, o := range p.Orphans {
		if o.Delete && (!p.Done || o.Outcome == "deleted") {
			t.Orphans++
			t.Bytes += o.Bytes
		}
	}
	for _, s := range p.Snaps {
		if s.Delete && (!p.Done || s.Outcome == "deleted") {
			t.Snapshots++
		}
	}
	for _, f := range p.walGone {
		t.WALFiles++
		t.Bytes += f.Size
	}
	return t
}

// WriteTable prints the plan for people: each backup, orphan and run of
// WAL with what happens to it and why, the oldest recovery point before
// and after, and a summary line.
func (p *Plan) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "policy: %s, at %s\n\n", p.Policy, stamp(p.Now))
	fmt.Fprintln(tw, "BACKUP\tPROVIDER\tSTATUS\tSTOP\tPIN\tSNAPSHOTS\tOBJECTS\tSIZE\tACTION")
	for _, b := range p.Backups {
		pin := ""
		if b.Pinned {
			pin = "pinned"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", b.ID, b.Provider, b.Status, stamp(b.StopTime), pin,
			dash(strings.Join(b.Snapshots, " ")), b.Objects, manifest.Human(b.Bytes), p.action(b.Delete, b.Reason, b.Outcome))
	}
	if len(p.Orphans) > 0 {
		fmt.Fprintln(tw, "\nORPHAN (no manifest)\tOBJECTS\tSIZE\tNEWEST\tACTION")
		for _, o := range p.Orphans {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", o.BackupID, o.Objects, manifest.Human(o.Bytes), stamp(o.Newest), p.action(o.Delete, o.Reason, o.Outcome))
		}
	}
	if len(p.Snaps) > 0 {
		fmt.Fprintln(tw, "\nORPHAN SNAPSHOT\tBACKUP\tSTARTED\tACTION")
		for _, s := range p.Snaps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.SnapshotID, s.BackupID, stamp(s.StartTime), p.action(s.Delete, s.Reason, s.Outcome))
		}
	}
	fmt.Fprintln(tw, "\nWAL TL\tFIRST\tLAST\tFILES\tSIZE\tACTION")
	for _, r := range p.WAL {
		last := r.Last
		if last == r.First {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", r.Timeline, r.First, last, r.Files, manifest.Human(r.Bytes), p.action(r.Delete, r.Reason, ""))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, pr := range p.Problems {
		fmt.Fprintf(w, "problem: %s\n", pr)
	}
	if p.WALKept != "" {
		fmt.Fprintf(w, "WAL: %s\n", p.WALKept)
	}
	for _, e := range p.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	fmt.Fprintf(w, "\noldest recovery point: %s", point(p.RecoveryPoint))
	if after := point(p.RecoveryPointAfter); after != point(p.RecoveryPoint) {
		fmt.Fprintf(w, "; after the delete: %s", after)
	}
	fmt.Fprintln(w)
	t := p.Totals()
	what := fmt.Sprintf("%d backups (%d snapshots), %d orphans, %d WAL files, %s", t.Backups, t.Snapshots, t.Orphans, t.WALFiles, manifest.Human(t.Bytes))
	if p.Done {
		_, err := fmt.Fprintf(w, "deleted %s\n", what)
		return err
	}
	_, err := fmt.Fprintf(w, "dry run: would delete %s; nothing was changed (run with --confirm to delete)\n", what)
	return err
}

// action is the ACTION column: the plan, or once carried out the outcome.
func (p *Plan) action(del bool, reason, outcome string) string {
	switch {
	case !del:
		return "kept: " + reason
	case !p.Done:
		return "delete: " + reason
	case outcome == "deleted" || outcome == "":
		return "deleted: " + reason
	}
	return outcome
}

func point(rp *RecoveryPoint) string {
	if rp == nil {
		return "none (no restorable backup)"
	}
	return fmt.Sprintf("%s (backup %s, LSN %s)", stamp(rp.Time), rp.Backup, rp.LSN)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
