package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
)

func sampleManifest(id string, stop time.Time, status string) *manifest.Manifest {
	return &manifest.Manifest{
		ID: id, Provider: manifest.ProviderFiles, Status: status, StartLSN: 0x2000028, StopLSN: 0x2000100, Timeline: 1,
		StartTime: stop.Add(-time.Minute), StopTime: stop, SystemID: 7301234567890123456, SegmentSize: 16 << 20,
		PGVersion: 150020, BackupLabel: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
		Payload: []byte(`{"parts":[]}`),
	}
}

func TestManifests(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, m := range []*manifest.Manifest{sampleManifest("B2", t0.Add(time.Hour), manifest.StatusComplete), sampleManifest("B1", t0, manifest.StatusComplete), sampleManifest("B3", t0.Add(2*time.Hour), manifest.StatusPending)} {
		if err := r.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Never overwritten.
	if err := r.PutManifest(ctx, sampleManifest("B1", t0, manifest.StatusComplete)); !errors.Is(err, ErrExists) {
		t.Fatalf("second PutManifest of B1: %v", err)
	}
	// A payload object without a manifest is not a backup.
	if _, err := r.PutPart(ctx, "B9", 0, "part-00-0000.tar.zst", bytes.NewReader([]byte("x")), 1, ObjectMeta{SHA256: strings.Repeat("0", 64), RawSize: 1, Codec: compress.Default}); err != nil {
		t.Fatal(err)
	}
	// One corrupt manifest is reported, and hides nothing else (issue 7,
	// defect 9: it made every listing and restore fail).
	r.store.PutIfAbsent(ctx, "backups/B4/manifest.json", bytes.NewReader([]byte("{not json")), 9, nil)
	// A manifest stored under another backup's name is not trusted.
	other := sampleManifest("B6", t0, manifest.StatusComplete)
	other.FormatVersion = manifest.FormatVersion
	data, _ := jsonIndent(other)
	r.store.PutIfAbsent(ctx, "backups/B5/manifest.json", bytes.NewReader(data), int64(len(data)), nil)
	list, problems, err := r.Backups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "B1,B2,B3" {
		t.Fatalf("Backups order = %v", ids)
	}
	if len(problems) != 2 || problems[0].ID != "B4" || problems[1].ID != "B5" || !strings.Contains(problems[1].Err.Error(), `names backup "B6"`) {
		t.Fatalf("problems = %+v", problems)
	}
	got, err := r.Manifest(ctx, "B2")
	if err != nil || got.StopLSN != 0x2000100 || got.SystemID != 7301234567890123456 || got.PGMajor() != 15 {
		t.Fatalf("Manifest = %+v, %v", got, err)
	}
	if _, err := r.Manifest(ctx, "nope"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("Manifest of a missing backup: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b", "../walsnap.json"} {
		if _, err := r.Manifest(ctx, bad); err == nil || errors.Is(err, ErrNoBackup) {
			t.Errorf("Manifest(%q) = %v", bad, err)
		}
	}
	// Only a pending manifest may be finished.
	done := sampleManifest("B3", t0.Add(2*time.Hour), manifest.StatusComplete)
	if err := r.FinishManifest(ctx, done); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Manifest(ctx, "B3"); m.Status != manifest.StatusComplete {
		t.Fatalf("B3 after FinishManifest: %s", m.Status)
	}
	if err := r.FinishManifest(ctx, sampleManifest("B1", t0, manifest.StatusFailed)); err == nil {
		t.Fatal("FinishManifest replaced a complete manifest")
	}
	// Objects by backup, manifests marked; deleting the manifest leaves
	// the payload as an orphan.
	objs, err := r.BackupObjects(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	for _, o := range objs {
		byID[o.BackupID]++
		if o.BackupID == "B9" && o.Manifest {
			t.Fatal("B9's part taken for a manifest")
		}
	}
	if byID["B1"] != 1 || byID["B9"] != 1 || len(byID) != 6 {
		t.Fatalf("BackupObjects by id: %v", byID)
	}
	if err := r.DeleteManifest(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Manifest(ctx, "B1"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("B1 after DeleteManifest: %v", err)
	}
	b9, _ := r.BackupObjects(ctx, "B9")
	if len(b9) != 1 || r.DeleteBackupObject(ctx, b9[0]) != nil {
		t.Fatalf("B9 objects: %+v", b9)
	}
	if err := r.DeleteBackupObject(ctx, BackupObject{BackupID: "B2", Key: "walsnap.json"}); err == nil {
		t.Fatal("DeleteBackupObject removed an object outside the backup")
	}
}

func TestParts(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	raw := bytes.Repeat([]byte("tar bytes "), 10)
	body, err := compress.Default.Encode(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	meta := ObjectMeta{SHA256: hex.EncodeToString(sum[:]), RawSize: int64(len(raw)), Codec: compress.Default}
	key, err := r.PutPart(ctx, "B1", 16400, "part-00-0000.tar.zst", bytes.NewReader(body), int64(len(body)), meta)
	if err != nil {
		t.Fatal(err)
	}
	if key != "backups/B1/data/16400/part-00-0000.tar.zst" {
		t.Fatalf("part key %s", key)
	}
	if _, err := r.PutPart(ctx, "B1", 16400, "part-00-0000.tar.zst", bytes.NewReader(body), int64(len(body)), meta); !errors.Is(err, ErrExists) {
		t.Fatalf("part overwritten: %v", err)
	}
	o, err := r.OpenPart(ctx, "B1", key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	verr := o.Verify()
	o.Close()
	if !bytes.Equal(got, raw) || verr != nil || o.Size != int64(len(body)) || o.ObjectMeta != meta {
		t.Fatalf("OpenPart = %q %+v, verify %v", got, o.ObjectMeta, verr)
	}
	// A manifest cannot make a restore read outside the backup's data.
	for _, k := range []string{"walsnap.json", "backups/B2/data/base/x", "backups/B1/manifest.json", "backups/B1/data/../../walsnap.json"} {
		if _, err := r.OpenPart(ctx, "B1", k); err == nil {
			t.Errorf("OpenPart(B1, %s) accepted", k)
		}
	}
	for _, name := range []string{"", "a/b", ".."} {
		if _, err := r.PutPart(ctx, "B1", 0, name, bytes.NewReader(body), 1, meta); err == nil {
			t.Errorf("PutPart name %q accepted", name)
		}
	}
	if err := r.DeletePart(ctx, "B1", key); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OpenPart(ctx, "B1", key); !errors.Is(err, ErrNotExist) {
		t.Fatalf("deleted part: %v", err)
	}
}

func TestListWAL(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	sum := strings.Repeat("0", 64)
	for _, n := range []string{"000000010000000000000003", "000000010000000000000002", "00000002.history", "000000020000000000000003", "000000010000000000000002.00000028.backup", "000000010000000000000004.partial"} {
		if _, err := r.PutWAL(ctx, n, compress.Default, []byte("x"), sum, 1); err != nil {
			t.Fatal(err)
		}
	}
	r.store.PutIfAbsent(ctx, "wal/00000001/junk", bytes.NewReader([]byte("x")), 1, nil)
	all, err := r.ListWAL(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range all {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "000000010000000000000002 000000010000000000000002.00000028.backup 000000010000000000000003 000000010000000000000004.partial 00000002.history 000000020000000000000003" {
		t.Fatalf("ListWAL(0) = %v", names)
	}
	tl2, err := r.ListWAL(ctx, 2)
	if err != nil || len(tl2) != 2 || tl2[0].Kind != wal.KindHistory || tl2[1].TLI != 2 || tl2[1].Size == 0 {
		t.Fatalf("ListWAL(2) = %+v, %v", tl2, err)
	}
	if ok, err := r.HasWAL(ctx, "000000010000000000000003"); !ok || err != nil {
		t.Fatalf("HasWAL of an archived segment: %v %v", ok, err)
	}
	// A .partial or .backup of the segment is not the segment.
	if ok, _ := r.HasWAL(ctx, "000000010000000000000004"); ok {
		t.Fatal("HasWAL took a .partial for the segment")
	}
	if err := r.DeleteWAL(ctx, tl2[1]); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasWAL(ctx, "000000020000000000000003"); ok {
		t.Fatal("DeleteWAL left the segment")
	}
	if err := r.DeleteWAL(ctx, WALFile{Name: "x"}); err == nil {
		t.Fatal("DeleteWAL of an unlisted file")
	}
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	never := func(Lease) bool { return false }
	always := func(Lease) bool { return true }
	now := time.Now().UTC()
	a, err := r.AcquireLease(ctx, Lease{BackupID: "A", Host: "h1", PID: 1, Started: now, Expires: now.Add(time.Hour)}, never)
	if err != nil {
		t.Fatal(err)
	}
	var held *LeaseHeldError
	if _, err := r.AcquireLease(ctx, Lease{BackupID: "B"}, never); !errors.As(err, &held) || held.Held.BackupID != "A" || !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second acquire: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := r.AcquireLease(ctx, Lease{BackupID: "B"}, never)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// A stale lease is taken over; the old holder's release then changes
	// nothing (before, it deleted whatever lease was there).
	if _, err := r.AcquireLease(ctx, Lease{BackupID: "C"}, always); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AcquireLease(ctx, Lease{BackupID: "D"}, never); !errors.As(err, &held) || held.Held.BackupID != "C" {
		t.Fatalf("the taken-over holder's release freed the new holder's lease: %v", err)
	}
	// Many processes see the same stale lease at once: exactly one wins
	// (the winner's own lease is live to the others).
	staleC := func(l Lease) bool { return l.BackupID == "C" }
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for range 8 {
		wg.Go(func() {
			if _, err := r.AcquireLease(ctx, Lease{BackupID: "E"}, staleC); err == nil {
				mu.Lock()
				winners++
				mu.Unlock()
			} else if !errors.Is(err, ErrLeaseHeld) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d processes took over one stale lease", winners)
	}
	// Only the generation in force is kept.
	objs, _ := r.store.List(ctx, leasePrefix)
	if len(objs) > 2 {
		t.Fatalf("%d lease generations kept", len(objs))
	}
}
