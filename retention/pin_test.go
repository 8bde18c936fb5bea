package retention

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// TestPin: a complete backup is pinned and unpinned; a failed one, one
// being deleted and an unknown id are refused, and nothing is pinned.
func TestPin(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.backup("b-complete", 1, 2, 3, t0, manifest.StatusComplete)
	f.backup("b-failed", 1, 4, 5, t0.Add(time.Hour), manifest.StatusFailed)
	f.backup("b-deleting", 1, 6, 7, t0.Add(2*time.Hour), manifest.StatusComplete)
	if err := f.r.MarkDeleting(ctx, "b-deleting"); err != nil {
		t.Fatal(err)
	}
	pinned := func(id string) bool {
		t.Helper()
		m, err := f.r.Manifest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.Pinned
	}

	msg, err := Pin(ctx, f.r, "b-complete", false)
	if err != nil || !strings.Contains(msg, "pinned") || !pinned("b-complete") {
		t.Fatalf("pin a complete backup: %q, %v, pinned %v", msg, err, pinned("b-complete"))
	}
	msg, err = Pin(ctx, f.r, "b-complete", true)
	if err != nil || !strings.Contains(msg, "unpinned") || pinned("b-complete") {
		t.Fatalf("unpin: %q, %v, pinned %v", msg, err, pinned("b-complete"))
	}
	if _, err := Pin(ctx, f.r, "b-failed", false); err == nil || !strings.Contains(err.Error(), "failed") || pinned("b-failed") {
		t.Fatalf("pin a failed backup: %v", err)
	}
	if _, err := Pin(ctx, f.r, "b-deleting", false); !errors.Is(err, repo.ErrDeleting) || pinned("b-deleting") {
		t.Fatalf("pin a backup being deleted: %v", err)
	}
	if _, err := Pin(ctx, f.r, "b-none", false); err == nil {
		t.Fatal("pin an unknown backup: no error")
	}
}
