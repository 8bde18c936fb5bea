package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LongHeaderSize is the size of XLogLongPageHeaderData, the header of the
// first page of every WAL segment.
const LongHeaderSize = 40

// FlagLongHeader is XLP_LONG_HEADER, the xlp_info bit marking a long header.
const FlagLongHeader = 0x0002

// Block sizes PostgreSQL can be built with for WAL (--with-wal-blocksize,
// 1 to 64 kB).
const (
	minWALBlockSize = 1 << 10
	maxWALBlockSize = 64 << 10
)

// LongPageHeader is XLogLongPageHeaderData: the first 40 bytes of a WAL
// segment.
type LongPageHeader struct {
	Magic, Info uint16 // xlp_magic, xlp_info
	TLI         uint32 // xlp_tli: timeline of the first record on the page
	PageAddr    LSN    // xlp_pageaddr: LSN of the page's first byte
	RemLen      uint32 // xlp_rem_len: bytes of a record continued from the previous page
	SystemID    uint64 // xlp_sysid: the cluster's system identifier
	SegSize     uint32 // xlp_seg_size
	BlockSize   uint32 // xlp_xlog_blcksz
}

// ParseLongPageHeader decodes the long page header at the start of b
// (little-endian, as written on x86 and arm64). It fails if b is shorter than
// LongHeaderSize or the long-header flag is not set in Info.
func ParseLongPageHeader(b []byte) (LongPageHeader, error) {
	if len(b) < LongHeaderSize {
		return LongPageHeader{}, fmt.Errorf("WAL page header is %d bytes, need at least %d", len(b), LongHeaderSize)
	}
	le := binary.LittleEndian
	h := LongPageHeader{
		Magic:    le.Uint16(b[0:]),
		Info:     le.Uint16(b[2:]),
		TLI:      le.Uint32(b[4:]),
		PageAddr: LSN(le.Uint64(b[8:])),
		RemLen:   le.Uint32(b[16:]),
		// b[20:24] is alignment padding.
		SystemID:  le.Uint64(b[24:]),
		SegSize:   le.Uint32(b[32:]),
		BlockSize: le.Uint32(b[36:]),
	}
	if h.Info&FlagLongHeader == 0 {
		return LongPageHeader{}, fmt.Errorf("WAL page header has no long-header flag (xlp_info 0x%04X)", h.Info)
	}
	return h, nil
}

// Bytes encodes h as the LongHeaderSize bytes PostgreSQL writes
// (little-endian, zero padding), for example to build test segments.
func (h LongPageHeader) Bytes() []byte {
	b := make([]byte, LongHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], h.Magic)
	le.PutUint16(b[2:], h.Info)
	le.PutUint32(b[4:], h.TLI)
	le.PutUint64(b[8:], uint64(h.PageAddr))
	le.PutUint32(b[16:], h.RemLen)
	le.PutUint64(b[24:], h.SystemID)
	le.PutUint32(b[32:], h.SegSize)
	le.PutUint32(b[36:], h.BlockSize)
	return b
}

// magics maps XLOG_PAGE_MAGIC to the PostgreSQL major version writing it.
var magics = [...]struct {
	magic uint16
	major int
}{
	{0xD101, 12},
	{0xD106, 13},
	{0xD10D, 14},
	{0xD110, 15},
	{0xD113, 16},
	{0xD116, 17},
	{0xD118, 18},
}

// MagicMajor maps an XLOG_PAGE_MAGIC value to the PostgreSQL major version
// (12 to 18) that writes it.
func MagicMajor(magic uint16) (major int, ok bool) {
	for _, m := range magics {
		if m.magic == magic {
			return m.major, true
		}
	}
	return 0, false
}

// Sentinels for errors.Is on the errors CheckSegmentHeader returns.
var (
	// ErrInvalidHeader: the bytes are not the start of a WAL segment
	// matching its file name (too short, unknown magic, not a long header,
	// bad block size, wrong page address or timeline).
	ErrInvalidHeader = errors.New("invalid WAL segment header")
	// ErrSystemIDMismatch: the segment comes from another cluster.
	ErrSystemIDMismatch = errors.New("WAL segment system identifier mismatch")
	// ErrSegmentSizeMismatch: the segment's size differs from the expected one.
	ErrSegmentSizeMismatch = errors.New("WAL segment size mismatch")
)

