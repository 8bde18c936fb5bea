package wal

import (
	"strconv"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		want FileKind
	}{
		{"000000010000000000000003", KindSegment},
		{"0000000A00000016000000B3", KindSegment},
		{"FFFFFFFFFFFFFFFFFFFFFFFF", KindSegment}, // shape only; ParseFileName checks the range
		{"00000002.history", KindHistory},
		{"0000000A.history", KindHistory},
		{"00000001.history", KindHistory},
		{"000000010000000000000002.00000028.backup", KindBackup},
		{"000000010000000000000005.partial", KindPartial},
	}
	for _, tt := range tests {
		got, err := Classify(tt.name)
		if err != nil {
			t.Errorf("Classify(%q): %v", tt.name, err)
		} else if got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	for _, name := range []string{
		"",
		"RECOVERYXLOG",
		"RECOVERYHISTORY",
		"pg_wal/000000010000000000000003",
		"/var/lib/postgresql/000000010000000000000003",
		"../000000010000000000000003",
		"00000001000000000000000a",
		"0000000100000000000000O3",
		"00000001000000000000003",
		"0000000100000000000000030",
		"000000010000000000000003.zst",
		"000000010000000000000003.ready",
		"000000010000000000000003 ",
		"000000000000000000000003",
		"00000000.history",
		"00000002.HISTORY",
		"0000000a.history",
		"0000002.history",
		"000000002.history",
		"00000002.history.tmp",
		"00000002.history/",
		".history",
		"000000010000000000000002.00000028.BACKUP",
		"000000010000000000000002.0000028.backup",
		"000000010000000000000002.000000028.backup",
		"000000010000000000000002.0000002g.backup",
		"000000010000000000000002_00000028.backup",
		"000000010000000000000002.backup",
		"000000010000000000000002.00000028.backup.gz",
		"000000000000000000000002.00000028.backup",
		"000000010000000000000005.partial.gz",
		"000000010000000000000005.PARTIAL",
		"00000001000000000000005.partial",
		"000000000000000000000005.partial",
		"000000010000000000000005.00000028.partial",
	} {
		kind, err := Classify(name)
		if err == nil {
			t.Errorf("Classify(%q) = %v, want error", name, kind)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("Classify(%q) error %q does not name the file", name, err)
		}
	}
}

func TestFileKindString(t *testing.T) {
	for k, want := range map[FileKind]string{
		KindSegment: "segment", KindHistory: "history", KindBackup: "backup", KindPartial: "partial",
		0: "FileKind(0)", 9: "FileKind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("FileKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestParseFileName(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want FileName
	}{
		{"000000010000000000000003", 16 * mib,
			FileName{Kind: KindSegment, Segment: Segment{1, 3}, TLI: 1}},
		{"000000020000000100000000", 16 * mib,
			FileName{Kind: KindSegment, Segment: Segment{2, 256}, TLI: 2}},
		{"000000020000000100000000", gib,
			FileName{Kind: KindSegment, Segment: Segment{2, 4}, TLI: 2}},
		{"0000000A.history", 16 * mib,
			FileName{Kind: KindHistory, TLI: 10}},
		{"000000010000000000000002.00000028.backup", 16 * mib,
			FileName{Kind: KindBackup, Segment: Segment{1, 2}, TLI: 1, Offset: 0x28}},
		{"000000010000000000000002.03FFFFFF.backup", 64 * mib,
			FileName{Kind: KindBackup, Segment: Segment{1, 2}, TLI: 1, Offset: 0x3FFFFFF}},
		{"000000030000000000000005.partial", 16 * mib,
			FileName{Kind: KindPartial, Segment: Segment{3, 5}, TLI: 3}},
	}
	for _, tt := range tests {
		tt.want.Name = tt.name
		got, err := ParseFileName(tt.name, tt.size)
		if err != nil {
			t.Errorf("ParseFileName(%q, %s): %v", tt.name, formatSize(tt.size), err)
		} else if got != tt.want {
			t.Errorf("ParseFileName(%q, %s) = %+v, want %+v", tt.name, formatSize(tt.size), got, tt.want)
		}
	}
}

func TestParseFileNameErrors(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want string
	}{
		{"RECOVERYXLOG", 16 * mib, "not a WAL file name"},
		{"000000010000000000000100", 16 * mib, "out of range for 16 MiB segments"},
		{"000000010000000000000004", gib, "out of range for 1 GiB segments"},
		{"000000010000000000000100.partial", 16 * mib, "out of range"},
		{"000000010000000000000100.00000028.backup", 16 * mib, "out of range"},
		{"000000010000000000000002.01000000.backup", 16 * mib, "backup offset 01000000 is beyond the end of a 16 MiB segment"},
		{"000000010000000000000003", 5 * mib, "invalid WAL segment size"},
	}
	for _, tt := range tests {
		got, err := ParseFileName(tt.name, tt.size)
		if err == nil {
			t.Errorf("ParseFileName(%q, %d) = %+v, want error", tt.name, tt.size, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), strconv.Quote(tt.name)) {
			t.Errorf("ParseFileName(%q, %d) error %q, want it to name the file and contain %q", tt.name, tt.size, err, tt.want)
		}
	}
	// History files do not depend on the segment size.
	if _, err := ParseFileName("00000002.history", 5*mib); err != nil {
		t.Errorf("history file with an odd segment size: %v", err)
	}
}

func TestHistoryFileName(t *testing.T) {
	for tli, want := range map[uint32]string{1: "00000001.history", 2: "00000002.history", 0x1F: "0000001F.history", 0xFFFFFFFF: "FFFFFFFF.history"} {
		got := HistoryFileName(tli)
		if got != want {
			t.Errorf("HistoryFileName(%d) = %q, want %q", tli, got, want)
		}
		f, err := ParseFileName(got, 16*mib)
		if err != nil || f.Kind != KindHistory || f.TLI != tli {
			t.Errorf("ParseFileName(%q) = %+v, %v", got, f, err)
		}
	}
}
