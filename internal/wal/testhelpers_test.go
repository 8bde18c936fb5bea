package wal

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// magicForMajor returns the XLOG_PAGE_MAGIC written by a PostgreSQL major
// version (12 to 18).
func magicForMajor(major int) (magic uint16, ok bool) {
	for _, m := range magics {
		if m.major == major {
			return m.magic, true
		}
	}
	return 0, false
}

// formatHistory renders entries in the history file format, one line each.
// It is the inverse of ParseHistory and rejects what ParseHistory would not
// read back identically: no entries, parent timelines that are zero or not
// increasing, and reasons containing a line break.
func formatHistory(entries []HistoryEntry) ([]byte, error) {
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
