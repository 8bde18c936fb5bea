package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/wal"
)

// Manifests are never overwritten, so what changes about a backup after
// its manifest is written is kept in small mark objects beside it,
// backups/<id>/marks/<mark>:
//
//   - pinned: retention never deletes the backup (backup --pin,
//     backup-pin); removed by backup-pin --unpin.
//   - deleting: retention has begun to delete the backup. It is written
//     before anything of the backup is deleted and removed after the
//     manifest, so a backup whose payload may be going is always marked,
//     and a delete that was interrupted is found and finished.
//   - drilled: a walsnap drill restored the backup, recovered it and
//     passed its checks; rewritten by every drill that passes, so its
//     time is the last one's.
//
// Manifest and Backups report the marks in the manifest they return
// (Pinned, Status StatusDeleting, Drilled), so that restore, verify,
// retention and backup-list see them without asking.
const (
	MarkPinned   = "pinned"
	MarkDeleting = "deleting"
	MarkDrilled  = "drilled"
)

const marksDir = "marks/"

func markKey(id, mark string) string { return backupPrefix(id) + marksDir + mark }

// Errors of the marks' protocol.
var (
	ErrPinned   = errors.New("backup is pinned")
	ErrDeleting = errors.New("backup is being deleted")
)

// markRecord is the content of a mark: when and where it was set (and,
// for drilled, by which drill).
type markRecord struct {
	At    time.Time `json:"at"`
	Host  string    `json:"host"`
	Drill string    `json:"drill,omitempty"`
}

// putMark writes mark of backup id unless it is there already.
func (r *Repo) putMark(ctx context.Context, id, mark string) error {
	err := r.writeMark(ctx, id, mark, markRecord{})
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("mark backup %s %s: %w", id, mark, err)
	}
	return nil
}

// writeMark writes mark of backup id with rec (At and Host filled in);
// an error matching storage.ErrExists when it is there already.
func (r *Repo) writeMark(ctx context.Context, id, mark string, rec markRecord) error {
	if err := checkBackupID(id); err != nil {
		return err
	}
	rec.Host, _ = os.Hostname()
	rec.At = time.Now().UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return r.store.PutIfAbsent(ctx, markKey(id, mark), bytes.NewReader(data), int64(len(data)), nil)
}

// MarkDrilled records that drill (its id) restored backup id and passed:
// the drilled mark is written anew, so that its time is this drill's. A
// backup without a manifest, or being deleted, is not marked.
func (r *Repo) MarkDrilled(ctx context.Context, id, drill string) error {
	m, err := r.Manifest(ctx, id)
	if err != nil {
		return err
	}
	if m.Status == manifest.StatusDeleting {
		return fmt.Errorf("backup %s: %w", id, ErrDeleting)
	}
	for range 3 {
		err = r.writeMark(ctx, id, MarkDrilled, markRecord{Drill: drill})
		if !errors.Is(err, storage.ErrExists) {
			break
		}
		// An earlier drill's mark: replace it. (Two drills that pass at
		// once each leave a mark of a passed drill.)
		if err = r.deleteMark(ctx, id, MarkDrilled); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("mark backup %s %s: %w", id, MarkDrilled, err)
	}
	return nil
}

func (r *Repo) hasMark(ctx context.Context, id, mark string) (bool, error) {
	_, err := r.store.Head(ctx, markKey(id, mark))
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("backup %s: read mark %s: %w", id, mark, err)
	}
	return true, nil
}

func (r *Repo) deleteMark(ctx context.Context, id, mark string) error {
	if err := checkBackupID(id); err != nil {
		return err
	}
	if err := r.store.Delete(ctx, markKey(id, mark)); err != nil {
		return fmt.Errorf("backup %s: remove mark %s: %w", id, mark, err)
	}
	return nil
}

// Pin marks backup id pinned. A backup being deleted cannot be pinned
// (ErrDeleting). Pin and MarkDeleting each write their mark and then look
// for the other's, so of a pin and a delete that race, at least one sees
// the other and backs out: a pinned backup is never deleted.
//
// Pin does not require the manifest: backup --pin pins a backup before
// its manifest is written.
func (r *Repo) Pin(ctx context.Context, id string) error {
	if err := r.putMark(ctx, id, MarkPinned); err != nil {
		return err
	}
	return r.backOutIf(ctx, id, MarkPinned, MarkDeleting, ErrDeleting)
}

