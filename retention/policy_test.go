package retention

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// fates renders plans as "ID:delete|keep(reason)".
func fates(plans []BackupPlan) string {
	var out []string
	for _, b := range plans {
		what := "keep"
		if b.Delete {
			what = "delete"
		}
		out = append(out, fmt.Sprintf("%s:%s(%s)", b.ID, what, b.Reason))
	}
	return strings.Join(out, " ")
}

// TestDecide applies each policy to one list of backups at an injected
// time: a complete backup every day from day 1 to day 6, a failed one, a
// pending one, one being deleted and a pinned one.
func TestDecide(t *testing.T) {
	day := 24 * time.Hour
	mk := func(id string, d int, status string) *manifest.Manifest {
		return &manifest.Manifest{ID: id, Status: status, StopTime: t0.Add(time.Duration(d) * day)}
	}
	pinned := mk("P0", 0, manifest.StatusComplete)
	pinned.Pinned = true
	backups := []*manifest.Manifest{pinned, mk("B1", 1, manifest.StatusComplete), mk("D1", 1, manifest.StatusDeleting), mk("B2", 2, manifest.StatusComplete),
		mk("F2", 2, manifest.StatusFailed), mk("B3", 3, manifest.StatusComplete), mk("B4", 4, manifest.StatusComplete),
		mk("B5", 5, manifest.StatusComplete), mk("Q5", 5, manifest.StatusPending), mk("B6", 6, manifest.StatusComplete)}
	now := t0.Add(6*day + time.Hour)
	o := Options{PendingTimeout: 6 * time.Hour}
	for _, tc := range []struct {
		name   string
		policy Policy
		now    time.Time
		want   string
	}{
		{"retain 2", Policy{Full: 2}, now,
			"P0:keep(pinned) B1:delete(expired) D1:delete(an earlier delete began it) B2:delete(expired) F2:delete(failed) B3:delete(expired) B4:delete(expired) " +
				"B5:keep(newest 2) Q5:delete(pending for longer than 6h0m0s (ebs.wait_timeout)) B6:keep(newest 2)"},
		// The window reaches back to day 3 and an hour: B4 on stopped
		// within it, and B3 is the newest before it.
		{"window 3d", Policy{Window: 3 * day}, now,
			"P0:keep(pinned) B1:delete(expired) D1:delete(an earlier delete began it) B2:delete(expired) F2:delete(failed) " +
				"B3:keep(restores to the start of the window) B4:keep(within the window) B5:keep(within the window) " +
				"Q5:delete(pending for longer than 6h0m0s (ebs.wait_timeout)) B6:keep(within the window)"},
		// The same window a day later (the clock moved): B3 goes, B4 is the
		// one before the window.
		{"window 3d, a day later", Policy{Window: 3 * day}, now.Add(day), strings.Join([]string{
			"P0:keep(pinned) B1:delete(expired) D1:delete(an earlier delete began it) B2:delete(expired) F2:delete(failed)",
			"B3:delete(expired) B4:keep(restores to the start of the window) B5:keep(within the window)",
			"Q5:delete(pending for longer than 6h0m0s (ebs.wait_timeout)) B6:keep(within the window)"}, " ")},
		// Within ebs.wait_timeout of its stop a pending backup stays.
		{"a pending backup still within its time", Policy{Full: 1}, t0.Add(5*day + time.Hour), strings.Join([]string{
			"P0:keep(pinned) B1:delete(expired) D1:delete(an earlier delete began it) B2:delete(expired) F2:delete(failed)",
			"B3:delete(expired) B4:delete(expired) B5:delete(expired)",
			"Q5:keep(pending: its snapshots are not complete yet) B6:keep(newest 1)"}, " ")},
		{"both: either keeps", Policy{Full: 4, Window: 36 * time.Hour}, now,
			"P0:keep(pinned) B1:delete(expired) D1:delete(an earlier delete began it) B2:delete(expired) F2:delete(failed) " +
				"B3:keep(newest 4) B4:keep(newest 4, restores to the start of the window) B5:keep(newest 4, within the window) " +
				"Q5:delete(pending for longer than 6h0m0s (ebs.wait_timeout)) B6:keep(newest 4, within the window)"},
		{"a window longer than the history keeps every complete backup", Policy{Window: 30 * day}, now,
			"P0:keep(pinned) B1:keep(within the window) D1:delete(an earlier delete began it) B2:keep(within the window) F2:delete(failed) " +
				"B3:keep(within the window) B4:keep(within the window) B5:keep(within the window) " +
				"Q5:delete(pending for longer than 6h0m0s (ebs.wait_timeout)) B6:keep(within the window)"},
	} {
		o.Policy, o.Now = tc.policy, tc.now
		if got := fates(decide(backups, o)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	// The pinned backup also counts as one of the newest: it is kept for
	// its WAL onward only when the policy keeps it too.
	o.Policy, o.Now = Policy{Full: 20}, now
	if p := decide(backups, o); !p[0].onward || !p[1].onward {
		t.Errorf("retain 20: pinned onward %v, B1 onward %v", p[0].onward, p[1].onward)
	}
	o.Policy = Policy{Full: 1}
	if p := decide(backups, o); p[0].onward || p[0].Delete {
		t.Errorf("retain 1: the pinned backup is kept only as pinned: %+v", p[0])
	}
}

// TestNamed: --backup ID deletes one backup, refusing a pinned one (even
// with --force), the only restorable one and the one that keeps the
// window restorable (unless --force).
func TestNamed(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.segments(1, 2, 20, t0)
	day := 24 * time.Hour
	f.backup("B1", 1, 3, 4, t0.Add(1*day), manifest.StatusComplete)
	f.backup("B2", 1, 8, 9, t0.Add(2*day), manifest.StatusComplete)
	f.backup("B3", 1, 12, 13, t0.Add(3*day), manifest.StatusComplete)
	f.backup("F4", 1, 14, 15, t0.Add(4*day), manifest.StatusFailed)
	if err := f.r.Pin(ctx, "B3"); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(5 * day)
	named := func(id string, p Policy, force bool) error {
		o := f.options(now, p)
		o.Backup, o.Force = id, force
		_, err := Make(ctx, o)
		return err
	}
	for _, tc := range []struct {
		id     string
		window time.Duration
		force  bool
		want   string
	}{
		{"B9", 0, false, "no such backup"},
		{"B3", 0, true, "pinned"},
		// A 2.5-day window starts between B2 and B3: B2 restores to its start.
		{"B2", 60 * time.Hour, false, "only backup that restores to the start of the retention window"},
		// A 10-day window starts before every backup: the oldest keeps most of it.
		{"B1", 10 * day, false, "only backup that restores to the start of the retention window"},
	} {
		err := named(tc.id, Policy{Window: tc.window}, tc.force)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("delete --backup %s (window %s, force %v) = %v, want a refusal: %q", tc.id, tc.window, tc.force, err, tc.want)
		}
		if strings.Contains(tc.want, "window") && !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v does not match ErrRefused", tc.id, err)
		}
	}
	for _, tc := range []struct {
		id     string
		window time.Duration
		force  bool
	}{{"B1", 60 * time.Hour, false}, {"B2", 60 * time.Hour, true}, {"F4", 0, false}, {"B2", 0, false}} {
		if err := named(tc.id, Policy{Window: tc.window}, tc.force); err != nil {
			t.Errorf("delete --backup %s (window %s, force %v): %v", tc.id, tc.window, tc.force, err)
		}
	}
	// No policy and no backup named: refused.
	if _, err := Make(ctx, f.options(now, Policy{})); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("no policy: %v", err)
	}

	// Deleting B1 and B2 leaves B3 (pinned) the only restorable backup;
	// unpinned, it is refused as such.
	for _, id := range []string{"B1", "B2"} {
		o := f.options(now, Policy{})
		o.Backup = id
		if _, err := Run(ctx, o, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.backupIDs(); got != "B3 F4:failed" {
		t.Fatalf("after deleting B1 and B2: %s", got)
	}
	f.r.Unpin(ctx, "B3")
	if err := named("B3", Policy{}, false); err == nil || !strings.Contains(err.Error(), "only backup that can be restored") {
		t.Fatalf("the last restorable backup: %v", err)
	}
	if _, err := f.r.Manifest(ctx, "B1"); !errors.Is(err, repo.ErrNoBackup) {
		t.Fatalf("B1 after its delete: %v", err)
	}
}
