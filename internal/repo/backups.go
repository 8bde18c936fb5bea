package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/buildinfo"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/storage"
)

const backupsDir = "backups/"

func backupPrefix(id string) string { return backupsDir + id + "/" }
func manifestKey(id string) string  { return backupPrefix(id) + "manifest.json" }

// ErrNoBackup means the repository has no backup (manifest) of that id.
var ErrNoBackup = manifest.ErrNotFound

// CheckBackupID refuses a backup id that cannot name a backup (one that
// could reach outside its place in the repository).
func CheckBackupID(id string) error { return checkBackupID(id) }

func checkBackupID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\ \n") {
		return fmt.Errorf("invalid backup id %q", id)
	}
	return nil
}

// PutManifest writes a backup's manifest, which makes the backup exist.
// Manifests are never overwritten (an existing one gives an error matching
// ErrExists), except that a pending one is replaced by its final state
// with FinishManifest. A manifest that names no walsnap version gets this
// walsnap's.
func (r *Repo) PutManifest(ctx context.Context, m *manifest.Manifest) error {
	m.FormatVersion = manifest.FormatVersion
	if m.WalsnapVersion == "" {
		m.WalsnapVersion = buildinfo.Version()
	}
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Pinned || m.Status == manifest.StatusDeleting || m.Drilled != nil {
		return fmt.Errorf("backup %s: pinned, deleting and drilled are marks (Pin, MarkDeleting, MarkDrilled), never stored in the manifest", m.ID)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := r.store.PutIfAbsent(ctx, manifestKey(m.ID), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return fmt.Errorf("write manifest of backup %s: %w", m.ID, err)
	}
	return nil
}

// FinishManifest replaces a pending manifest with its final state
// (complete or failed). The pending one is removed first, so a crash in
// between leaves no manifest: the backup then does not exist, which is
// the safe side.
func (r *Repo) FinishManifest(ctx context.Context, m *manifest.Manifest) error {
	old, err := r.Manifest(ctx, m.ID)
	if err != nil {
		return err
	}
	if old.Status != manifest.StatusPending {
		return fmt.Errorf("backup %s is %s, not pending", m.ID, old.Status)
	}
	if err := r.store.Delete(ctx, manifestKey(m.ID)); err != nil {
		return fmt.Errorf("replace manifest of backup %s: %w", m.ID, err)
	}
	return r.PutManifest(ctx, m)
}

// readManifest reads the manifest of backup id as stored, without its
// marks (see Manifest).
func (r *Repo) readManifest(ctx context.Context, id string) (*manifest.Manifest, error) {
	if err := checkBackupID(id); err != nil {
		return nil, err
	}
	rc, _, err := r.store.Get(ctx, manifestKey(id))
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("backup %s: %w", id, ErrNoBackup)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest of backup %s: %w", id, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest of backup %s: %w", id, err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("backup %s: its manifest names backup %q", id, m.ID)
	}
	return m, nil
}

// BackupProblem is a backup whose manifest cannot be used.
type BackupProblem struct {
	ID  string
	Err error
}

// Backups lists the backups, oldest first (by stop time, then id), and the
// manifests that cannot be read or parsed. One bad manifest never hides
// the others: the caller reports the problems and goes on. Objects under
// backups/ without a manifest (a backup still running, or abandoned) are
// not backups and are not listed. Each manifest carries its marks
// (Pinned, StatusDeleting, Drilled; see MarkPinned).
func (r *Repo) Backups(ctx context.Context) ([]*manifest.Manifest, []BackupProblem, error) {
	objs, err := r.store.List(ctx, backupsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("list backups: %w", err)
	}
	var out []*manifest.Manifest
	var problems []BackupProblem
	has := keySet(objs)
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, backupsDir)
		id, file, ok := strings.Cut(rest, "/")
		if !ok || file != "manifest.json" {
			continue
		}
		m, err := r.readManifest(ctx, id)
		if err != nil {
			problems = append(problems, BackupProblem{ID: id, Err: err})
			continue
		}
		applyMarks(m, has)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StopTime.Equal(out[j].StopTime) {
			return out[i].StopTime.Before(out[j].StopTime)
		}
		return out[i].ID < out[j].ID
	})
	return out, problems, nil
}

// BackupObject is an object stored under a backup's prefix.
type BackupObject struct {
	BackupID string
	Key      string // the repository's handle, for DeleteBackupObject
	Size     int64
	ModTime  time.Time
	Manifest bool   // the backup's manifest
	Mark     string // MarkPinned, MarkDeleting or MarkDrilled for a mark, else ""
}

