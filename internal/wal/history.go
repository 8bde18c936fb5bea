package wal

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// HistoryEntry is one line of a timeline history file: the server left
// timeline ParentTLI at SwitchPoint for the next timeline.
type HistoryEntry struct {
	ParentTLI   uint32
	SwitchPoint LSN
	Reason      string
}

// ParseHistory parses the text PostgreSQL writes to NNNNNNNN.history files:
// one entry per line, "parentTLI<TAB>switchpoint<TAB>reason", for example
// "1\t0/3000000\tno recovery target specified". Blank lines and lines starting
// with '#' are ignored (PostgreSQL writes a blank line between inherited and
// new entries). Parent timelines must increase strictly, and there must be at
// least one entry. Errors name the line.
func ParseHistory(data []byte) ([]HistoryEntry, error) {
	var entries []HistoryEntry
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		line = strings.TrimLeft(line, " \t\r\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.SplitN(line, "\t", 3)
		if len(fields) < 2 {
			return nil, fmt.Errorf("timeline history line %d: want parent timeline, switch point and reason separated by tabs, got %q",
				lineNo, line)
		}
		tli, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("timeline history line %d: invalid parent timeline %q", lineNo, fields[0])
		}
		lsn, err := ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", lineNo, err)
		}
		if n := len(entries); n > 0 && uint32(tli) <= entries[n-1].ParentTLI {
			return nil, fmt.Errorf("timeline history line %d: parent timeline %d does not follow %d (timeline IDs must increase)",
				lineNo, tli, entries[n-1].ParentTLI)
		}
		e := HistoryEntry{ParentTLI: uint32(tli), SwitchPoint: lsn}
		if len(fields) == 3 {
			e.Reason = fields[2]
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, errors.New("timeline history has no entries")
	}
	return entries, nil
}

// FormatHistory renders entries in the history file format, one line each.
// It is the inverse of ParseHistory and rejects what ParseHistory would not
// read back identically: no entries, parent timelines that are zero or not
// increasing, and reasons containing a line break.
func FormatHistory(entries []HistoryEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, errors.New("timeline history has no entries")
	}
	var buf bytes.Buffer
	for i, e := range entries {
		if e.ParentTLI == 0 || (i > 0 && e.ParentTLI <= entries[i-1].ParentTLI) {
			return nil, fmt.Errorf("timeline history entry %d: parent timeline %d is zero or not increasing", i+1, e.ParentTLI)
		}
		if strings.ContainsAny(e.Reason, "\n") {
			return nil, fmt.Errorf("timeline history entry %d: reason contains a line break", i+1)
		}
		fmt.Fprintf(&buf, "%d\t%s\t%s\n", e.ParentTLI, e.SwitchPoint, e.Reason)
	}
	return buf.Bytes(), nil
}
