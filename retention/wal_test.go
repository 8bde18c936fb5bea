package retention

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// TestWAL: the WAL rules on four timelines. Timeline 1 has segments 1-30
// and, much later, 31; timeline 3 branched off it in segment 5 long ago
// (abandoned); timeline 2 in segment 12, where the later backups are;
// timeline 4 in segment 28 after them (a restore promoted since). B1
// (pinned), B2 and B3 are on timeline 1, B4 and B5 on timeline 2. With
// retain 2, B4 and B5 are kept: timeline 2 from B4's start on, B1's
// start to stop, the history files, and what was archived after B4
// began (timeline 4, segment 31 of timeline 1); everything else goes.
func TestWAL(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	min := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	f.segments(1, 1, 30, t0)
	f.put(seg(1, 31), []byte("late"), min(331))
	f.put(seg(1, 2)+".00000028.backup", []byte("b1"), min(2))
	f.put(seg(1, 9)+".00000028.backup", []byte("b2"), min(9))
	f.put(seg(1, 12)+".partial", []byte("partial"), min(112))
	f.history(3, "", 1, 5)
	f.segments(3, 5, 7, min(3))
	f.history(2, "", 1, 12)
	f.segments(2, 12, 25, min(100))
	f.history(4, "", 1, 28)
	f.segments(4, 28, 29, min(200))
	f.backup("B1", 1, 2, 3, min(2), manifest.StatusComplete)
	f.backup("B2", 1, 8, 9, min(8), manifest.StatusComplete)
	f.backup("B3", 1, 15, 16, min(15), manifest.StatusComplete)
	f.backup("B4", 2, 18, 19, min(118), manifest.StatusComplete)
	f.backup("B5", 2, 22, 23, min(122), manifest.StatusComplete)
	if err := f.r.Pin(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	before := f.keys()
	allWAL := f.walNames()

	// The expectation, written out: what goes.
	var gone []string
	gone = append(gone, seg(1, 1))
	for no := uint64(4); no <= 30; no++ {
		gone = append(gone, seg(1, no))
	}
	gone = append(gone, seg(1, 9)+".00000028.backup", seg(1, 12)+".partial")
	for no := uint64(5); no <= 7; no++ {
		gone = append(gone, seg(3, no))
	}
	for no := uint64(12); no <= 17; no++ {
		gone = append(gone, seg(2, no))
	}

	o := f.options(min(400), Policy{Full: 2})
	p, err := Make(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.keys(), before) {
		t.Fatal("planning changed the repository")
	}
	var planned []string
	for _, w := range p.walGone {
		planned = append(planned, w.Name)
	}
	slices.Sort(planned)
	slices.Sort(gone)
	if !slices.Equal(planned, gone) {
		t.Fatalf("WAL planned to go:\n%v\nwant\n%v", planned, gone)
	}
	reasons := map[string]string{}
	for _, r := range p.WAL {
		reasons[r.First] = r.Reason
	}
	for first, want := range map[string]string{
		seg(1, 2): "makes pinned backup B1 consistent", seg(2, 18): "needed by backup B4", seg(4, 28): walNewer,
		seg(1, 31): walNewer, "00000002.history": walHistory, seg(3, 5): walUnused,
	} {
		if reasons[first] != want {
			t.Errorf("range from %s: reason %q, want %q", first, reasons[first], want)
		}
	}
	if rp := p.RecoveryPoint; rp == nil || rp.Backup != "B1" || p.RecoveryPointAfter == nil || p.RecoveryPointAfter.Backup != "B1" {
		t.Errorf("recovery points %+v %+v, want B1's stop before and after", p.RecoveryPoint, p.RecoveryPointAfter)
	}
	var table strings.Builder
	p.WriteTable(&table)
	for _, want := range []string{"B2  ", "delete: expired", "kept: pinned", "kept: newest 2", "would delete 2 backups (0 snapshots), 0 orphans, 39 WAL files"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("dry-run table lacks %q:\n%s", want, table.String())
		}
	}

	if _, err := Run(ctx, o, false); err != nil {
		t.Fatal(err)
	}
	if got, want := f.walNames(), without(allWAL, gone...); !slices.Equal(got, want) {
		t.Fatalf("WAL left:\n%v\nwant\n%v", got, want)
	}
	if got := f.backupIDs(); got != "B1 B4 B5" {
		t.Fatalf("backups left: %s", got)
	}
	for _, k := range f.keys() {
		if strings.HasPrefix(k, "backups/B2/") || strings.HasPrefix(k, "backups/B3/") {
			t.Errorf("left behind: %s", k)
		}
	}
	// A second run finds nothing more to do.
	p, err = Run(ctx, o, false)
	if err != nil || p.Total != (Totals{}) {
		t.Fatalf("second run: %+v, %v", p.Total, err)
	}
}

// TestWALKeptOnProblems: with an unreadable history file or manifest no
// WAL goes; nor without any complete backup.
func TestWALKeptOnProblems(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.segments(1, 1, 10, t0)
	f.backup("B1", 1, 2, 3, t0.Add(2*time.Minute), manifest.StatusFailed)
	o := f.options(t0.Add(time.Hour), Policy{Full: 1})
	p, err := Make(ctx, o)
	if err != nil || len(p.walGone) != 0 || !strings.Contains(p.WALKept, "no complete backup") {
		t.Fatalf("without a complete backup: %v gone, %q, %v", len(p.walGone), p.WALKept, err)
	}
	f.backup("B2", 1, 6, 7, t0.Add(6*time.Minute), manifest.StatusComplete)
	f.put("00000002.history", []byte("not a history\n"), t0)
	p, err = Make(ctx, o)
	if err != nil || len(p.walGone) != 0 || len(p.Problems) == 0 {
		t.Fatalf("with a bad history file: %v gone, problems %v, %v", len(p.walGone), p.Problems, err)
	}
}
