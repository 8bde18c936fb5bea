package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/wal"
)

const segSize = 16 << 20

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func seg(tli uint32, no uint64) string { return wal.Segment{TLI: tli, No: no}.Name(segSize) }

// files lists segments tli:first..last, archived a minute apart from t0.
func files(tli uint32, first, last uint64) []repo.WALFile {
	var out []repo.WALFile
	for no := first; no <= last; no++ {
		out = append(out, repo.WALFile{Name: seg(tli, no), Kind: wal.KindSegment, TLI: tli, ModTime: t0.Add(time.Duration(no) * time.Minute)})
	}
	return out
}

func backupAt(id string, tli uint32, startNo, stopNo uint64) *manifest.Manifest {
	return &manifest.Manifest{ID: id, Status: manifest.StatusComplete, Timeline: tli,
		StartLSN: wal.LSN(startNo*segSize + 40), StopLSN: wal.LSN(stopNo*segSize + 400),
		StartWAL: seg(tli, startNo), StopWAL: seg(tli, stopNo), StopTime: t0.Add(time.Duration(stopNo) * time.Minute)}
}

// twoTimelines: timeline 1 segments 2..12, timeline 2 branched at segment
// 8 (switch inside it) with segments 8..15, and timeline 3 off timeline 2
// at segment 13, segments 13..14.
func twoTimelines(t *testing.T, drop ...string) *Catalog {
	t.Helper()
	var fl []repo.WALFile
	fl = append(fl, files(1, 2, 12)...)
	fl = append(fl, files(2, 8, 15)...)
	fl = append(fl, files(3, 13, 14)...)
	var kept []repo.WALFile
	for _, f := range fl {
		if !strings.Contains(strings.Join(drop, " "), f.Name) {
			kept = append(kept, f)
		}
	}
	c := New(repo.Identity{SystemID: 7, SegmentSize: segSize}, nil, kept)
	c.SetHistory(2, []wal.HistoryEntry{{ParentTLI: 1, SwitchPoint: wal.LSN(8*segSize + 1234)}})
	c.SetHistory(3, []wal.HistoryEntry{{ParentTLI: 1, SwitchPoint: wal.LSN(8*segSize + 1234)}, {ParentTLI: 2, SwitchPoint: wal.LSN(13 * segSize)}})
	return c
}

func TestRoute(t *testing.T) {
	c := twoTimelines(t)
	for _, tc := range []struct {
		from wal.Segment
		to   uint32
		want []Span
	}{
		{wal.Segment{TLI: 1, No: 3}, 1, []Span{{1, 3, Open}}},
		{wal.Segment{TLI: 1, No: 3}, 2, []Span{{1, 3, 7}, {2, 8, Open}}},
		{wal.Segment{TLI: 1, No: 3}, 3, []Span{{1, 3, 7}, {2, 8, 12}, {3, 13, Open}}},
		{wal.Segment{TLI: 2, No: 9}, 3, []Span{{2, 9, 12}, {3, 13, Open}}},
		// A backup taken in the switch segment of timeline 2.
		{wal.Segment{TLI: 1, No: 8}, 2, []Span{{2, 8, Open}}},
	} {
		got, err := c.Route(tc.from, tc.to)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Route(%v, %d) = %v, %v; want %v", tc.from, tc.to, got, err, tc.want)
		}
	}
	if _, err := c.Route(wal.Segment{TLI: 1, No: 10}, 2); err == nil {
		t.Error("a route from after the branch point to the branch was accepted")
	}
	if _, err := c.Route(wal.Segment{TLI: 2, No: 10}, 1); err == nil {
		t.Error("a route to an ancestor was accepted")
	}
	if got := c.Ancestry(3); !reflect.DeepEqual(got, []uint32{1, 2, 3}) {
		t.Errorf("Ancestry(3) = %v", got)
	}
	if got := c.Descendants(1, wal.LSN(5*segSize)); !reflect.DeepEqual(got, []uint32{1, 2, 3}) {
		t.Errorf("Descendants(1, before the branch) = %v", got)
	}
	if got := c.Descendants(1, wal.LSN(9*segSize)); !reflect.DeepEqual(got, []uint32{1}) {
		t.Errorf("Descendants(1, after the branch) = %v", got)
	}
	if got := c.Descendants(2, wal.LSN(9*segSize)); !reflect.DeepEqual(got, []uint32{2, 3}) {
		t.Errorf("Descendants(2) = %v", got)
	}
}

