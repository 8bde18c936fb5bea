package pg

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/wal"
)

func lsn(t testing.TB, s string) wal.LSN {
	t.Helper()
	l, err := wal.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestParseBackupLabelSamples parses the real labels in testdata.
func TestParseBackupLabelSamples(t *testing.T) {
	primary := func(major int, start, ckpt string) BackupLabel {
		return BackupLabel{
			StartLSN: lsn(t, "0/2000028"), StartWAL: "000000010000000000000002", CheckpointLSN: lsn(t, ckpt),
			Method: "streamed", From: "primary", StartTime: start + " UTC",
			Label: fmt.Sprintf("walsnap test TestMajors/pg%d/backup", major), StartTimeline: 1,
		}
	}
	want := map[string]BackupLabel{
		"pg13.primary": primary(13, "2026-11-24 15:53:49", "0/2000060"), // says "BACKUP FROM: master"
		"pg14.primary": primary(14, "2026-11-24 15:54:04", "0/2000060"),
		"pg15.primary": primary(15, "2026-11-24 15:54:01", "0/2000060"),
		"pg16.primary": primary(16, "2026-11-24 15:53:49", "0/2000060"),
		"pg17.primary": primary(17, "2026-11-24 15:53:56", "0/2000080"),
		"pg18.primary": primary(18, "2026-11-24 15:53:53", "0/2000080"),
		"pg15.standby": {
			StartLSN: lsn(t, "0/C0B2B48"), StartWAL: "000000010000000000000003", CheckpointLSN: lsn(t, "0/C0B2B80"),
			Method: "streamed", From: "standby", StartTime: "2026-11-24 15:54:13 UTC",
			Label: "walsnap standby", StartTimeline: 1,
		},
		"pg17.incremental": {
			StartLSN: lsn(t, "0/6000028"), StartWAL: "000000010000000000000006", CheckpointLSN: lsn(t, "0/6000080"),
			Method: "streamed", From: "primary", StartTime: "2026-11-24 16:10:02 UTC",
			Label: "pg_basebackup base backup", StartTimeline: 1,
		},
	}
	// The backup history files hold the same fields (plus STOP lines).
	for major := 13; major <= 18; major++ {
		want[fmt.Sprintf("pg%d.backup", major)] = want[fmt.Sprintf("pg%d.primary", major)]
	}
	files, err := filepath.Glob("testdata/backup_label/pg*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d samples in testdata, want %d", len(files), len(want))
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		got, err := ParseBackupLabel(string(text))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no expectation", name)
			continue
		}
		if got != w {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, w)
		}
	}
}

const goodLabel = `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-24 15:40:19 UTC
LABEL: walsnap 20261124T154019Z
START TIMELINE: 1
`

