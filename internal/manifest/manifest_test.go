package manifest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sample(id string, stop time.Time, status string) *Manifest {
	return &Manifest{
		ID: id, Provider: "files", Status: status, StartLSN: 0x2000028, StopLSN: 0x2000100, Timeline: 1,
		StartTime: stop.Add(-time.Minute), StopTime: stop, SystemID: 7301234567890123456, SegmentSize: 16 << 20,
		PGVersion: 150020, BackupLabel: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
		Payload: []byte(`{"parts":[]}`),
	}
}

func TestValidate(t *testing.T) {
	t0 := time.Now()
	for name, mut := range map[string]func(*Manifest){
		"format":       func(m *Manifest) { m.FormatVersion = 9 },
		"id slash":     func(m *Manifest) { m.ID = "a/b" },
		"provider":     func(m *Manifest) { m.Provider = "" },
		"id dots":      func(m *Manifest) { m.ID = ".." },
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
	if id := NewID(time.Date(2026, 11, 24, 15, 30, 12, 0, time.FixedZone("x", 3600))); !strings.HasPrefix(id, "20261124T143012.000Z-") {
		t.Errorf("NewID = %s, not UTC", id)
	}
}

func TestTable(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	var table bytes.Buffer
	if err := WriteTable(&table, []*Manifest{sample("B1", t0, StatusComplete), sample("B2", t0.Add(time.Hour), StatusPending)}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "0/2000028") || !strings.Contains(lines[0], "STOP LSN") {
		t.Fatalf("table:\n%s", table.String())
	}
}

func TestProviders(t *testing.T) {
	for _, name := range Configurable() {
		if p, err := ParseConfigurable(string(name)); err != nil || p != name {
			t.Errorf("ParseConfigurable(%s) = %s, %v", name, p, err)
		}
	}
	if _, err := ParseConfigurable("external"); err == nil || !strings.Contains(err.Error(), "want files, ebs or command") {
		t.Errorf("external is not configurable: %v", err)
	}
	if _, err := ParseConfigurable("tar"); err == nil {
		t.Error("an unknown provider was accepted")
	}
	m := sample("B", time.Now(), StatusComplete)
	m.Provider = ProviderCommand
	if err := m.SetPayload(CommandPayload{Snapshots: []string{"s1"}, Command: "snap"}); err != nil {
		t.Fatal(err)
	}
	p, err := PayloadOf[CommandPayload](m)
	if err != nil || p.Snapshots[0] != "s1" || p.Command != "snap" {
		t.Fatalf("PayloadOf = %+v, %v", p, err)
	}
	if _, err := PayloadOf[FilesPayload](m); err == nil {
		t.Error("a command payload decoded as a files payload")
	}
	if err := m.SetPayload(&FilesPayload{}); err == nil {
		t.Error("SetPayload accepted another provider's payload type")
	}
	m.Provider = "zfs"
	if _, err := m.DecodePayload(); err == nil || !strings.Contains(err.Error(), "unknown backup provider") {
		t.Errorf("DecodePayload of an unknown provider: %v", err)
	}
	// The payload types' JSON is the manifest format.
	m.Provider = ProviderExternal
	if err := m.SetPayload(ExternalPayload{Snapshots: []string{}}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if json.Unmarshal(m.Payload, &raw) != nil || raw["snapshots"] == nil {
		t.Fatalf("external payload JSON: %s", m.Payload)
	}
}
