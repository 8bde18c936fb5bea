// Package restore brings a base backup back as a PostgreSQL data directory
// set up for point-in-time recovery: it chooses the backup for the target,
// has the backup's provider put the data in place, writes backup_label and
// tablespace_map from the manifest, removes what must not survive, writes
// the recovery configuration, and can start the server and follow recovery.
package restore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/wal"
)

// Target is a recovery target: at most one of Time, LSN, XID, Name or
// Immediate; none means "replay all archived WAL".
type Target struct {
	Time      string // as the user wrote it; see ParseTime
	LSN       string
	XID       string
	Name      string
	Immediate bool
	Action    string // pause, promote or shutdown; "" = PostgreSQL's default (pause)
	Inclusive *bool  // nil = PostgreSQL's default (true)
	Timeline  string // "latest", "current" or a timeline number; "" = PostgreSQL's default (latest)

	time time.Time
	lsn  wal.LSN
}

// timeLayouts are the forms accepted for --target-time, most specific
// first; PostgreSQL's own now()::text output is among them.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
}

// localLayouts have no zone; they are read in the restoring host's zone.
var localLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
}

// ParseTime reads a target time. A time without a zone is taken in the
// local zone of this host (and written with its offset, so PostgreSQL
// cannot read it in another zone).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("target time %q: want a timestamp such as 2026-11-24 15:04:05+00 or 2026-11-24T15:04:05Z", s)
}

// Validate checks the target and parses its time or LSN.
func (t *Target) Validate() error {
	n := 0
	for _, set := range []bool{t.Time != "", t.LSN != "", t.XID != "", t.Name != "", t.Immediate} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give at most one of --target-time, --target-lsn, --target-xid, --target-name, --target-immediate")
	}
	var err error
	switch {
	case t.Time != "":
		t.time, err = ParseTime(t.Time)
	case t.LSN != "":
		t.lsn, err = wal.ParseLSN(t.LSN)
	case t.XID != "":
		if x, perr := strconv.ParseUint(t.XID, 10, 64); perr != nil || x < 3 {
			err = fmt.Errorf("target xid %q: want a transaction id (a number of 3 or more)", t.XID)
		}
	case t.Name != "":
		if len(t.Name) >= 64 {
			err = fmt.Errorf("target name %q: restore point names are at most 63 bytes", t.Name)
		}
	}
	if err != nil {
		return err
	}
	switch t.Action {
	case "", "pause", "promote", "shutdown":
	default:
		return fmt.Errorf("target action %q: want pause, promote or shutdown", t.Action)
	}
	if t.Action != "" && n == 0 {
		return errors.New("--target-action needs a recovery target")
	}
	if t.Inclusive != nil && t.Time == "" && t.LSN == "" && t.XID == "" {
		return errors.New("--target-inclusive applies to --target-time, --target-lsn and --target-xid only")
	}
	switch t.Timeline {
	case "", "latest", "current":
	default:
		if tl, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || tl == 0 {
			return fmt.Errorf("target timeline %q: want latest, current or a timeline number", t.Timeline)
		}
	}
	return nil
}

// Kind names the target for messages: "time 2026-…", "immediate", "end of WAL"...
func (t *Target) Kind() string {
	switch {
	case t.Time != "":
		return "time " + t.formatTime()
	case t.LSN != "":
		return "LSN " + t.lsn.String()
	case t.XID != "":
		return "xid " + t.XID
	case t.Name != "":
		return "restore point " + strconv.Quote(t.Name)
	case t.Immediate:
		return "immediate (end of the backup)"
	}
	return "end of archived WAL"
}

func (t *Target) formatTime() string { return t.time.Format("2006-01-02 15:04:05.999999-07:00") }

// Settings returns the recovery_target_* settings for postgresql.auto.conf,
// in a stable order.
func (t *Target) Settings() [][2]string {
	var s [][2]string
	switch {
	case t.Time != "":
		s = append(s, [2]string{"recovery_target_time", t.formatTime()})
	case t.LSN != "":
		s = append(s, [2]string{"recovery_target_lsn", t.lsn.String()})
	case t.XID != "":
		s = append(s, [2]string{"recovery_target_xid", t.XID})
	case t.Name != "":
		s = append(s, [2]string{"recovery_target_name", t.Name})
	case t.Immediate:
		s = append(s, [2]string{"recovery_target", "immediate"})
	}
	if t.Inclusive != nil {
		s = append(s, [2]string{"recovery_target_inclusive", strconv.FormatBool(*t.Inclusive)})
	}
	if t.Action != "" {
		s = append(s, [2]string{"recovery_target_action", t.Action})
	}
	if t.Timeline != "" {
		s = append(s, [2]string{"recovery_target_timeline", t.Timeline})
	}
	return s
}
