package manifest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

func sample(id string, stop time.Time, status string) *Manifest {
	return &Manifest{
		ID: id, Provider: "files", Status: status, StartLSN: 0x2000028, StopLSN: 0x2000100, Timeline: 1,
		StartTime: stop.Add(-time.Minute), StopTime: stop, SystemID: 7301234567890123456, SegmentSize: 16 << 20,
		PGVersion: 150020, BackupLabel: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
		Payload: []byte(`{"parts":[]}`),
	}
}

func TestPutGetListFinish(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, m := range []*Manifest{sample("B2", t0.Add(time.Hour), StatusComplete), sample("B1", t0, StatusComplete), sample("B3", t0.Add(2*time.Hour), StatusPending)} {
		if err := Put(ctx, st, m); err != nil {
			t.Fatal(err)
		}
	}
	// Never overwritten.
	if err := Put(ctx, st, sample("B1", t0, StatusComplete)); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second Put of B1: %v", err)
	}
	// A payload object without a manifest is not a backup.
	st.PutIfAbsent(ctx, "backups/B9/data/base/part-00-0000.tar.zst", bytes.NewReader([]byte("x")), 1, nil)
	list, err := List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "B1,B2,B3" {
		t.Fatalf("List order = %v", ids)
	}
	got, err := Get(ctx, st, "B2")
	if err != nil || got.StopLSN != 0x2000100 || got.SystemID != 7301234567890123456 || got.PGMajor() != 15 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := Get(ctx, st, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	// Only a pending manifest may be finished.
	done := sample("B3", t0.Add(2*time.Hour), StatusComplete)
	if err := Finish(ctx, st, done); err != nil {
		t.Fatal(err)
	}
	if m, _ := Get(ctx, st, "B3"); m.Status != StatusComplete {
		t.Fatalf("B3 after Finish: %s", m.Status)
	}
	if err := Finish(ctx, st, sample("B1", t0, StatusFailed)); err == nil {
		t.Fatal("Finish replaced a complete manifest")
	}
	var table bytes.Buffer
	if err := WriteTable(&table, list); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 4 || !strings.Contains(lines[1], "0/2000028") || !strings.Contains(lines[0], "STOP LSN") {
		t.Fatalf("table:\n%s", table.String())
	}
}

func TestValidate(t *testing.T) {
	t0 := time.Now()
	for name, mut := range map[string]func(*Manifest){
		"format":       func(m *Manifest) { m.FormatVersion = 9 },
		"id slash":     func(m *Manifest) { m.ID = "a/b" },
		"provider":     func(m *Manifest) { m.Provider = "" },
		"status":       func(m *Manifest) { m.Status = "done" },
		"lsn order":    func(m *Manifest) { m.StopLSN = 1 },
		"no label":     func(m *Manifest) { m.BackupLabel = "" },
		"system id":    func(m *Manifest) { m.SystemID = 0 },
		"segment size": func(m *Manifest) { m.SegmentSize = 3 },
	} {
		m := sample("B", t0, StatusComplete)
		m.FormatVersion = FormatVersion
		mut(m)
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if Human(1536) != "1.5 KiB" || Human(10) != "10 B" || Human(3<<30) != "3.0 GiB" {
		t.Errorf("Human: %s %s %s", Human(1536), Human(10), Human(3<<30))
	}
	if NewID(time.Date(2026, 11, 24, 15, 30, 12, 0, time.FixedZone("x", 3600))) != "20261124T143012Z" {
		t.Error("NewID is not UTC")
	}
}