// HeaderError is the error CheckSegmentHeader returns: an operator-readable
// sentence in Error, and one of the sentinels above in Kind (and Unwrap).
type HeaderError struct {
	Segment string // the segment's file name
	Kind    error  // ErrInvalidHeader, ErrSystemIDMismatch or ErrSegmentSizeMismatch
	Msg     string // the sentence, starting with the segment name
}

func (e *HeaderError) Error() string { return e.Msg }

// Unwrap returns e.Kind.
func (e *HeaderError) Unwrap() error { return e.Kind }

// CheckSegmentHeader validates the first bytes of a segment (at least
// LongHeaderSize) against its name and the expected cluster: the magic is
// known, the long-header flag is set, SystemID equals wantSysID (unless
// wantSysID is 0), SegSize equals segSize, BlockSize is a power of two from
// 1 kB to 64 kB, PageAddr is seg.StartLSN(segSize), and TLI is between 1 and
// seg.TLI.
//
// TLI may be lower than seg.TLI: when a server is promoted, the first segment
// of the new timeline starts as a copy of the old timeline's last segment,
// so its first page still carries the old timeline.
//
// A failure is a *HeaderError whose message names the segment, for example
// "000000010000000000000003: system identifier 7301… does not match the
// repository's 7299…".
func CheckSegmentHeader(seg Segment, segSize uint64, hdr []byte, wantSysID uint64) (LongPageHeader, error) {
	if !ValidSegmentSize(segSize) {
		return LongPageHeader{}, errInvalidSegmentSize(segSize)
	}
	name := seg.Name(segSize)
	fail := func(kind error, format string, args ...any) (LongPageHeader, error) {
		return LongPageHeader{}, &HeaderError{Segment: name, Kind: kind, Msg: name + ": " + fmt.Sprintf(format, args...)}
	}
	if len(hdr) < LongHeaderSize {
		return fail(ErrInvalidHeader, "only %d bytes were read, but a WAL segment starts with a %d-byte page header",
			len(hdr), LongHeaderSize)
	}
	magic := binary.LittleEndian.Uint16(hdr)
	if _, ok := MagicMajor(magic); !ok {
		return fail(ErrInvalidHeader, "unknown WAL page magic 0x%04X, so this is not a WAL segment written by PostgreSQL 12 to 18", magic)
	}
	h, err := ParseLongPageHeader(hdr)
	if err != nil {
		return fail(ErrInvalidHeader, "the first page has no long header (xlp_info 0x%04X), so this is not the start of a WAL segment",
			binary.LittleEndian.Uint16(hdr[2:]))
	}
	if wantSysID != 0 && h.SystemID != wantSysID {
		return fail(ErrSystemIDMismatch, "system identifier %d does not match the repository's %d", h.SystemID, wantSysID)
	}
	if uint64(h.SegSize) != segSize {
		return fail(ErrSegmentSizeMismatch, "WAL segment size in the header is %s, but %s was expected",
			formatSize(uint64(h.SegSize)), formatSize(segSize))
	}
	if h.BlockSize < minWALBlockSize || h.BlockSize > maxWALBlockSize || h.BlockSize&(h.BlockSize-1) != 0 {
		return fail(ErrInvalidHeader, "WAL block size %d in the header is not a power of two from 1 kB to 64 kB", h.BlockSize)
	}
	if want := seg.StartLSN(segSize); h.PageAddr != want {
		return fail(ErrInvalidHeader, "page address %s in the header does not match the file name, which starts at %s",
			h.PageAddr, want)
	}
	if h.TLI == 0 || h.TLI > seg.TLI {
		return fail(ErrInvalidHeader, "timeline %d in the header does not fit the file name's timeline %d", h.TLI, seg.TLI)
	}
	return h, nil
}
