package restore

import (
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// TestChooseSkipsDeleting: a backup being deleted is never chosen, by
// target or by name, nor named as the earliest reachable point.
func TestChooseSkipsDeleting(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	list := []*manifest.Manifest{
		backup("a", t0, 0x1000000, manifest.StatusDeleting),
		backup("b", t0.Add(time.Hour), 0x2000000, manifest.StatusComplete),
		backup("c", t0.Add(2*time.Hour), 0x3000000, manifest.StatusDeleting),
	}
	if m, err := Choose(list, "", 7, Target{}); err != nil || m.ID != "b" {
		t.Fatalf("latest: %v %v, want b", m, err)
	}
	if _, err := Choose(list, "c", 7, Target{}); err == nil || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("named backup being deleted: %v", err)
	}
	tg, err := ParseTarget(TargetSpec{Time: "2026-11-24 10:30:00+00"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Choose(list, "", 7, tg); err == nil || !strings.Contains(err.Error(), "earliest reachable point is 2026-11-24 11:00:00") || !strings.Contains(err.Error(), "backup b") {
		t.Fatalf("target before the first backup not being deleted: %v", err)
	}
}
