package wal

import (
	"errors"
	"fmt"
)

// DefaultSegmentSize is PostgreSQL's default WAL segment size, 16 MiB.
const DefaultSegmentSize = 16 << 20

const (
	minSegmentSize = 1 << 20
	maxSegmentSize = 1 << 30
)

// segmentNameLen is the length of a WAL segment file name.
const segmentNameLen = 24

// ValidSegmentSize reports whether size is a WAL segment size PostgreSQL
// accepts: a power of two from 1 MiB to 1 GiB.
func ValidSegmentSize(size uint64) bool {
	return size >= minSegmentSize && size <= maxSegmentSize && size&(size-1) == 0
}

// SegmentsPerXLogID is the number of segments of the given size in one 4 GiB
// "log id", the middle 8 hex digits of a segment name (XLogSegmentsPerXLogId).
// segSize must be valid; SegmentsPerXLogID panics otherwise.
func SegmentsPerXLogID(segSize uint64) uint64 {
	mustSegmentSize(segSize)
	return 0x100000000 / segSize
}

// Segment identifies one WAL segment file.
type Segment struct {
	TLI uint32 // timeline
	No  uint64 // segment number = LSN / segment size
}

// SegmentForLSN returns the segment on timeline tli that holds the byte at
// lsn. segSize must be valid; SegmentForLSN panics otherwise.
func SegmentForLSN(tli uint32, lsn LSN, segSize uint64) Segment {
	mustSegmentSize(segSize)
	return Segment{TLI: tli, No: uint64(lsn) / segSize}
}

// ParseSegmentName parses a 24-character WAL segment name
// TTTTTTTTLLLLLLLLSSSSSSSS (upper-case hex: timeline, log id, segment within
// the log id) for the given segment size.
func ParseSegmentName(name string, segSize uint64) (Segment, error) {
	s, err := parseSegment(name, segSize)
	if err != nil {
		return Segment{}, fmt.Errorf("invalid WAL segment name %q: %w", name, err)
	}
	return s, nil
}

func parseSegment(name string, segSize uint64) (Segment, error) {
	if !ValidSegmentSize(segSize) {
		return Segment{}, errInvalidSegmentSize(segSize)
	}
	if len(name) != segmentNameLen {
		return Segment{}, fmt.Errorf("want %d upper-case hex digits, got %d characters", segmentNameLen, len(name))
	}
	tli, ok1 := parseHex32(name[0:8], true)
	log, ok2 := parseHex32(name[8:16], true)
	seg, ok3 := parseHex32(name[16:24], true)
	if !ok1 || !ok2 || !ok3 {
		return Segment{}, errors.New("want only upper-case hex digits 0-9 A-F")
	}
	if tli == 0 {
		return Segment{}, errors.New("timeline 0 does not exist")
	}
	per := 0x100000000 / segSize
	if uint64(seg) >= per {
		return Segment{}, fmt.Errorf("last 8 digits %08X are out of range for %s segments (at most %08X)",
			seg, formatSize(segSize), per-1)
	}
	return Segment{TLI: tli, No: uint64(log)*per + uint64(seg)}, nil
}

// Name returns the segment's file name for the given segment size, such as
// "000000010000000000000003". segSize must be valid; Name panics otherwise.
func (s Segment) Name(segSize uint64) string {
	per := SegmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", s.TLI, s.No/per, s.No%per)
}

// Next returns the following segment on the same timeline.
func (s Segment) Next() Segment {
	return Segment{TLI: s.TLI, No: s.No + 1}
}

// StartLSN returns the LSN of the segment's first byte. segSize must be
// valid; StartLSN panics otherwise.
func (s Segment) StartLSN(segSize uint64) LSN {
	mustSegmentSize(segSize)
	return LSN(s.No * segSize)
}

func mustSegmentSize(segSize uint64) {
	if !ValidSegmentSize(segSize) {
		panic("wal: " + errInvalidSegmentSize(segSize).Error())
	}
}

func errInvalidSegmentSize(segSize uint64) error {
	return fmt.Errorf("invalid WAL segment size %d: must be a power of two from 1 MiB to 1 GiB", segSize)
}

// formatSize renders a power-of-two byte count such as 16777216 as "16 MiB".
func formatSize(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
