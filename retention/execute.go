package retention

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/shellcmd"
)

// walChunk is how many WAL files go per call to the repository: progress
// is reported after each. A multiple of the 4 batches of 1,000 that the
// S3 backend keeps in flight, so that none waits half empty.
const walChunk = 20 * 1000

// Execute carries out p, which Make made with the same options, in the
// order that leaves the repository consistent wherever it stops:
//
//  1. every backup to delete is marked deleting (repo.MarkDeleting): from
//     then on restore, verify and retention treat it as gone. One pinned
//     meanwhile is kept.
//  2. backup by backup: its payload (files parts; EBS snapshots, one in
//     use keeping the backup as deleting; command.delete with the
//     references; an orchestrator's snapshots are never deleted, the
//     backup stays deleting until they are gone), then its manifest, then
//     its marks.
//  3. orphans' objects, the deleting mark last; orphan snapshots.
//  4. the WAL no kept backup needs.
//
// A run that is interrupted leaves backups marked deleting and orphans
// with a deleting mark, which the next run finishes first.
func Execute(ctx context.Context, o Options, p *Plan) error {
	o.defaults()
	x := &executor{o: o, p: p}
	for _, b := range p.Backups {
		if b.Delete {
			x.total += int64(len(x.payload(b.ID)) + len(b.Snapshots))
		}
	}
	for _, op := range p.Orphans {
		if op.Delete {
			x.total += int64(op.Objects)
		}
	}
	for _, s := range p.Snaps {
		if s.Delete {
			x.total++
		}
	}
	x.total += int64(len(p.walGone))

	var marked []*BackupPlan
	walSafe := true
	for i := range p.Backups {
		b := &p.Backups[i]
		if !b.Delete {
			continue
		}
		err := o.Repo.MarkDeleting(ctx, b.ID)
		switch {
		case errors.Is(err, repo.ErrPinned):
			b.Outcome, b.Pinned = "kept: pinned while this delete ran", true
			x.keepPinned(b.m)
		case err != nil:
			b.Outcome = "kept: " + err.Error()
			x.fail(err)
			walSafe = false
		default:
			marked = append(marked, b)
		}
	}
	for _, b := range marked {
		if err := x.deleteBackup(ctx, b); err != nil {
			x.fail(err)
		}
	}
	x.deleteOrphans(ctx)
	x.deleteOrphanSnapshots(ctx)
	if walSafe {
		x.deleteWAL(ctx)
	} else {
		p.WALKept = "a backup could not be marked deleting: no WAL was deleted"
		for i := range p.fates {
			if ff := &p.fates[i]; ff.delete {
				ff.delete, ff.why = false, p.WALKept
			}
		}
		p.settleWAL()
	}
	p.Done = true
	p.Total = p.Totals()
	if len(p.Errors) > 0 {
		return fmt.Errorf("delete: %d failures: %s", len(p.Errors), strings.Join(p.Errors, "; "))
	}
	return nil
}

type executor struct {
	o           Options
	p           *Plan
	api         Snapshots
	apiErr      error
	apiOpened   bool
	done, total int64
}

func (x *executor) fail(err error) {
	x.p.Errors = append(x.p.Errors, err.Error())
	x.o.Log.Error("delete", "err", err)
}

func (x *executor) progress(n int) {
	x.done += int64(n)
	if x.o.Progress != nil {
		x.o.Progress(x.done, x.total)
	}
}

// snapshots opens the EC2 API once.
func (x *executor) snapshots(ctx context.Context) (Snapshots, error) {
	if !x.apiOpened {
		x.apiOpened = true
		if x.o.Snapshots == nil {
			x.apiErr = errors.New("no EC2 API configured")
		} else {
			x.api, x.apiErr = x.o.Snapshots(ctx)
		}
	}
	return x.api, x.apiErr
}

// payload is what is stored for backup id besides its manifest and marks.
func (x *executor) payload(id string) []repo.BackupObject {
	return slices.DeleteFunc(slices.Clone(x.p.objects[id]), func(o repo.BackupObject) bool { return o.Manifest || o.Mark != "" })
}

