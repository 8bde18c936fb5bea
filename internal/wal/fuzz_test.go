package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "16/b374d848", "FFFFFFFF/FFFFFFFF", "0/00000028", "", "/", "1/2/3", "123456789/0", "+1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		out := l.String()
		back, err := ParseLSN(out)
		if err != nil || back != l {
			t.Fatalf("ParseLSN(%q) = %#x, String %q parses back to %#x, %v", s, uint64(l), out, uint64(back), err)
		}
		if out != strings.ToUpper(out) || len(out) > 17 {
			t.Fatalf("String() = %q is not canonical", out)
		}
		// Canonical input (upper case, no leading zeros) comes back unchanged.
		hi, lo, _ := strings.Cut(s, "/")
		canon := func(p string) bool { return p == "0" || (p[0] != '0' && p == strings.ToUpper(p)) }
		if canon(hi) && canon(lo) && out != s {
			t.Fatalf("ParseLSN(%q).String() = %q", s, out)
		}
	})
}

func FuzzParseSegmentName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000003", "0000000100000000000000FF", "000000010000000100000000",
		"000000010000000000000100", "FFFFFFFFFFFFFFFF000000FF", "000000000000000000000001",
		"0000000100000000000000ff", "000000010000000000000003.partial",
	} {
		for shift := range uint8(12) {
			f.Add(s, shift)
		}
	}
	f.Fuzz(func(t *testing.T, name string, shift uint8) {
		segSize := uint64(1) << (20 + shift%11) // 1 MiB .. 1 GiB
		if shift%12 == 11 {
			segSize = 3 << 20 // invalid: must always fail, never panic
		}
		seg, err := ParseSegmentName(name, segSize)
		if err != nil {
			return
		}
		if !ValidSegmentSize(segSize) {
			t.Fatalf("ParseSegmentName(%q, %d) accepted an invalid size", name, segSize)
		}
		if got := seg.Name(segSize); got != name {
			t.Fatalf("ParseSegmentName(%q, %d) = %+v, Name() = %q", name, segSize, seg, got)
		}
		if seg.TLI == 0 {
			t.Fatalf("ParseSegmentName(%q) accepted timeline 0", name)
		}
		start := seg.StartLSN(segSize)
		if SegmentForLSN(seg.TLI, start, segSize) != seg || SegmentForLSN(seg.TLI, start+LSN(segSize-1), segSize) != seg {
			t.Fatalf("%s: SegmentForLSN does not map the segment's bytes back to it", name)
		}
		if kind, err := Classify(name); err != nil || kind != KindSegment {
			t.Fatalf("Classify(%q) = %v, %v", name, kind, err)
		}
		if seg.No+1 < (1<<63)/segSize*2 { // Next stays inside the LSN space
			next := seg.Next()
			back, err := ParseSegmentName(next.Name(segSize), segSize)
			if err != nil || back != next {
				t.Fatalf("%s: Next() = %+v named %q parses to %+v, %v", name, next, next.Name(segSize), back, err)
			}
		}
	})
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000003", "00000002.history", "000000010000000000000002.00000028.backup",
		"000000010000000000000005.partial", "RECOVERYXLOG", "pg_wal/000000010000000000000003",
		"000000010000000000000100", "000000010000000000000002.FF000028.backup", "00000000.history", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		kind, err := Classify(name)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
				t.Fatalf("Classify(%q) error %q does not name the file", name, err)
			}
			if _, err2 := ParseFileName(name, DefaultSegmentSize); err2 == nil {
				t.Fatalf("ParseFileName accepts %q, which Classify rejects", name)
			}
			return
		}
		if strings.ContainsAny(name, "/\\ \x00") || name != strings.ToValidUTF8(name, "") {
			t.Fatalf("Classify(%q) = %v for a name with a path separator or odd bytes", name, kind)
		}
		fn, err := ParseFileName(name, DefaultSegmentSize)
		if err != nil {
			return // segment part out of range for 16 MiB, or backup offset too big
		}
		if fn.Kind != kind || fn.Name != name {
			t.Fatalf("ParseFileName(%q) = %+v, Classify says %v", name, fn, kind)
		}
		var rebuilt string
		switch kind {
		case KindSegment:
			rebuilt = fn.Segment.Name(DefaultSegmentSize)
		case KindPartial:
			rebuilt = fn.Segment.Name(DefaultSegmentSize) + ".partial"
		case KindBackup:
			rebuilt = fmt.Sprintf("%s.%08X.backup", fn.Segment.Name(DefaultSegmentSize), fn.Offset)
		case KindHistory:
			rebuilt = HistoryFileName(fn.TLI)
		default:
			t.Fatalf("Classify(%q) = unknown kind %d", name, kind)
		}
		if rebuilt != name {
			t.Fatalf("ParseFileName(%q) = %+v rebuilds as %q", name, fn, rebuilt)
		}
		if fn.TLI == 0 || (kind != KindHistory && fn.TLI != fn.Segment.TLI) {
			t.Fatalf("ParseFileName(%q): TLI %d, segment %+v", name, fn.TLI, fn.Segment)
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	for _, s := range []string{
		"1\t0/3000000\tno recovery target specified\n",
		"1\t0/3000000\tno recovery target specified\n\n2\t16/B374D848\tbefore 2024-05-01 12:00:00+00\n",
		"# comment\n  1\t0/3000000\n",
		"1\t0/3000000\tx\n1\t0/4000000\ty\n",
		"", "\n", "1\t0/3000000\ta\tb\r\n",
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile(filepath.Join(fixtureDir, "pg15-16mb/00000002.history")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseHistory(data)
		if err != nil {
			return
		}
		if len(entries) == 0 {
			t.Fatal("no error and no entries")
		}
		for i := range entries {
			if entries[i].ParentTLI == 0 || (i > 0 && entries[i].ParentTLI <= entries[i-1].ParentTLI) {
				t.Fatalf("entries not strictly increasing: %+v", entries)
			}
		}
		out, err := formatHistory(entries)
		if err != nil {
			t.Fatalf("formatHistory(%+v): %v", entries, err)
		}
		back, err := ParseHistory(out)
		if err != nil || !reflect.DeepEqual(back, entries) {
			t.Fatalf("round trip of %+v through %q = %+v, %v", entries, out, back, err)
		}
	})
}

