package wal

import (
	"strings"
	"testing"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func TestValidSegmentSize(t *testing.T) {
	tests := []struct {
		size uint64
		want bool
	}{
		{0, false},
		{1, false},
		{512 << 10, false},
		{mib - 1, false},
		{mib, true},
		{mib + 1, false},
		{2 * mib, true},
		{3 * mib, false},
		{16 * mib, true},
		{DefaultSegmentSize, true},
		{64 * mib, true},
		{512 * mib, true},
		{gib, true},
		{2 * gib, false},
		{1 << 63, false},
		{^uint64(0), false},
	}
	for _, tt := range tests {
		if got := ValidSegmentSize(tt.size); got != tt.want {
			t.Errorf("ValidSegmentSize(%d) = %v, want %v", tt.size, got, tt.want)
		}
	}
}

func TestSegmentsPerXLogID(t *testing.T) {
	tests := []struct{ size, want uint64 }{
		{mib, 4096}, {16 * mib, 256}, {64 * mib, 64}, {gib, 4},
	}
	for _, tt := range tests {
		if got := SegmentsPerXLogID(tt.size); got != tt.want {
			t.Errorf("SegmentsPerXLogID(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}

// TestSegmentNames checks Name and ParseSegmentName in both directions,
// including where the log id (middle 8 digits) rolls over for each size.
func TestSegmentNames(t *testing.T) {
	tests := []struct {
		size uint64
		seg  Segment
		name string
	}{
		{16 * mib, Segment{1, 0}, "000000010000000000000000"},
		{16 * mib, Segment{1, 3}, "000000010000000000000003"},
		{16 * mib, Segment{1, 0xFF}, "0000000100000000000000FF"},
		{16 * mib, Segment{1, 0x100}, "000000010000000100000000"},
		{16 * mib, Segment{0x2A, 0x16B3}, "0000002A00000016000000B3"},
		{16 * mib, Segment{0xFFFFFFFF, 0xFFFFFFFF*256 + 0xFF}, "FFFFFFFFFFFFFFFF000000FF"},
		{mib, Segment{1, 0xFFF}, "000000010000000000000FFF"},
		{mib, Segment{1, 0x1000}, "000000010000000100000000"},
		{mib, Segment{3, 0x1001}, "000000030000000100000001"},
		{64 * mib, Segment{1, 2}, "000000010000000000000002"},
		{64 * mib, Segment{1, 0x3F}, "00000001000000000000003F"},
		{64 * mib, Segment{1, 0x40}, "000000010000000100000000"},
		{gib, Segment{1, 3}, "000000010000000000000003"},
		{gib, Segment{1, 4}, "000000010000000100000000"},
		{gib, Segment{1, 7}, "000000010000000100000003"},
	}
	for _, tt := range tests {
		if got := tt.seg.Name(tt.size); got != tt.name {
			t.Errorf("%+v.Name(%s) = %q, want %q", tt.seg, formatSize(tt.size), got, tt.name)
		}
		got, err := ParseSegmentName(tt.name, tt.size)
		if err != nil {
			t.Errorf("ParseSegmentName(%q, %s): %v", tt.name, formatSize(tt.size), err)
		} else if got != tt.seg {
			t.Errorf("ParseSegmentName(%q, %s) = %+v, want %+v", tt.name, formatSize(tt.size), got, tt.seg)
		}
	}
}

func TestParseSegmentNameErrors(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want string // substring of the error
	}{
		{"", 16 * mib, "got 0 characters"},
		{"00000001000000000000003", 16 * mib, "got 23 characters"},
		{"0000000100000000000000030", 16 * mib, "got 25 characters"},
		{"0000000100000000000000ff", 16 * mib, "upper-case"},
		{"00000001000000000000000G", 16 * mib, "upper-case"},
		{"00000001 000000000000003", 16 * mib, "upper-case"},
		{"000000010000000000000003.partial", 16 * mib, "characters"},
		{"000000000000000000000003", 16 * mib, "timeline 0"},
		{"000000010000000000000100", 16 * mib, "out of range for 16 MiB segments (at most 000000FF)"},
		{"0000000100000000FFFFFFFF", 16 * mib, "out of range"},
		{"000000010000000000001000", mib, "out of range for 1 MiB segments (at most 00000FFF)"},
		{"000000010000000000000040", 64 * mib, "out of range for 64 MiB segments (at most 0000003F)"},
		{"000000010000000000000004", gib, "out of range for 1 GiB segments (at most 00000003)"},
		{"000000010000000000000003", 0, "invalid WAL segment size 0"},
		{"000000010000000000000003", 3 * mib, "invalid WAL segment size"},
		{"000000010000000000000003", 2 * gib, "invalid WAL segment size"},
	}
	for _, tt := range tests {
		seg, err := ParseSegmentName(tt.name, tt.size)
		if err == nil {
			t.Errorf("ParseSegmentName(%q, %d) = %+v, want error", tt.name, tt.size, seg)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "invalid WAL segment name") {
			t.Errorf("ParseSegmentName(%q, %d) error %q, want it to contain %q", tt.name, tt.size, err, tt.want)
		}
	}
}

func TestSegmentNext(t *testing.T) {
	tests := []struct {
		size     uint64
		from, to string
	}{
		{16 * mib, "000000010000000000000003", "000000010000000000000004"},
		{16 * mib, "0000000100000000000000FE", "0000000100000000000000FF"},
		{16 * mib, "0000000100000000000000FF", "000000010000000100000000"},
		{16 * mib, "0000000200000041000000FF", "000000020000004200000000"},
		{mib, "000000010000000000000FFF", "000000010000000100000000"},
		{64 * mib, "00000001000000000000003F", "000000010000000100000000"},
		{gib, "000000010000000000000003", "000000010000000100000000"},
		{gib, "000000010000000100000002", "000000010000000100000003"},
	}
	for _, tt := range tests {
		seg, err := ParseSegmentName(tt.from, tt.size)
		if err != nil {
			t.Fatal(err)
		}
		next := seg.Next()
		if got := next.Name(tt.size); got != tt.to {
			t.Errorf("Next of %s (%s) = %s, want %s", tt.from, formatSize(tt.size), got, tt.to)
		}
		if next.TLI != seg.TLI {
			t.Errorf("Next changed the timeline: %+v -> %+v", seg, next)
		}
		if next.StartLSN(tt.size) != seg.StartLSN(tt.size)+LSN(tt.size) {
			t.Errorf("Next of %s does not start one segment later", tt.from)
		}
	}
}

func TestSegmentForLSN(t *testing.T) {
	lsn := LSN(0x16B374D848) // 16/B374D848
	tests := []struct {
		size  uint64
		name  string
		start string
	}{
		{mib, "000000010000001600000B37", "16/B3700000"},
		{16 * mib, "0000000100000016000000B3", "16/B3000000"},
		{64 * mib, "00000001000000160000002C", "16/B0000000"},
		{gib, "000000010000001600000002", "16/80000000"},
	}
	for _, tt := range tests {
		seg := SegmentForLSN(1, lsn, tt.size)
		if got := seg.Name(tt.size); got != tt.name {
			t.Errorf("SegmentForLSN(1, %s, %s).Name() = %s, want %s", lsn, formatSize(tt.size), got, tt.name)
		}
		if got := seg.StartLSN(tt.size).String(); got != tt.start {
			t.Errorf("StartLSN of %s = %s, want %s", tt.name, got, tt.start)
		}
		if seg.StartLSN(tt.size) > lsn || seg.Next().StartLSN(tt.size) <= lsn {
			t.Errorf("%s (%s) does not contain %s", tt.name, formatSize(tt.size), lsn)
		}
	}

	// Segment boundaries belong to the segment they start.
	for _, size := range []uint64{mib, 16 * mib, 64 * mib, gib} {
		for _, no := range []uint64{0, 1, 0x100000000/size - 1, 0x100000000 / size, 12345} {
			start := LSN(no * size)
			if got := SegmentForLSN(7, start, size); got != (Segment{7, no}) {
				t.Errorf("SegmentForLSN(7, %s, %s) = %+v, want No %d", start, formatSize(size), got, no)
			}
			if no > 0 {
				if got := SegmentForLSN(7, start-1, size); got.No != no-1 {
					t.Errorf("SegmentForLSN(7, %s, %s).No = %d, want %d", start-1, formatSize(size), got.No, no-1)
				}
			}
		}
	}
	// The very last byte of the LSN space.
	if got := SegmentForLSN(1, ^LSN(0), 16*mib).Name(16 * mib); got != "00000001FFFFFFFF000000FF" {
		t.Errorf("last segment = %s", got)
	}
}

func TestInvalidSegmentSizePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"Name":              func() { Segment{1, 1}.Name(0) },
		"StartLSN":          func() { Segment{1, 1}.StartLSN(3 * mib) },
		"SegmentForLSN":     func() { SegmentForLSN(1, 0, 1000) },
		"SegmentsPerXLogID": func() { SegmentsPerXLogID(2 * gib) },
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("%s with an invalid segment size did not panic", name)
				} else if !strings.Contains(r.(string), "invalid WAL segment size") {
					t.Errorf("%s panic = %v", name, r)
				}
			}()
			f()
		}()
	}
}