// keepPinned keeps the WAL that makes m consistent: m was pinned after the
// plan was made.
func (x *executor) keepPinned(m *manifest.Manifest) {
	claims, err := x.p.cat.Claims(m, false)
	for i := range x.p.fates {
		ff := &x.p.fates[i]
		if _, ok := x.p.cat.Claimed(claims, ff.f); ff.delete && (ok || err != nil) {
			ff.delete, ff.why = false, "makes pinned backup "+m.ID+" consistent"
		}
	}
	x.p.settleWAL()
}

// deleteBackup deletes the payload of b, marked deleting, then its
// manifest and marks; a payload that cannot go yet keeps the backup as
// deleting, and b.Outcome says why.
func (x *executor) deleteBackup(ctx context.Context, b *BackupPlan) error {
	log := x.o.Log.With("backup", b.ID)
	note, keep, err := x.deleteSnapshots(ctx, b)
	if err != nil || keep != "" {
		b.Outcome = "kept as deleting: " + keep
		if err != nil {
			b.Outcome = "kept as deleting: " + err.Error()
		}
		log.Warn("backup kept as deleting", "why", b.Outcome)
		return err
	}
	objs := x.payload(b.ID)
	if err := x.o.Repo.DeleteBackupObjects(ctx, objs); err != nil {
		b.Outcome = "kept as deleting: " + err.Error()
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	x.progress(len(objs))
	if err := x.o.Repo.DeleteManifest(ctx, b.ID); err != nil {
		b.Outcome = "kept as deleting: " + err.Error()
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	b.Outcome = "deleted"
	if note != "" {
		b.Outcome += "; " + note
	}
	log.Info("backup deleted", "provider", b.Provider, "objects", len(objs))
	rest, err := x.o.Repo.BackupObjects(ctx, b.ID)
	if err == nil {
		err = x.o.Repo.DeleteBackupObjects(ctx, rest)
	}
	if err != nil {
		// The deleting mark left behind makes it an orphan the next run
		// removes at once.
		return fmt.Errorf("backup %s: remove its marks: %w", b.ID, err)
	}
	return nil
}

// deleteSnapshots deletes, or accounts for, what b's provider keeps
// outside the repository. keep, when not empty, says why the backup must
// stay (as deleting) for now; note is said of a backup that goes.
func (x *executor) deleteSnapshots(ctx context.Context, b *BackupPlan) (note, keep string, err error) {
	refs := b.Snapshots
	if b.Orchestrator != "" {
		return x.orchestratorGone(ctx, b)
	}
	switch b.Provider {
	case manifest.ProviderEBS:
		if len(refs) == 0 {
			return "", "", nil
		}
		api, err := x.snapshots(ctx)
		if err != nil {
			return "", "", fmt.Errorf("backup %s: its snapshots: %w", b.ID, err)
		}
		var inUse, errs []error
		for _, id := range refs {
			err := api.DeleteSnapshot(ctx, id)
			switch {
			case errors.Is(err, ebs.ErrSnapshotInUse):
				inUse = append(inUse, err)
			case err != nil:
				errs = append(errs, err)
			default:
				x.progress(1)
			}
		}
		if len(errs) > 0 {
			return "", "", fmt.Errorf("backup %s: %s", b.ID, errorsJoin(errs))
		}
		if len(inUse) > 0 {
			return "", errorsJoin(inUse), nil
		}
		return fmt.Sprintf("snapshots %s deleted", strings.Join(refs, " ")), "", nil
	case manifest.ProviderCommand:
		if len(refs) == 0 {
			return "", "", nil
		}
		if x.o.CommandDelete == "" {
			return "its snapshots were not deleted (command.delete is not set): " + strings.Join(refs, " "), "", nil
		}
		env := []string{"WALSNAP_BACKUP_ID=" + b.ID, "WALSNAP_SNAPSHOTS=" + strings.Join(refs, "\n")}
		x.o.Log.Info("running command.delete", "backup", b.ID, "command", x.o.CommandDelete)
		if err := shellcmd.Run(ctx, x.o.CommandDelete, env, x.o.Output, x.o.Output); err != nil {
			return "", "", fmt.Errorf("backup %s: command.delete: %w", b.ID, err)
		}
		x.progress(len(refs))
		return "command.delete removed " + strings.Join(refs, " "), "", nil
	}
	return "", "", nil
}

// orchestratorGone accounts for snapshots an external orchestrator took
// (backup-stop recorded them, as external or as ebs backups): walsnap
// never deletes them; the backup goes once they no longer exist.
func (x *executor) orchestratorGone(ctx context.Context, b *BackupPlan) (note, keep string, err error) {
	refs := b.Snapshots
	if len(refs) == 0 {
		return "", "", nil
	}
	api, err := x.snapshots(ctx)
	if err != nil {
		return "", fmt.Sprintf("cannot tell whether the snapshots %s of %s still exist: %v", strings.Join(refs, " "), b.Orchestrator, err), nil
	}
	left, err := api.ExistingSnapshots(ctx, refs)
	if err != nil {
		return "", "", fmt.Errorf("backup %s: %w", b.ID, err)
	}
	if len(left) > 0 {
		return "", fmt.Sprintf("its snapshots %s, taken by %s, still exist (walsnap never deletes them; the manifest goes once they are gone)", strings.Join(left, " "), b.Orchestrator), nil
	}
	x.progress(len(refs))
	return fmt.Sprintf("its snapshots %s, taken by %s, are gone", strings.Join(refs, " "), b.Orchestrator), "", nil
}

// deleteOrphans removes the orphans planned to go, each one's deleting
// mark (left by an interrupted delete) last.
func (x *executor) deleteOrphans(ctx context.Context) {
	for i := range x.p.Orphans {
		op := &x.p.Orphans[i]
		if !op.Delete {
			continue
		}
		objs := x.p.objects[op.BackupID]
		var marks, rest []repo.BackupObject
		for _, o := range objs {
			if o.Mark == repo.MarkDeleting {
				marks = append(marks, o)
			} else {
				rest = append(rest, o)
			}
		}
		err := x.o.Repo.DeleteBackupObjects(ctx, rest)
		if err == nil {
			err = x.o.Repo.DeleteBackupObjects(ctx, marks)
		}
		if err != nil {
			op.Outcome = "kept: " + err.Error()
			x.fail(fmt.Errorf("orphan %s: %w", op.BackupID, err))
			continue
		}
		x.progress(len(objs))
		op.Outcome = "deleted"
	}
}

// deleteOrphanSnapshots removes the snapshots of backups without a
// manifest planned to go; one in use stays, and is reported.
func (x *executor) deleteOrphanSnapshots(ctx context.Context) {
	for i := range x.p.Snaps {
		s := &x.p.Snaps[i]
		if !s.Delete {
			continue
		}
		api, err := x.snapshots(ctx)
		if err == nil {
			err = api.DeleteSnapshot(ctx, s.SnapshotID)
		}
		switch {
		case errors.Is(err, ebs.ErrSnapshotInUse):
			s.Outcome = "kept: " + err.Error()
		case err != nil:
			s.Outcome = "kept: " + err.Error()
			x.fail(err)
		default:
			s.Outcome = "deleted"
			x.progress(1)
		}
	}
}

// deleteWAL removes the WAL planned to go, in chunks.
func (x *executor) deleteWAL(ctx context.Context) {
	files := x.p.walGone
	for done := 0; done < len(files); {
		n := min(walChunk, len(files)-done)
		if err := x.o.Repo.DeleteWALFiles(ctx, files[done:done+n]); err != nil {
			x.fail(fmt.Errorf("delete WAL: %w", err))
			x.p.walGone = files[:done] // what surely went
			return
		}
		x.progress(n)
		done += n
	}
}