// Unpin removes the pin of backup id; unpinning a backup that is not
// pinned changes nothing.
func (r *Repo) Unpin(ctx context.Context, id string) error {
	return r.deleteMark(ctx, id, MarkPinned)
}

// MarkDeleting marks backup id as being deleted: from then on restore,
// verify and retention treat it as gone. A pinned backup is refused
// (ErrPinned; see Pin). Marking a backup that is marked already changes
// nothing.
func (r *Repo) MarkDeleting(ctx context.Context, id string) error {
	if err := r.putMark(ctx, id, MarkDeleting); err != nil {
		return err
	}
	return r.backOutIf(ctx, id, MarkDeleting, MarkPinned, ErrPinned)
}

// backOutIf removes mark, just written, when backup id has the other mark
// (then the error is refused) or when that cannot be told.
func (r *Repo) backOutIf(ctx context.Context, id, mark, other string, refused error) error {
	found, err := r.hasMark(ctx, id, other)
	if err == nil && !found {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("backup %s: %w", id, refused)
	}
	if derr := r.deleteMark(ctx, id, mark); derr != nil {
		return errors.Join(err, derr)
	}
	return err
}

// Manifest reads the manifest of backup id, with its marks (Pinned,
// StatusDeleting); an absent one gives an error matching ErrNoBackup.
func (r *Repo) Manifest(ctx context.Context, id string) (*manifest.Manifest, error) {
	m, err := r.readManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	objs, err := r.store.List(ctx, backupPrefix(id)+marksDir)
	if err != nil {
		return nil, fmt.Errorf("backup %s: read marks: %w", id, err)
	}
	applyMarks(m, keySet(objs))
	return m, nil
}

// applyMarks reports in m the marks that lookup (the listed object of a
// key) finds.
func applyMarks(m *manifest.Manifest, lookup func(key string) (storage.ObjectInfo, bool)) {
	if _, ok := lookup(markKey(m.ID, MarkPinned)); ok {
		m.Pinned = true
	}
	if _, ok := lookup(markKey(m.ID, MarkDeleting)); ok {
		m.Status = manifest.StatusDeleting
	}
	if o, ok := lookup(markKey(m.ID, MarkDrilled)); ok {
		t := o.ModTime.UTC()
		m.Drilled = &t
	}
}

// keySet is a lookup of objs by key.
func keySet(objs []storage.ObjectInfo) func(key string) (storage.ObjectInfo, bool) {
	keys := make(map[string]storage.ObjectInfo, len(objs))
	for _, o := range objs {
		keys[o.Key] = o
	}
	return func(key string) (storage.ObjectInfo, bool) {
		o, ok := keys[key]
		return o, ok
	}
}

// markOf returns the mark that key (an object of backup id) is, or "".
func markOf(id, key string) string {
	mark, ok := strings.CutPrefix(key, backupPrefix(id)+marksDir)
	if !ok || (mark != MarkPinned && mark != MarkDeleting && mark != MarkDrilled) {
		return ""
	}
	return mark
}

// DeleteBackupObjects removes objects that BackupObjects returned, in
// batches: the payload of a backup being deleted (after MarkDeleting), or
// an orphan's. A manifest is refused: it goes with DeleteManifest, after
// the payload.
func (r *Repo) DeleteBackupObjects(ctx context.Context, objs []BackupObject) error {
	keys := make([]string, len(objs))
	for i, o := range objs {
		if !strings.HasPrefix(o.Key, backupPrefix(o.BackupID)) || checkBackupID(o.BackupID) != nil {
			return fmt.Errorf("delete %q: not an object of backup %q", o.Key, o.BackupID)
		}
		if o.Key == manifestKey(o.BackupID) {
			return fmt.Errorf("delete %q: a manifest goes with DeleteManifest, last", o.Key)
		}
		keys[i] = o.Key
	}
	return r.store.DeleteMany(ctx, keys)
}

// DeleteWALFiles removes WAL files that ListWAL returned, in batches.
// Timeline history files are never deleted (DESIGN.md rule 8): one among
// files fails the call before anything is deleted.
func (r *Repo) DeleteWALFiles(ctx context.Context, files []WALFile) error {
	keys := make([]string, len(files))
	for i, f := range files {
		switch {
		case f.key == "":
			return fmt.Errorf("delete WAL %s: not a listed file", f.Name)
		case f.Kind == wal.KindHistory:
			return fmt.Errorf("delete WAL %s: timeline history files are never deleted", f.Name)
		}
		keys[i] = f.key
	}
	return r.store.DeleteMany(ctx, keys)
}
