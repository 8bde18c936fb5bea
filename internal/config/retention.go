package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Retention is the policy of walsnap delete. Neither set means no policy:
// delete then refuses to run unless the command line gives one.
type Retention struct {
	// Full keeps the newest Full complete backups; 0 is not set.
	Full int `yaml:"full" json:"full"`
	// Window keeps what restores to any point in the last Window: every
	// backup that stopped within it and the newest one before; 0 is not
	// set.
	Window Window `yaml:"window" json:"window"`
}

// Window is a span of time written in days as well as Go's units: "14d",
// "1d12h", "36h", "90m". The empty text is 0, not set.
type Window time.Duration

const day = 24 * time.Hour

// ParseWindow reads a window: an optional whole number of days ("14d")
// followed by an optional Go duration ("12h30m"). It must be positive.
func ParseWindow(s string) (Window, error) {
	rest := strings.TrimSpace(s)
	var d time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 31)
		if err != nil {
			return 0, fmt.Errorf("retention window %q: want days like 14d, a duration like 36h, or both (1d12h)", s)
		}
		d, rest = time.Duration(n)*day, rest[i+1:]
	}
	if rest != "" {
		more, err := time.ParseDuration(rest)
		if err != nil || more < 0 {
			return 0, fmt.Errorf("retention window %q: want days like 14d, a duration like 36h, or both (1d12h)", s)
		}
		d += more
	}
	if d <= 0 {
		return 0, fmt.Errorf("retention window %q: must be longer than zero", s)
	}
	return Window(d), nil
}

// Duration is the window as a time.Duration.
func (w Window) Duration() time.Duration { return time.Duration(w) }

// String writes the window as ParseWindow reads it: whole days as "14d",
// the rest as a duration ("1d12h", "36m"); "" when not set.
func (w Window) String() string {
	d := time.Duration(w)
	if d <= 0 {
		return ""
	}
	days, rest := d/day, d%day
	out := ""
	if days > 0 {
		out = strconv.FormatInt(int64(days), 10) + "d"
	}
	if rest > 0 {
		out += shortDuration(rest)
	}
	return out
}

// MarshalText writes the window as String does.
func (w Window) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText reads a retention.window; empty text leaves it unset.
func (w *Window) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*w = 0
		return nil
	}
	v, err := ParseWindow(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}
