package wal

import (
	"errors"
	"strings"
	"testing"
)

func TestMagicMajor(t *testing.T) {
	known := map[uint16]int{
		0xD101: 12, 0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17, 0xD118: 18,
	}
	for magic, major := range known {
		got, ok := MagicMajor(magic)
		if !ok || got != major {
			t.Errorf("MagicMajor(0x%04X) = %d, %v; want %d", magic, got, ok, major)
		}
		back, ok := magicForMajor(major)
		if !ok || back != magic {
			t.Errorf("magicForMajor(%d) = 0x%04X, %v; want 0x%04X", major, back, ok, magic)
		}
	}
	// 11, a PostgreSQL 17 development value, PostgreSQL 19 development, garbage.
	for _, magic := range []uint16{0xD098, 0xD114, 0xD120, 0, 0xFFFF, 0x10D1} {
		if major, ok := MagicMajor(magic); ok {
			t.Errorf("MagicMajor(0x%04X) = %d, want unknown", magic, major)
		}
	}
	for _, major := range []int{0, 11, 19, -1} {
		if magic, ok := magicForMajor(major); ok {
			t.Errorf("magicForMajor(%d) = 0x%04X, want unknown", major, magic)
		}
	}
}

func TestParseLongPageHeader(t *testing.T) {
	b := []byte{
		0x10, 0xD1, // magic
		0x06, 0x00, // info: long header | 0x0004
		0x02, 0x00, 0x00, 0x00, // tli
		0x00, 0x00, 0x00, 0x03, 0x16, 0x00, 0x00, 0x00, // pageaddr 16/3000000
		0x28, 0x00, 0x00, 0x00, // rem_len
		0xAA, 0xBB, 0xCC, 0xDD, // padding, ignored
		0xEB, 0x9D, 0xA2, 0xA8, 0xD9, 0xAD, 0x05, 0x6B, // sysid
		0x00, 0x00, 0x00, 0x01, // seg size 16 MiB
		0x00, 0x20, 0x00, 0x00, // block size 8192
		0x99, // trailing data is fine
	}
	h, err := ParseLongPageHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	want := LongPageHeader{
		Magic: 0xD110, Info: 6, TLI: 2, PageAddr: 0x1603000000, RemLen: 0x28,
		SystemID: 7711761087290580459, SegSize: 16 * mib, BlockSize: 8192,
	}
	if h != want {
		t.Errorf("ParseLongPageHeader = %+v, want %+v", h, want)
	}
	enc := h.Bytes()
	if len(enc) != LongHeaderSize {
		t.Fatalf("Bytes() is %d bytes", len(enc))
	}
	for i := range LongHeaderSize {
		if (i < 20 || i >= 24) && enc[i] != b[i] {
			t.Errorf("Bytes()[%d] = %#x, want %#x", i, enc[i], b[i])
		}
		if i >= 20 && i < 24 && enc[i] != 0 {
			t.Errorf("Bytes() padding byte %d = %#x, want 0", i, enc[i])
		}
	}

	if _, err := ParseLongPageHeader(b[:39]); err == nil || !strings.Contains(err.Error(), "39 bytes") {
		t.Errorf("short header: err = %v", err)
	}
	if _, err := ParseLongPageHeader(nil); err == nil {
		t.Error("nil header: no error")
	}
	short := append([]byte(nil), b...)
	short[2] = 0x05 // contrecord | 0x0004, no long header
	if _, err := ParseLongPageHeader(short); err == nil || !strings.Contains(err.Error(), "0x0005") {
		t.Errorf("header without long flag: err = %v", err)
	}
}

const testSysID = 7299000000000000001

// goodHeader returns a valid header for seg with 16 MiB segments.
func goodHeader(seg Segment) LongPageHeader {
	return LongPageHeader{
		Magic: 0xD110, Info: FlagLongHeader, TLI: seg.TLI, PageAddr: seg.StartLSN(16 * mib),
		SystemID: testSysID, SegSize: 16 * mib, BlockSize: 8192,
	}
}