func TestWindows(t *testing.T) {
	c := twoTimelines(t)
	m := backupAt("b", 1, 3, 4)
	ws, err := c.Windows(m)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]string{}
	for _, w := range ws {
		got[w.Timeline] = fmt.Sprintf("%v %s gaps=%d", w.Consistent, w.ToSegment.Name(segSize), len(w.Gaps))
		if !w.From.Equal(m.StopTime) {
			t.Errorf("window from %v, want the backup's stop", w.From)
		}
	}
	want := map[uint32]string{1: "true " + seg(1, 12) + " gaps=0", 2: "true " + seg(2, 15) + " gaps=0", 3: "true " + seg(3, 14) + " gaps=0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("windows = %v, want %v", got, want)
	}

	// A gap after the stop on timeline 2 shortens that window only; one
	// inside the backup makes it inconsistent everywhere.
	c = twoTimelines(t, seg(2, 10), seg(2, 11))
	ws, _ = c.Windows(m)
	for _, w := range ws {
		if w.Timeline == 2 {
			if !w.Consistent || w.ToSegment != (wal.Segment{TLI: 2, No: 9}) || !reflect.DeepEqual(w.Gaps, []Gap{{2, 10, 11}}) {
				t.Fatalf("timeline 2 with a gap: %+v", w)
			}
			if w.To != t0.Add(9*time.Minute) {
				t.Errorf("window ends at %v, want the archive time of the last unbroken segment", w.To)
			}
		}
	}
	c = twoTimelines(t, seg(1, 4))
	ws, _ = c.Windows(m)
	for _, w := range ws {
		if w.Consistent || len(w.Gaps) == 0 || w.Gaps[0] != (Gap{1, 4, 4}) {
			t.Fatalf("a backup missing its stop segment: %+v", w)
		}
	}
	first, last := Gap{1, 4, 5}.Names(segSize)
	if first != seg(1, 4) || last != seg(1, 5) {
		t.Errorf("Names = %s %s", first, last)
	}
}

// TestLoad: the catalog of a real (file) repository, history read from it.
func TestLoad(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	if _, err := r.InitIdentity(ctx, repo.Identity{SystemID: 7, SegmentSize: segSize, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	none, _ := compress.Parse("none")
	put := func(name string, data []byte) {
		t.Helper()
		if _, err := r.PutWAL(ctx, name, none, data, strings.Repeat("0", 64), len(data)); err != nil {
			t.Fatal(err)
		}
	}
	for no := uint64(2); no <= 4; no++ {
		put(seg(1, no), []byte("x"))
	}
	put(seg(3, 4), []byte("x"))
	// The history is checked by SHA-256 when read: store it properly.
	hist := []byte("1\t0/4000100\tno recovery target specified\n\n2\t0/4000200\tx\n")
	sum := sha256hex(hist)
	if _, err := r.PutWAL(ctx, "00000003.history", none, hist, sum, len(hist)); err != nil {
		t.Fatal(err)
	}
	c, err := Load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if tl := c.Timelines[3]; tl == nil || tl.Parent != 2 || !tl.History {
		t.Fatalf("timeline 3: %+v", tl)
	}
	// Timeline 2 has no history file of its own, but 3's says where it began.
	if tl := c.Timelines[2]; tl == nil || tl.Parent != 1 || tl.History {
		t.Fatalf("timeline 2: %+v", tl)
	}
	if len(c.Problems) != 1 || !strings.Contains(c.Problems[0], "timeline 2: no history file") {
		t.Fatalf("problems: %v", c.Problems)
	}
	if n, ok := c.Newest(1); !ok || n != 4 || !c.Has(3, 4) || c.Has(3, 3) {
		t.Fatalf("segments: newest %d %v", n, ok)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
