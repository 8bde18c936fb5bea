package manifest

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNewIDUnique: two backups started in the same second, even in the
// same millisecond, get different ids, which sort by their start time and
// are valid in keys and tags.
func TestNewIDUnique(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 27, 52, 0, time.UTC)
	a, b := NewID(t0), NewID(t0)
	if a == b {
		t.Fatalf("two backups started at %s both got id %s", t0, a)
	}
	later := NewID(t0.Add(time.Millisecond))
	nextSecond := NewID(t0.Add(time.Second))
	ids := []string{nextSecond, later, b, a}
	slices.Sort(ids)
	if ids[2] != later || ids[3] != nextSecond {
		t.Errorf("ids sort as %v: want the later ones last", ids)
	}
	for _, id := range []string{a, later} {
		if !strings.HasPrefix(id, "20261201T122752.0") || len(id) != len("20261201T122752.000Z-01234567") {
			t.Errorf("id %q", id)
		}
		m := &Manifest{FormatVersion: FormatVersion, ID: id, Provider: ProviderFiles, Status: StatusPending, SystemID: 1, SegmentSize: 16 << 20}
		if err := m.Validate(); err != nil {
			t.Errorf("id %s: %v", id, err)
		}
	}
}
