package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
)

// TestMarks: pins and deleting marks are reported by Manifest and
// Backups, never stored in a manifest, and refuse each other.
func TestMarks(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, m := range []*manifest.Manifest{sampleManifest("B1", t0, manifest.StatusComplete), sampleManifest("B2", t0.Add(time.Hour), manifest.StatusPending)} {
		if err := r.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	state := func() string {
		t.Helper()
		list, _, err := r.Backups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range list {
			one, err := r.Manifest(ctx, m.ID)
			if err != nil || one.Status != m.Status || one.Pinned != m.Pinned {
				t.Fatalf("Manifest(%s) = %+v, %v; Backups says %s pinned=%v", m.ID, one, err, m.Status, m.Pinned)
			}
			out = append(out, m.ID+":"+m.Status+map[bool]string{true: "+pinned"}[m.Pinned])
		}
		return strings.Join(out, " ")
	}
	if err := r.Pin(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Pin(ctx, "B1"); err != nil {
		t.Fatalf("pinning twice: %v", err)
	}
	if err := r.MarkDeleting(ctx, "B2"); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "B1:complete+pinned B2:deleting" {
		t.Fatalf("marks: %s", got)
	}
	// A pinned backup cannot be marked deleting, nor a deleting one
	// pinned; each backs out its own mark.
	if err := r.MarkDeleting(ctx, "B1"); !errors.Is(err, ErrPinned) {
		t.Fatalf("MarkDeleting of a pinned backup: %v", err)
	}
	if err := r.Pin(ctx, "B2"); !errors.Is(err, ErrDeleting) {
		t.Fatalf("Pin of a deleting backup: %v", err)
	}
	if got := state(); got != "B1:complete+pinned B2:deleting" {
		t.Fatalf("after refused marks: %s", got)
	}
	// A pending backup being deleted cannot be finished.
	done := sampleManifest("B2", t0.Add(time.Hour), manifest.StatusComplete)
	if err := r.FinishManifest(ctx, done); err == nil || !strings.Contains(err.Error(), "deleting") {
		t.Fatalf("FinishManifest of a deleting backup: %v", err)
	}
	// Marks are never stored in a manifest.
	for _, m := range []*manifest.Manifest{sampleManifest("B3", t0, manifest.StatusDeleting), sampleManifest("B4", t0, manifest.StatusComplete)} {
		m.Pinned = m.ID == "B4"
		if err := r.PutManifest(ctx, m); err == nil {
			t.Errorf("PutManifest of %s (%s, pinned %v) was accepted", m.ID, m.Status, m.Pinned)
		}
	}
	objs, err := r.BackupObjects(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var marks []string
	for _, o := range objs {
		if o.Mark != "" {
			marks = append(marks, o.BackupID+":"+o.Mark)
		}
	}
	if strings.Join(marks, " ") != "B1:pinned B2:deleting" {
		t.Fatalf("BackupObjects marks: %v", marks)
	}
	if err := r.Unpin(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkDeleting(ctx, "B1"); err != nil {
		t.Fatalf("MarkDeleting after Unpin: %v", err)
	}
	if got := state(); got != "B1:deleting B2:deleting" {
		t.Fatalf("after unpin and delete: %s", got)
	}
}

// TestBatchDeletes: backup objects and WAL files go in batches; a
// manifest, an object of another backup and a history file are refused
// before anything is deleted.
func TestBatchDeletes(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	meta := ObjectMeta{SHA256: strings.Repeat("0", 64), RawSize: 1, Codec: compress.Default}
	for _, name := range []string{"p1", "p2"} {
		if _, err := r.PutPart(ctx, "B1", 0, name, bytes.NewReader([]byte("x")), 1, meta); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutManifest(ctx, sampleManifest("B1", time.Now(), manifest.StatusComplete)); err != nil {
		t.Fatal(err)
	}
	objs, err := r.BackupObjects(ctx, "B1")
	if err != nil || len(objs) != 3 {
		t.Fatalf("BackupObjects = %v, %v", objs, err)
	}
	if err := r.DeleteBackupObjects(ctx, objs); err == nil {
		t.Fatal("DeleteBackupObjects took a manifest")
	}
	forged := objs[0]
	forged.BackupID = "B2"
	if err := r.DeleteBackupObjects(ctx, []BackupObject{forged}); err == nil {
		t.Fatal("DeleteBackupObjects took an object of another backup")
	}
	payload := slices.DeleteFunc(slices.Clone(objs), func(o BackupObject) bool { return o.Manifest })
	if err := r.DeleteBackupObjects(ctx, payload); err != nil {
		t.Fatal(err)
	}
	if left, _ := r.BackupObjects(ctx, "B1"); len(left) != 1 || !left[0].Manifest {
		t.Fatalf("after deleting the payload: %v", left)
	}

	sum := strings.Repeat("0", 64)
	for _, n := range []string{"000000010000000000000002", "000000010000000000000003", "00000002.history"} {
		if _, err := r.PutWAL(ctx, n, compress.Default, []byte("x"), sum, 1); err != nil {
			t.Fatal(err)
		}
	}
	files, err := r.ListWAL(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteWALFiles(ctx, files); err == nil {
		t.Fatal("DeleteWALFiles took a history file")
	}
	if left, _ := r.ListWAL(ctx, 0); len(left) != 3 {
		t.Fatalf("a refused DeleteWALFiles deleted: %v", left)
	}
	segs := slices.DeleteFunc(files, func(f WALFile) bool { return f.Kind == wal.KindHistory })
	if err := r.DeleteWALFiles(ctx, segs); err != nil {
		t.Fatal(err)
	}
	if left, _ := r.ListWAL(ctx, 0); len(left) != 1 || left[0].Kind != wal.KindHistory {
		t.Fatalf("after DeleteWALFiles: %v", left)
	}
	if err := r.DeleteWALFiles(ctx, []WALFile{{Name: "000000010000000000000009"}}); err == nil {
		t.Fatal("DeleteWALFiles of an unlisted file")
	}
}

// TestMarkDrilled: the drilled mark is reported with its time by
// Manifest and Backups, rewritten by every drill that passes, refused for
// a backup that is absent or being deleted, and never stored in a
// manifest.
func TestMarkDrilled(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, id := range []string{"B1", "B2"} {
		if err := r.PutManifest(ctx, sampleManifest(id, t0, manifest.StatusComplete)); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().Add(-time.Second)
	if err := r.MarkDrilled(ctx, "B1", "D1"); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkDrilled(ctx, "B1", "D2"); err != nil {
		t.Fatalf("a second drill: %v", err)
	}
	rc, _, err := r.store.Get(ctx, markKey("B1", MarkDrilled))
	if err != nil {
		t.Fatal(err)
	}
	var rec markRecord
	err = json.NewDecoder(rc).Decode(&rec)
	rc.Close()
	if err != nil || rec.Drill != "D2" {
		t.Fatalf("drilled mark %+v (%v), want the last drill's, D2", rec, err)
	}
	one, err := r.Manifest(ctx, "B1")
	if err != nil || one.Drilled == nil || one.Drilled.Before(before) {
		t.Fatalf("Manifest(B1).Drilled = %v (%v), want the mark's time", one.Drilled, err)
	}
	list, _, err := r.Backups(ctx)
	if err != nil || len(list) != 2 || list[0].Drilled == nil || !list[0].Drilled.Equal(*one.Drilled) || list[1].Drilled != nil {
		t.Fatalf("Backups: %+v (%v), want B1 drilled at %v and B2 not", list, err, one.Drilled)
	}
	if err := r.MarkDeleting(ctx, "B2"); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkDrilled(ctx, "B2", "D3"); !errors.Is(err, ErrDeleting) {
		t.Errorf("MarkDrilled of a deleting backup: %v", err)
	}
	if err := r.MarkDrilled(ctx, "B9", "D3"); !errors.Is(err, ErrNoBackup) {
		t.Errorf("MarkDrilled of a backup without a manifest: %v", err)
	}
	objs, err := r.BackupObjects(ctx, "B1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(objs, func(o BackupObject) bool { return o.Mark == MarkDrilled }) {
		t.Errorf("BackupObjects of B1 has no drilled mark: %+v", objs)
	}
	m := sampleManifest("B5", t0, manifest.StatusComplete)
	m.Drilled = &t0
	if err := r.PutManifest(ctx, m); err == nil {
		t.Error("PutManifest with Drilled set was accepted")
	}
}