// BackupObjects lists everything stored for backups, manifests and
// payload parts alike, by backup id; with id "" for every backup. Retention
// and verify use it to find payloads and orphans (objects of a backup that
// has no manifest).
func (r *Repo) BackupObjects(ctx context.Context, id string) ([]BackupObject, error) {
	prefix := backupsDir
	if id != "" {
		if err := checkBackupID(id); err != nil {
			return nil, err
		}
		prefix = backupPrefix(id)
	}
	objs, err := r.store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []BackupObject
	for _, o := range objs {
		bid, file, ok := strings.Cut(strings.TrimPrefix(o.Key, backupsDir), "/")
		if !ok {
			continue
		}
		out = append(out, BackupObject{BackupID: bid, Key: o.Key, Size: o.Size, ModTime: o.ModTime, Manifest: file == "manifest.json", Mark: markOf(bid, o.Key)})
	}
	return out, nil
}

// DeleteBackupObject removes one object that BackupObjects returned.
func (r *Repo) DeleteBackupObject(ctx context.Context, o BackupObject) error {
	if !strings.HasPrefix(o.Key, backupPrefix(o.BackupID)) || checkBackupID(o.BackupID) != nil {
		return fmt.Errorf("delete %q: not an object of backup %q", o.Key, o.BackupID)
	}
	return r.store.Delete(ctx, o.Key)
}

// DeleteManifest removes a backup's manifest: from then on the backup does
// not exist, and its payload objects are orphans to be removed.
func (r *Repo) DeleteManifest(ctx context.Context, id string) error {
	if err := checkBackupID(id); err != nil {
		return err
	}
	return r.store.Delete(ctx, manifestKey(id))
}

// partDir is the directory of a tablespace's parts: "base" for the data
// directory (tablespace 0), else the tablespace's OID.
func partDir(tablespace uint32) string {
	if tablespace == 0 {
		return "base"
	}
	return strconv.FormatUint(uint64(tablespace), 10)
}

// PutPart stores one payload part of backup id, for the tablespace (0: the
// data directory), under name, with its content's metadata (as an
// ObjectWriter of this handle wrote it), and returns the key recorded in
// the manifest. It never overwrites (ErrExists). A handle that encrypts
// refuses an unencrypted part.
func (r *Repo) PutPart(ctx context.Context, id string, tablespace uint32, name string, body io.ReadSeeker, size int64, meta ObjectMeta) (string, error) {
	if err := checkBackupID(id); err != nil {
		return "", err
	}
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", fmt.Errorf("invalid part name %q", name)
	}
	if r.Encrypts() && !meta.Encrypted {
		return "", fmt.Errorf("part %s: not encrypted, but encryption.recipients is set", name)
	}
	key := backupPrefix(id) + "data/" + partDir(tablespace) + "/" + name
	return key, r.store.PutIfAbsent(ctx, key, body, size, meta.toMap())
}

// checkPartKey refuses a part key outside the data of backup id (a
// damaged or hostile manifest).
func checkPartKey(id, key string) error {
	if err := checkBackupID(id); err != nil {
		return err
	}
	if !strings.HasPrefix(key, backupPrefix(id)+"data/") {
		return fmt.Errorf("part %q is not in backup %s's data", key, id)
	}
	return nil
}

// OpenPart opens a payload part of backup id by the key its manifest
// records, for reading its raw bytes (decrypted and decompressed); see
// ObjectReader.
func (r *Repo) OpenPart(ctx context.Context, id, key string) (*ObjectReader, error) {
	if err := checkPartKey(id, key); err != nil {
		return nil, err
	}
	rc, info, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if info.Key == "" {
		info.Key = key
	}
	return r.openObject(ctx, rc, info, false)
}

// ProbePart proves that this handle can read the part key of backup id:
// for an encrypted part, that the identity opens it (only its header is
// read).
func (r *Repo) ProbePart(ctx context.Context, id, key string) error {
	o, err := r.OpenPart(ctx, id, key)
	if err != nil {
		return err
	}
	return o.Close()
}

// DeletePart removes a part of backup id (the cleanup of a failed backup).
func (r *Repo) DeletePart(ctx context.Context, id, key string) error {
	if err := checkPartKey(id, key); err != nil {
		return err
	}
	return r.store.Delete(ctx, key)
}
