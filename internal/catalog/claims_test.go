package catalog

import (
	"reflect"
	"testing"

	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// TestClaims on the twoTimelines tree: timeline 2 branches off 1 in
// segment 8, timeline 3 off 2 at segment 13.
func TestClaims(t *testing.T) {
	c := twoTimelines(t)
	for _, tc := range []struct {
		name        string
		tli         uint32
		start, stop uint64
		onward      bool
		want        []Claim
	}{
		{"before the branches: every descendant, whole", 1, 3, 4, true, []Claim{{1, 3, Open, "b"}, {2, 0, Open, "b"}, {3, 0, Open, "b"}}},
		{"in the switch segment of timeline 2", 1, 8, 8, true, []Claim{{1, 8, Open, "b"}, {2, 0, Open, "b"}, {3, 0, Open, "b"}}},
		{"after the branch: its own timeline only", 1, 10, 11, true, []Claim{{1, 10, Open, "b"}}},
		{"on timeline 2 before 3 branched", 2, 9, 10, true, []Claim{{2, 9, Open, "b"}, {3, 0, Open, "b"}}},
		{"on timeline 3", 3, 13, 14, true, []Claim{{3, 13, Open, "b"}}},
		{"pinned: start to stop", 1, 3, 5, false, []Claim{{1, 3, 5, "b"}}},
	} {
		got, err := c.Claims(backupAt("b", tc.tli, tc.start, tc.stop), tc.onward)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Claims = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	bad := backupAt("b", 1, 3, 4)
	bad.StartWAL = "nonsense"
	if _, err := c.Claims(bad, true); err == nil {
		t.Error("Claims of a manifest without a start segment")
	}

	claims, _ := c.Claims(backupAt("b", 2, 9, 10), true)
	for name, want := range map[string]bool{
		seg(2, 9): true, seg(2, 8): false, seg(3, 13): true, seg(1, 12): false,
		seg(2, 11) + ".partial": true, seg(2, 9) + ".00000028.backup": true, seg(1, 9) + ".00000028.backup": false,
		"00000003.history": false,
	} {
		kind, err := wal.Classify(name)
		if err != nil {
			t.Fatal(err)
		}
		f := repo.WALFile{Name: name, Kind: kind}
		if _, got := c.Claimed(claims, f); got != want {
			t.Errorf("Claimed(%s) = %v, want %v", name, got, want)
		}
	}
	// A name that does not fit the segment size is kept.
	if cl, ok := c.Claimed(nil, repo.WALFile{Name: "000000010000000000000100", Kind: wal.KindSegment}); !ok || cl.Backup != "" {
		t.Errorf("an unplaceable segment: %v %v", cl, ok)
	}
}
