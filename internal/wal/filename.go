package wal

import (
	"fmt"
	"strings"
)

// FileKind is the kind of a file PostgreSQL hands to archive_command or asks
// for through restore_command.
type FileKind int

// The kinds of WAL files.
const (
	KindSegment FileKind = iota + 1 // 000000010000000000000003
	KindHistory                     // 00000002.history
	KindBackup                      // 000000010000000000000002.00000028.backup
	KindPartial                     // 000000010000000000000005.partial
)

// String returns the kind's lower-case name, such as "segment".
func (k FileKind) String() string {
	switch k {
	case KindSegment:
		return "segment"
	case KindHistory:
		return "history"
	case KindBackup:
		return "backup"
	case KindPartial:
		return "partial"
	}
	return fmt.Sprintf("FileKind(%d)", int(k))
}

const (
	historySuffix = ".history"
	partialSuffix = ".partial"
	backupSuffix  = ".backup"
	// 24 hex + "." + 8 hex + ".backup"
	backupNameLen = segmentNameLen + 1 + 8 + len(backupSuffix)
)

// Classify checks a WAL file base name and says what it is:
//
//	segment: 24 upper-case hex                   000000010000000000000003
//	history: 8 upper-case hex + ".history"       00000002.history
//	backup:  24 hex + "." + 8 hex + ".backup"    000000010000000000000002.00000028.backup
//	partial: 24 hex + ".partial"                 000000010000000000000005.partial
//
// Anything else (paths, lower case, other suffixes, timeline 0,
// "RECOVERYXLOG") is an error naming the file. Classify does not know the
// segment size; ParseFileName also checks the segment part against it.
func Classify(name string) (FileKind, error) {
	kind := classifyShape(name)
	if kind == 0 {
		return 0, fmt.Errorf("%q is not a WAL file name: want a 24-hex-digit segment, NNNNNNNN.history, a .backup or a .partial file", name)
	}
	if strings.HasPrefix(name, "00000000") {
		return 0, fmt.Errorf("%q is not a WAL file name: timeline 0 does not exist", name)
	}
	return kind, nil
}

func classifyShape(name string) FileKind {
	switch {
	case len(name) == segmentNameLen && isUpperHex(name):
		return KindSegment
	case len(name) == 8+len(historySuffix) && isUpperHex(name[:8]) && name[8:] == historySuffix:
		return KindHistory
	case len(name) == segmentNameLen+len(partialSuffix) && isUpperHex(name[:segmentNameLen]) &&
		name[segmentNameLen:] == partialSuffix:
		return KindPartial
	case len(name) == backupNameLen && isUpperHex(name[:segmentNameLen]) && name[segmentNameLen] == '.' &&
		isUpperHex(name[segmentNameLen+1:segmentNameLen+9]) && name[segmentNameLen+9:] == backupSuffix:
		return KindBackup
	}
	return 0
}

// FileName is a parsed WAL file name.
type FileName struct {
	Kind    FileKind
	Name    string  // the base name as given
	Segment Segment // segment, backup and partial files: the segment named
	// TLI is the timeline: for history files the one the file describes,
	// for the other kinds Segment.TLI.
	TLI uint32
	// Offset is, for backup files, the backup's start offset within Segment
	// (the 8 hex digits before ".backup"); the start LSN is
	// Segment.StartLSN(segSize) + LSN(Offset). Zero for other kinds.
	Offset uint32
}

// ParseFileName classifies name like Classify and parses its fields: for
// segment, backup and partial files the Segment (validated against segSize),
// for history files the TLI.
func ParseFileName(name string, segSize uint64) (FileName, error) {
	kind, err := Classify(name)
	if err != nil {
		return FileName{}, err
	}
	f := FileName{Kind: kind, Name: name}
	if kind == KindHistory {
		f.TLI, _ = parseHex32(name[:8], true) // shape already checked
		return f, nil
	}
	seg, err := parseSegment(name[:segmentNameLen], segSize)
	if err != nil {
		return FileName{}, fmt.Errorf("invalid WAL file name %q: %w", name, err)
	}
	f.Segment, f.TLI = seg, seg.TLI
	if kind == KindBackup {
		f.Offset, _ = parseHex32(name[segmentNameLen+1:segmentNameLen+9], true)
		if uint64(f.Offset) >= segSize {
			return FileName{}, fmt.Errorf("invalid WAL file name %q: backup offset %08X is beyond the end of a %s segment",
				name, f.Offset, formatSize(segSize))
		}
	}
	return f, nil
}

// HistoryFileName returns the name of timeline tli's history file, such as
// "00000002.history".
func HistoryFileName(tli uint32) string {
	return fmt.Sprintf("%08X%s", tli, historySuffix)
}
