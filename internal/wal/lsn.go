package wal

import (
	"fmt"
	"strings"
)

// LSN is a PostgreSQL log sequence number: a byte position in the WAL stream.
type LSN uint64

// ParseLSN parses an LSN in PostgreSQL's text form "HI/LO", two groups of
// 1 to 8 hexadecimal digits (either case), such as "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hiText, loText, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q: want two hex numbers separated by '/', such as 16/B374D848", s)
	}
	hi, ok := parseHex32(hiText, false)
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q: high part %q is not 1 to 8 hex digits", s, hiText)
	}
	lo, ok := parseHex32(loText, false)
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q: low part %q is not 1 to 8 hex digits", s, loText)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// String formats l the way PostgreSQL prints it (%X/%X): "16/B374D848".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// MarshalText encodes l in PostgreSQL's text form (for JSON and YAML).
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText decodes PostgreSQL's text form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// parseHex32 parses 1 to 8 hex digits. With upperOnly, only 0-9 and A-F
// are accepted, as in WAL file names.
func parseHex32(s string, upperOnly bool) (uint32, bool) {
	if len(s) == 0 || len(s) > 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		d, ok := hexDigit(s[i], upperOnly)
		if !ok {
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

func hexDigit(c byte, upperOnly bool) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case !upperOnly && c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// isUpperHex reports whether s is non-empty and consists only of 0-9 and A-F.
func isUpperHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := hexDigit(s[i], true); !ok {
			return false
		}
	}
	return true
}