func TestCheckSegmentHeader(t *testing.T) {
	seg := Segment{TLI: 3, No: 0x1603}
	name := seg.Name(16 * mib) // 000000030000001600000003

	tests := []struct {
		name   string
		mutate func(h *LongPageHeader)
		hdr    func(b []byte) []byte
		anySys bool   // pass wantSysID 0
		kind   error  // nil: valid
		msg    string // exact message when kind != nil
	}{
		{name: "valid"},
		{name: "any system id", anySys: true, mutate: func(h *LongPageHeader) { h.SystemID = 42 }},
		{name: "full first page", hdr: func(b []byte) []byte { return append(b, make([]byte, 8192-40)...) }},
		{name: "older timeline in header (after promotion)", mutate: func(h *LongPageHeader) { h.TLI = 1 }},
		{name: "every known magic", mutate: func(h *LongPageHeader) { h.Magic = 0xD118 }},
		{name: "1 kB WAL blocks", mutate: func(h *LongPageHeader) { h.BlockSize = 1024 }},
		{name: "64 kB WAL blocks", mutate: func(h *LongPageHeader) { h.BlockSize = 64 << 10 }},
		{name: "extra info flags", mutate: func(h *LongPageHeader) { h.Info = 0x0007 }},

		{name: "other cluster", mutate: func(h *LongPageHeader) { h.SystemID = 7301000000000000002 },
			kind: ErrSystemIDMismatch,
			msg:  name + ": system identifier 7301000000000000002 does not match the repository's 7299000000000000001"},
		{name: "segment size", mutate: func(h *LongPageHeader) { h.SegSize = 64 * mib },
			kind: ErrSegmentSizeMismatch,
			msg:  name + ": WAL segment size in the header is 64 MiB, but 16 MiB was expected"},
		{name: "odd segment size", mutate: func(h *LongPageHeader) { h.SegSize = 12345 },
			kind: ErrSegmentSizeMismatch,
			msg:  name + ": WAL segment size in the header is 12345 bytes, but 16 MiB was expected"},
		{name: "unknown magic", mutate: func(h *LongPageHeader) { h.Magic = 0xD120 },
			kind: ErrInvalidHeader,
			msg:  name + ": unknown WAL page magic 0xD120, so this is not a WAL segment written by PostgreSQL 12 to 18"},
		{name: "zeros", hdr: func(b []byte) []byte { return make([]byte, 8192) },
			kind: ErrInvalidHeader,
			msg:  name + ": unknown WAL page magic 0x0000, so this is not a WAL segment written by PostgreSQL 12 to 18"},
		{name: "short page header", mutate: func(h *LongPageHeader) { h.Info = 0x0001 },
			kind: ErrInvalidHeader,
			msg:  name + ": the first page has no long header (xlp_info 0x0001), so this is not the start of a WAL segment"},
		{name: "truncated", hdr: func(b []byte) []byte { return b[:17] },
			kind: ErrInvalidHeader,
			msg:  name + ": only 17 bytes were read, but a WAL segment starts with a 40-byte page header"},
		{name: "block size zero", mutate: func(h *LongPageHeader) { h.BlockSize = 0 },
			kind: ErrInvalidHeader,
			msg:  name + ": WAL block size 0 in the header is not a power of two from 1 kB to 64 kB"},
		{name: "block size 512", mutate: func(h *LongPageHeader) { h.BlockSize = 512 }, kind: ErrInvalidHeader},
		{name: "block size 128k", mutate: func(h *LongPageHeader) { h.BlockSize = 128 << 10 }, kind: ErrInvalidHeader},
		{name: "block size not a power of two", mutate: func(h *LongPageHeader) { h.BlockSize = 8000 }, kind: ErrInvalidHeader},
		{name: "renamed segment", mutate: func(h *LongPageHeader) { h.PageAddr = 0x1604000000 },
			kind: ErrInvalidHeader,
			msg:  name + ": page address 16/4000000 in the header does not match the file name, which starts at 16/3000000"},
		{name: "not at a segment start", mutate: func(h *LongPageHeader) { h.PageAddr += 8192 }, kind: ErrInvalidHeader},
		{name: "newer timeline in header", mutate: func(h *LongPageHeader) { h.TLI = 4 },
			kind: ErrInvalidHeader,
			msg:  name + ": timeline 4 in the header does not fit the file name's timeline 3"},
		{name: "timeline zero in header", mutate: func(h *LongPageHeader) { h.TLI = 0 }, kind: ErrInvalidHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := goodHeader(seg)
			if tt.mutate != nil {
				tt.mutate(&h)
			}
			b := h.Bytes()
			if tt.hdr != nil {
				b = tt.hdr(b)
			}
			sysID := uint64(testSysID)
			if tt.anySys {
				sysID = 0
			}
			got, err := CheckSegmentHeader(seg, 16*mib, b, sysID)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got != h {
					t.Errorf("header = %+v, want %+v", got, h)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tt.kind)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q is not %v", err, tt.kind)
			}
			var he *HeaderError
			if !errors.As(err, &he) || he.Segment != name {
				t.Errorf("error %#v is not a *HeaderError for %s", err, name)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("error message\n got %q\nwant %q", err, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), name+": ") || strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("error %q is not one line starting with the segment name", err)
			}
		})
	}

	if _, err := CheckSegmentHeader(seg, 3*mib, goodHeader(seg).Bytes(), testSysID); err == nil ||
		!strings.Contains(err.Error(), "invalid WAL segment size") {
		t.Errorf("invalid segment size: err = %v", err)
	}
}

func TestCheckSegmentHeaderSizes(t *testing.T) {
	for _, size := range []uint64{mib, 16 * mib, 64 * mib, gib} {
		per := SegmentsPerXLogID(size)
		for _, seg := range []Segment{{1, 1}, {1, per - 1}, {2, per}, {0xFFFFFFFF, 0x12345 * per}} {
			h := LongPageHeader{
				Magic: 0xD101, Info: FlagLongHeader, TLI: seg.TLI, PageAddr: seg.StartLSN(size),
				SystemID: 1, SegSize: uint32(size), BlockSize: 8192,
			}
			if _, err := CheckSegmentHeader(seg, size, h.Bytes(), 1); err != nil {
				t.Errorf("%s (%s): %v", seg.Name(size), formatSize(size), err)
			}
		}
	}
}
