package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/wal"
)

// Plan is what a delete does, or in a dry run would do, and what it
// keeps, with the reason for each.
type Plan struct {
	Now     time.Time      `json:"now"`
	Policy  string         `json:"policy"`
	Backups []BackupPlan   `json:"backups"`
	Orphans []OrphanPlan   `json:"orphans"`
	Snaps   []SnapshotPlan `json:"orphan_snapshots"`
	WAL     []WALRange     `json:"wal"`
	// WALKept says why no WAL goes at all, when that is decided before
	// looking at the files.
	WALKept string `json:"wal_kept,omitempty"`
	// RecoveryPoint is the earliest point a restore can reach now, and
	// RecoveryPointAfter once the delete is done (nil: none).
	RecoveryPoint      *RecoveryPoint `json:"oldest_recovery_point"`
	RecoveryPointAfter *RecoveryPoint `json:"oldest_recovery_point_after"`
	// Problems are what the repository holds that retention cannot use
	// (unreadable manifests or history files); they keep WAL from going.
	Problems []string `json:"problems,omitempty"`
	// Done reports whether the plan was carried out (Execute); Errors are
	// what failed then.
	Done   bool     `json:"done"`
	Errors []string `json:"errors,omitempty"`
	// Total is what goes (Done: what went).
	Total Totals `json:"totals"`

	cat     *catalog.Catalog
	objects map[string][]repo.BackupObject // by backup id
	fates   []fileFate                     // of every WAL file, in name order
	walGone []repo.WALFile                 // the files that go
}

// BackupPlan is the fate of one backup.
type BackupPlan struct {
	ID        string            `json:"id"`
	Provider  manifest.Provider `json:"provider"`
	Status    string            `json:"status"`
	StopTime  time.Time         `json:"stop_time"`
	Pinned    bool              `json:"pinned"`
	Delete    bool              `json:"delete"`
	Reason    string            `json:"reason"`
	Snapshots []string          `json:"snapshots,omitempty"`
	// Orchestrator, when set, took the snapshots (an external
	// orchestrator, recorded by backup-stop): they are its own to expire,
	// never walsnap's to delete.
	Orchestrator string `json:"orchestrator,omitempty"`
	Objects      int    `json:"objects"` // objects stored for it, manifest included
	Bytes        int64  `json:"bytes"`
	// Outcome is what Execute did when it differs from the plan (a
	// snapshot in use, a failed hook, an orchestrator's snapshots still
	// there), or "deleted".
	Outcome string `json:"outcome,omitempty"`

	m *manifest.Manifest
	// onward: kept for everything after its start (by the policy, as
	// pending, or not named), not only to stay consistent (pinned).
	onward bool
}

// OrphanPlan is the fate of objects stored for a backup that has no
// manifest.
type OrphanPlan struct {
	BackupID string    `json:"backup_id"`
	Objects  int       `json:"objects"`
	Bytes    int64     `json:"bytes"`
	Newest   time.Time `json:"newest"`
	Delete   bool      `json:"delete"`
	Reason   string    `json:"reason"`
	Outcome  string    `json:"outcome,omitempty"`
}

// SnapshotPlan is the fate of an EBS snapshot tagged with the id of a
// backup that has no manifest.
type SnapshotPlan struct {
	SnapshotID string    `json:"snapshot_id"`
	BackupID   string    `json:"backup_id"`
	StartTime  time.Time `json:"start_time"`
	Delete     bool      `json:"delete"`
	Reason     string    `json:"reason"`
	Outcome    string    `json:"outcome,omitempty"`
}

// RecoveryPoint is the earliest point a restore can reach: the stop of
// the oldest complete backup whose WAL from start to stop is there.
type RecoveryPoint struct {
	Time    time.Time `json:"time"`
	LSN     wal.LSN   `json:"lsn"`
	Backup  string    `json:"backup"`
	Segment string    `json:"stop_wal"`
}

