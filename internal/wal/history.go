package wal

import (
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