func FuzzParseLongPageHeader(f *testing.F) {
	for _, rel := range []string{
		"pg15-16mb/000000010000000000000002.head",
		"pg15-16mb/000000020000000000000006.head",
		"pg15-64mb/000000010000000000000002.head",
	} {
		if b, err := os.ReadFile(filepath.Join(fixtureDir, rel)); err == nil {
			f.Add(b[:64])
		}
	}
	f.Add(goodHeader(Segment{1, 3}).Bytes())
	f.Add(make([]byte, 40))
	f.Add([]byte{0x10, 0xD1, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseLongPageHeader(b)
		if err != nil {
			if len(b) >= LongHeaderSize && b[2]&FlagLongHeader != 0 {
				t.Fatalf("rejected a long header: %v", err)
			}
			return
		}
		if len(b) < LongHeaderSize || h.Info&FlagLongHeader == 0 {
			t.Fatalf("accepted %d bytes with info 0x%04X", len(b), h.Info)
		}
		enc := h.Bytes()
		for i := range LongHeaderSize {
			if (i < 20 || i >= 24) && enc[i] != b[i] {
				t.Fatalf("Bytes() differs from the input at byte %d", i)
			}
		}
		// CheckSegmentHeader must not panic on anything, and what it accepts
		// must satisfy every rule.
		tli := max(h.TLI, 1)
		for _, size := range []uint64{mib, DefaultSegmentSize, gib} {
			seg := SegmentForLSN(tli, h.PageAddr, size)
			got, err := CheckSegmentHeader(seg, size, b, h.SystemID)
			if err != nil {
				if !strings.HasPrefix(err.Error(), seg.Name(size)+": ") {
					t.Fatalf("error %q does not start with the segment name", err)
				}
				continue
			}
			if _, ok := MagicMajor(got.Magic); !ok || uint64(got.SegSize) != size ||
				got.PageAddr != seg.StartLSN(size) || got.TLI == 0 || got.TLI > seg.TLI ||
				got.BlockSize < 1024 || got.BlockSize > 65536 || got.BlockSize&(got.BlockSize-1) != 0 {
				t.Fatalf("CheckSegmentHeader accepted %+v for %s", got, seg.Name(size))
			}
		}
	})
}