// Make plans a delete: it reads the repository (and, for EBS, the
// snapshots) and changes nothing.
func Make(ctx context.Context, o Options) (*Plan, error) {
	o.defaults()
	if o.Backup == "" && !o.Policy.IsSet() {
		return nil, ErrNoPolicy
	}
	cat, err := catalog.Load(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	objs, err := o.Repo.BackupObjects(ctx, "")
	if err != nil {
		return nil, err
	}
	p := &Plan{Now: o.Now.UTC(), Policy: o.Policy.String(), cat: cat, objects: map[string][]repo.BackupObject{}}
	if o.Backup != "" {
		p.Policy = "delete backup " + o.Backup
	}
	for _, obj := range objs {
		p.objects[obj.BackupID] = append(p.objects[obj.BackupID], obj)
	}
	p.Problems = append(p.Problems, cat.Problems...)
	for _, b := range cat.BadBackups {
		p.Problems = append(p.Problems, fmt.Sprintf("backup %s: %v", b.ID, b.Err))
	}
	if o.Backup != "" {
		p.Backups, err = decideNamed(cat, o)
	} else {
		p.Backups = decide(cat.Backups, o)
	}
	if err != nil {
		return nil, err
	}
	for i := range p.Backups {
		b := &p.Backups[i]
		for _, obj := range p.objects[b.ID] {
			b.Objects++
			b.Bytes += obj.Size
		}
		refs, orchestrator, err := payloadRefs(b.m)
		if err != nil && b.Delete {
			b.Delete, b.onward, b.Reason = false, true, "its payload cannot be read"
			p.Problems = append(p.Problems, err.Error())
		}
		b.Snapshots, b.Orchestrator = refs, orchestrator
	}
	p.planOrphans(cat, o)
	if err := p.planOrphanSnapshots(ctx, cat, o); err != nil {
		return nil, err
	}
	p.planWAL()
	var all, kept []*manifest.Manifest
	for _, b := range p.Backups {
		all = append(all, b.m)
		if !b.Delete {
			kept = append(kept, b.m)
		}
	}
	p.RecoveryPoint, p.RecoveryPointAfter = recoveryPoint(cat, all), recoveryPoint(cat, kept)
	p.Total = p.Totals()
	return p, nil
}

// decide applies the policy to backups (oldest first, as the catalog
// lists them) at o.Now.
func decide(backups []*manifest.Manifest, o Options) []BackupPlan {
	var complete []int // indexes of the complete backups, oldest first
	for i, m := range backups {
		if m.Status == manifest.StatusComplete {
			complete = append(complete, i)
		}
	}
	keep := map[int][]string{}
	if n := o.Policy.Full; n > 0 {
		for _, i := range complete[max(0, len(complete)-n):] {
			keep[i] = append(keep[i], fmt.Sprintf("newest %d", n))
		}
	}
	if w := o.Policy.Window; w > 0 {
		cutoff := o.Now.Add(-w)
		before := -1 // the newest backup that stopped before the window
		for _, i := range complete {
			if backups[i].StopTime.Before(cutoff) {
				before = i
			} else {
				keep[i] = append(keep[i], "within the window")
			}
		}
		if before >= 0 {
			keep[before] = append(keep[before], "restores to the start of the window")
		}
	}
	out := make([]BackupPlan, len(backups))
	for i, m := range backups {
		b := newBackupPlan(m)
		switch {
		case m.Status == manifest.StatusDeleting:
			b.Delete, b.Reason = true, "an earlier delete began it"
		case m.Pinned:
			b.Reason = "pinned"
			b.onward = len(keep[i]) > 0
		case m.Status == manifest.StatusFailed:
			b.Delete, b.Reason = true, "failed"
		case m.Status == manifest.StatusPending && o.Now.Sub(m.StopTime) > o.PendingTimeout:
			b.Delete, b.Reason = true, fmt.Sprintf("pending for longer than %s (ebs.wait_timeout)", o.PendingTimeout)
		case m.Status == manifest.StatusPending:
			b.Reason, b.onward = "pending: its snapshots are not complete yet", true
		case len(keep[i]) > 0:
			b.Reason, b.onward = strings.Join(keep[i], ", "), true
		default:
			b.Delete, b.Reason = true, "expired"
		}
		out[i] = b
	}
	return out
}

// decideNamed plans the delete of the one backup o.Backup; every other
// backup is kept (those an earlier delete began are finished).
func decideNamed(cat *catalog.Catalog, o Options) ([]BackupPlan, error) {
	i := slices.IndexFunc(cat.Backups, func(m *manifest.Manifest) bool { return m.ID == o.Backup })
	if i < 0 {
		return nil, fmt.Errorf("backup %s: %w", o.Backup, repo.ErrNoBackup)
	}
	target := cat.Backups[i]
	if target.Pinned && target.Status != manifest.StatusDeleting {
		return nil, fmt.Errorf("%w: backup %s is pinned (unpin it first: walsnap backup-pin --unpin %s)", ErrRefused, target.ID, target.ID)
	}
	if target.Status == manifest.StatusComplete && !o.Force {
		if err := checkNamed(cat, target, o); err != nil {
			return nil, err
		}
	}
	out := make([]BackupPlan, len(cat.Backups))
	for j, m := range cat.Backups {
		b := newBackupPlan(m)
		switch {
		case j == i:
			b.Delete, b.Reason = true, "named by --backup"
		case m.Status == manifest.StatusDeleting:
			b.Delete, b.Reason = true, "an earlier delete began it"
		case m.Pinned:
			b.Reason, b.onward = "pinned", m.Status != manifest.StatusFailed
		default:
			b.Reason, b.onward = "not named", m.Status != manifest.StatusFailed
		}
		out[j] = b
	}
	return out, nil
}

// checkNamed refuses to delete the only restorable backup, and the one
// that keeps the window (o.Policy.Window) restorable: the newest
// restorable backup that stopped before the window, or, when none did,
// the oldest one.
func checkNamed(cat *catalog.Catalog, target *manifest.Manifest, o Options) error {
	var restorable []*manifest.Manifest
	for _, m := range cat.Backups {
		if restores(cat, m) {
			restorable = append(restorable, m)
		}
	}
	if len(restorable) == 1 && restorable[0] == target {
		return fmt.Errorf("%w: backup %s is the only backup that can be restored (--force deletes it anyway)", ErrRefused, target.ID)
	}
	if o.Policy.Window <= 0 || len(restorable) == 0 {
		return nil
	}
	cutoff := o.Now.Add(-o.Policy.Window)
	anchor := restorable[0]
	for _, m := range restorable {
		if m.StopTime.Before(cutoff) {
			anchor = m
		}
	}
	if anchor == target {
		return fmt.Errorf("%w: backup %s is the only backup that restores to the start of the retention window (%s ago, %s); without it the oldest recovery point moves later (--force deletes it anyway)",
			ErrRefused, target.ID, o.Policy.Window, cutoff.UTC().Format(time.RFC3339))
	}
	return nil
}

func newBackupPlan(m *manifest.Manifest) BackupPlan {
	return BackupPlan{ID: m.ID, Provider: m.Provider, Status: m.Status, StopTime: m.StopTime, Pinned: m.Pinned, m: m}
}

// restores reports whether m is complete and its WAL from start to stop
// is all there.
func restores(cat *catalog.Catalog, m *manifest.Manifest) bool {
	if m.Status != manifest.StatusComplete {
		return false
	}
	ws, err := cat.Windows(m)
	return err == nil && slices.ContainsFunc(ws, func(w catalog.Window) bool { return w.Consistent })
}

// recoveryPoint is the earliest point a restore from one of backups
// (oldest first) reaches, or nil.
func recoveryPoint(cat *catalog.Catalog, backups []*manifest.Manifest) *RecoveryPoint {
	for _, m := range backups {
		if restores(cat, m) {
			return &RecoveryPoint{Time: m.StopTime, LSN: m.StopLSN, Backup: m.ID, Segment: m.StopWAL}
		}
	}
	return nil
}

// planOrphans decides the fate of objects stored for backups that have no
// manifest: left by an interrupted delete (its deleting mark is among
// them), they go now; others once they are OrphanAge old (a backup still
// being written has no manifest yet). Names whose manifest is there but
// cannot be read are not orphans.
func (p *Plan) planOrphans(cat *catalog.Catalog, o Options) {
	known := map[string]bool{}
	for _, m := range cat.Backups {
		known[m.ID] = true
	}
	for _, b := range cat.BadBackups {
		known[b.ID] = true
	}
	var ids []string
	for id := range p.objects {
		if !known[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		op := OrphanPlan{BackupID: id}
		marked := false
		for _, obj := range p.objects[id] {
			op.Objects++
			op.Bytes += obj.Size
			op.Newest = maxTime(op.Newest, obj.ModTime)
			marked = marked || obj.Mark == repo.MarkDeleting
		}
		switch {
		case marked:
			op.Delete, op.Reason = true, "left by an interrupted delete"
		case o.Backup != "":
			op.Reason = "no manifest (orphans go with a policy run)"
		case o.Now.Sub(op.Newest) > OrphanAge:
			op.Delete, op.Reason = true, "no manifest, older than a day"
		default:
			op.Reason = "no manifest yet: a backup may be writing it (orphans go after a day)"
		}
		p.Orphans = append(p.Orphans, op)
	}
}

// planOrphanSnapshots looks, for EBS repositories in a policy run, for
// snapshots tagged with this cluster's system id and the id of a backup
// that has no manifest.
func (p *Plan) planOrphanSnapshots(ctx context.Context, cat *catalog.Catalog, o Options) error {
	usesEBS := o.Provider == manifest.ProviderEBS || slices.ContainsFunc(cat.Backups, func(m *manifest.Manifest) bool { return m.Provider == manifest.ProviderEBS })
	if o.Backup != "" || !usesEBS || o.Snapshots == nil {
		return nil
	}
	api, err := o.Snapshots(ctx)
	if err != nil {
		return fmt.Errorf("look for snapshots of backups without a manifest: %w", err)
	}
	found, err := api.BackupSnapshots(ctx, cat.Identity.SystemID)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, m := range cat.Backups {
		known[m.ID] = true
	}
	for _, b := range cat.BadBackups {
		known[b.ID] = true
	}
	for _, s := range found {
		id := s.Tags[ebs.TagBackupID]
		if known[id] {
			continue
		}
		sp := SnapshotPlan{SnapshotID: s.SnapshotID, BackupID: id, StartTime: s.StartTime}
		if o.Now.Sub(s.StartTime) > OrphanAge {
			sp.Delete, sp.Reason = true, "its backup has no manifest, older than a day"
		} else {
			sp.Reason = "its backup has no manifest yet (orphans go after a day)"
		}
		p.Snaps = append(p.Snaps, sp)
	}
	slices.SortFunc(p.Snaps, func(a, b SnapshotPlan) int { return strings.Compare(a.SnapshotID, b.SnapshotID) })
	return nil
}

// payloadRefs returns the snapshot references a backup's manifest
// records (EBS snapshot ids, command references, an orchestrator's ids)
// and the orchestrator that owns them, if one does. A manifest without a
// payload (a failed backup) has none.
func payloadRefs(m *manifest.Manifest) (refs []string, orchestrator string, err error) {
	if len(m.Payload) == 0 || string(m.Payload) == "null" {
		return nil, "", nil
	}
	pl, err := m.DecodePayload()
	if err != nil {
		return nil, "", err
	}
	switch pl := pl.(type) {
	case *manifest.EBSPayload:
		for _, s := range pl.Snapshots {
			refs = append(refs, s.SnapshotID)
		}
		return refs, pl.Orchestrator, nil
	case *manifest.CommandPayload:
		return pl.Snapshots, "", nil
	case *manifest.ExternalPayload:
		return pl.Snapshots, cmp.Or(pl.Orchestrator, "the external orchestrator"), nil
	}
	return nil, "", nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// errorsJoin joins the non-nil errors into one line.
func errorsJoin(errs []error) string {
	return strings.ReplaceAll(errors.Join(errs...).Error(), "\n", "; ")
}