func TestParseBackupLabel(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodLabel, old, new, 1) }
	for _, tc := range []struct {
		name, text string
		check      func(BackupLabel) bool // nil: just no error
		err        string                 // expected error substring; "" = success
	}{
		{name: "good", text: goodLabel, check: func(b BackupLabel) bool {
			return b.StartLSN == 0x2000028 && b.CheckpointLSN == 0x2000060 && b.StartTimeline == 1 &&
				b.Label == "walsnap 20261124T154019Z" && b.StartTime == "2026-11-24 15:40:19 UTC"
		}},
		{name: "no trailing newline", text: strings.TrimSuffix(goodLabel, "\n")},
		{name: "PG 18 zero-padded LSNs", text: replace("0/2000060", "0/02000060"), check: func(b BackupLabel) bool { return b.CheckpointLSN == 0x2000060 }},
		{name: "lower-case LSN", text: replace("0/2000028", "0/200002a"), check: func(b BackupLabel) bool { return b.StartLSN == 0x200002a }},
		{name: "label with colons", text: replace("LABEL: walsnap 20261124T154019Z", "LABEL: a: b: c"), check: func(b BackupLabel) bool { return b.Label == "a: b: c" }},
		{name: "empty label", text: replace("LABEL: walsnap 20261124T154019Z", "LABEL: "), check: func(b BackupLabel) bool { return b.Label == "" }},
		{name: "master is primary", text: replace("FROM: primary", "FROM: master"), check: func(b BackupLabel) bool { return b.From == "primary" }},
		{name: "unknown lines", text: goodLabel + "INCREMENTAL FROM LSN: 0/1000028\nINCREMENTAL FROM TLI: 1\nSOMETHING NEW\n\n"},
		{name: "timeline from file name", text: replace("START TIMELINE: 1\n", ""), check: func(b BackupLabel) bool { return b.StartTimeline == 1 }},
		{name: "timeline 3", text: strings.NewReplacer("file 00000001", "file 00000003", "TIMELINE: 1", "TIMELINE: 3").Replace(goodLabel),
			check: func(b BackupLabel) bool { return b.StartTimeline == 3 && b.StartWAL == "000000030000000000000002" }},
		{name: "64 MiB segments", text: replace("0/2000028 (file 000000010000000000000002)", "1/8C000028 (file 000000010000000100000002)"),
			check: func(b BackupLabel) bool { return b.StartLSN == 0x18C000028 }},
		{name: "1 GiB segments", text: replace("0/2000028 (file 000000010000000000000002)", "5/C0000028 (file 000000010000000500000003)")},
		{name: "only the required lines", text: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n",
			check: func(b BackupLabel) bool { return b.Method == "" && b.From == "" && b.StartTimeline == 1 }},

		{name: "empty", text: "", err: "no START WAL LOCATION"},
		{name: "no checkpoint", text: replace("CHECKPOINT LOCATION: 0/2000060\n", ""), err: "no CHECKPOINT LOCATION"},
		{name: "bad checkpoint", text: replace("0/2000060", "0/xyz"), err: "CHECKPOINT LOCATION"},
		{name: "no file", text: replace(" (file 000000010000000000000002)", ""), err: "START WAL LOCATION"},
		{name: "bad LSN", text: replace("0/2000028", "2000028"), err: "START WAL LOCATION"},
		{name: "lower-case file", text: replace("file 000000010000000000000002", "file 00000001000000000000000a"), err: "not a WAL segment"},
		{name: "timeline 0 file", text: replace("file 00000001", "file 00000000"), err: "not a WAL segment"},
		{name: "file not holding LSN", text: replace("000000010000000000000002)", "000000010000000000000005)"), err: "does not hold"},
		{name: "timeline mismatch", text: replace("TIMELINE: 1", "TIMELINE: 2"), err: "does not match"},
		{name: "timeline 0", text: replace("TIMELINE: 1", "TIMELINE: 0"), err: "timeline 0"},
		{name: "timeline junk", text: replace("TIMELINE: 1", "TIMELINE: 1x"), err: "START TIMELINE"},
		{name: "timeline overflow", text: replace("TIMELINE: 1", "TIMELINE: 4294967297"), err: "START TIMELINE"},
		{name: "bad from", text: replace("FROM: primary", "FROM: elsewhere"), err: "BACKUP FROM"},
		{name: "duplicate", text: goodLabel + "CHECKPOINT LOCATION: 0/3000060\n", err: "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBackupLabel(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil && !tc.check(b) {
				t.Errorf("got %+v", b)
			}
		})
	}
}

// formatLabel renders b the way PostgreSQL writes backup_label.
func formatLabel(b BackupLabel) string {
	var s strings.Builder
	fmt.Fprintf(&s, "START WAL LOCATION: %s (file %s)\nCHECKPOINT LOCATION: %s\n", b.StartLSN, b.StartWAL, b.CheckpointLSN)
	fmt.Fprintf(&s, "BACKUP METHOD: %s\n", b.Method)
	if b.From != "" {
		fmt.Fprintf(&s, "BACKUP FROM: %s\n", b.From)
	}
	fmt.Fprintf(&s, "START TIME: %s\nLABEL: %s\nSTART TIMELINE: %d\n", b.StartTime, b.Label, b.StartTimeline)
	return s.String()
}

func FuzzParseBackupLabel(f *testing.F) {
	files, _ := filepath.Glob("testdata/backup_label/pg*")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(goodLabel)
	f.Add("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n")
	f.Add("START WAL LOCATION: 5/C0000028 (file 000000010000000500000003)\nCHECKPOINT LOCATION: 0/1\nSTART TIMELINE: 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		b, err := ParseBackupLabel(text)
		if err != nil {
			return
		}
		// What parses is consistent ...
		if b.StartTimeline == 0 || b.StartWAL[:8] != fmt.Sprintf("%08X", b.StartTimeline) {
			t.Fatalf("timeline %d vs file %s", b.StartTimeline, b.StartWAL)
		}
		held := false
		for size := uint64(1 << 20); size <= 1<<30; size <<= 1 {
			held = held || wal.SegmentForLSN(b.StartTimeline, b.StartLSN, size).Name(size) == b.StartWAL
		}
		if !held {
			t.Fatalf("%s does not hold %s", b.StartWAL, b.StartLSN)
		}
		if b.From != "" && b.From != "primary" && b.From != "standby" {
			t.Fatalf("From = %q", b.From)
		}
		for _, v := range []string{b.Method, b.StartTime, b.Label} {
			if strings.Contains(v, "\n") {
				t.Fatalf("value %q spans lines", v)
			}
		}
		// ... and survives being written out and read back.
		again, err := ParseBackupLabel(formatLabel(b))
		if err != nil || again != b {
			t.Fatalf("round trip of %+v: %+v, %v\n%s", b, again, err, strconv.Quote(formatLabel(b)))
		}
	})
}
