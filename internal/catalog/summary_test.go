package catalog

import (
	"reflect"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

func TestLastArchived(t *testing.T) {
	c := twoTimelines(t)
	// files() archives segment n at minute n: timeline 2's 15 is the last.
	if f, ok := c.LastArchived(); !ok || f.Name != seg(2, 15) {
		t.Fatalf("LastArchived = %s, %v; want %s", f.Name, ok, seg(2, 15))
	}
	late := repo.WALFile{Name: seg(1, 3), Kind: wal.KindSegment, TLI: 1, ModTime: t0.Add(time.Hour)}
	hist := repo.WALFile{Name: "00000009.history", Kind: wal.KindHistory, TLI: 9, ModTime: t0.Add(2 * time.Hour)}
	c = New(repo.Identity{SystemID: 7, SegmentSize: segSize}, nil, append(files(1, 2, 12), late, hist))
	if f, ok := c.LastArchived(); !ok || f.Name != seg(1, 3) {
		t.Fatalf("LastArchived = %s, %v; want the segment stored last, not the highest or a history file", f.Name, ok)
	}
	if _, ok := New(repo.Identity{SystemID: 7, SegmentSize: segSize}, nil, []repo.WALFile{hist}).LastArchived(); ok {
		t.Fatal("a repository without segments has a last archived one")
	}
}

func TestOldestRecoveryPoint(t *testing.T) {
	broken := backupAt("a", 1, 3, 4) // its stop segment is missing below
	failed := backupAt("b", 1, 5, 5) // not complete
	good := backupAt("c", 1, 6, 7)   // the oldest restorable
	newer := backupAt("d", 1, 9, 10) // restorable too, but later
	failed.Status = manifest.StatusFailed
	var fl []repo.WALFile
	for _, f := range files(1, 2, 12) {
		if f.Name != seg(1, 4) {
			fl = append(fl, f)
		}
	}
	c := New(repo.Identity{SystemID: 7, SegmentSize: segSize}, []*manifest.Manifest{broken, failed, good, newer}, fl)
	at, m, ok := c.OldestRecoveryPoint()
	if !ok || m != good || !at.Equal(good.StopTime) {
		t.Fatalf("OldestRecoveryPoint = %v, %v, %v; want backup c's stop %v", at, m, ok, good.StopTime)
	}
	c = New(repo.Identity{SystemID: 7, SegmentSize: segSize}, []*manifest.Manifest{broken}, fl)
	if _, _, ok := c.OldestRecoveryPoint(); ok {
		t.Fatal("a repository whose only backup is broken has a recovery point")
	}
}

func TestSegmentsAlong(t *testing.T) {
	c := twoTimelines(t, seg(2, 10))
	spans, err := c.Route(wal.Segment{TLI: 1, No: 6}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range c.SegmentsAlong(spans) {
		got = append(got, f.Name)
	}
	want := []string{seg(1, 6), seg(1, 7), seg(2, 8), seg(2, 9), seg(2, 11), seg(2, 12), seg(3, 13), seg(3, 14)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SegmentsAlong = %v, want %v", got, want)
	}
}

func TestMergeGaps(t *testing.T) {
	got := MergeGaps([]Gap{{2, 10, 11}, {1, 4, 4}, {1, 5, 7}, {2, 11, 12}, {1, 9, 9}, {1, 4, 6}})
	want := []Gap{{1, 4, 7}, {1, 9, 9}, {2, 10, 12}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeGaps = %v, want %v", got, want)
	}
	if MergeGaps(nil) != nil {
		t.Fatal("MergeGaps(nil) is not empty")
	}
}
