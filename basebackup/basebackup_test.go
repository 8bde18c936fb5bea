package basebackup

import (
	"testing"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
)

func TestFillFromStop(t *testing.T) {
	label := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-24 15:40:19 UTC\nLABEL: x\nSTART TIMELINE: 1\n"
	m := &manifest.Manifest{StartLSN: 0x2000028, SegmentSize: 16 << 20}
	// A stop LSN on a segment boundary belongs to the segment before it.
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000000, BackupLabel: label}); err != nil {
		t.Fatal(err)
	}
	if m.StartWAL != "000000010000000000000002" || m.StopWAL != "000000010000000000000002" || m.Timeline != 1 || m.BackupLabel != label {
		t.Fatalf("fillFromStop: %+v", m)
	}
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000100, BackupLabel: label}); err != nil || m.StopWAL != "000000010000000000000003" {
		t.Fatalf("stop in the next segment: %s %v", m.StopWAL, err)
	}
	m.StartLSN = 0x2000030
	if err := fillFromStop(m, pg.StopResult{LSN: 0x3000100, BackupLabel: label}); err == nil {
		t.Fatal("label start differing from pg_backup_start's was accepted")
	}
}
