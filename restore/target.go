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

// TargetSpec is a recovery target as the user wrote it: at most one of
// Time, LSN, XID, Name or Immediate; none means "replay all archived WAL".
// ParseTarget turns it into a Target.
type TargetSpec struct {
	Time      string // see ParseTime
	LSN       string
	XID       string
	Name      string
	Immediate bool
	Action    string // pause, promote or shutdown; "" = PostgreSQL's default (pause)
	Inclusive *bool  // nil = PostgreSQL's default (true)
	Timeline  string // "latest", "current" or a timeline number; "" = PostgreSQL's default (latest)
}

// TargetKind is what a recovery target stops at.
type TargetKind int

// Target kinds.
const (
	TargetEnd       TargetKind = iota // the end of archived WAL
	TargetTime                        // recovery_target_time
	TargetLSN                         // recovery_target_lsn
	TargetXID                         // recovery_target_xid
	TargetName                        // recovery_target_name (a restore point)
	TargetImmediate                   // recovery_target = immediate: the backup's consistency point
)

// Target actions (recovery_target_action).
const (
	ActionPause    = "pause"
	ActionPromote  = "promote"
	ActionShutdown = "shutdown"
)

// Timeline is recovery_target_timeline.
type Timeline struct {
	Mode   TimelineMode
	Number uint32 // with TimelineNumber
}

// TimelineMode says which timeline recovery follows.
type TimelineMode int

// Timeline modes.
const (
	TimelineDefault TimelineMode = iota // not set: PostgreSQL's default (latest)
	TimelineLatest                      // the newest timeline in the archive
	TimelineCurrent                     // the backup's timeline
	TimelineNumber                      // Timeline.Number
)

// String is the setting's value ("" for the default).
func (tl Timeline) String() string {
	switch tl.Mode {
	case TimelineLatest:
		return "latest"
	case TimelineCurrent:
		return "current"
	case TimelineNumber:
		return strconv.FormatUint(uint64(tl.Number), 10)
	}
	return ""
}

// Target is a parsed recovery target.
type Target struct {
	Kind      TargetKind
	Time      time.Time // TargetTime
	LSN       wal.LSN   // TargetLSN
	XID       uint64    // TargetXID
	Name      string    // TargetName
	Action    string    // "" (PostgreSQL's default: pause), or an Action* constant
	Inclusive *bool     // nil: PostgreSQL's default (true)
	Timeline  Timeline
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

// ParseTarget checks a target as given and parses it.
func ParseTarget(s TargetSpec) (Target, error) {
	var t Target
	n := 0
	for _, set := range []bool{s.Time != "", s.LSN != "", s.XID != "", s.Name != "", s.Immediate} {
		if set {
			n++
		}
	}
	if n > 1 {
		return t, errors.New("give at most one of --target-time, --target-lsn, --target-xid, --target-name, --target-immediate")
	}
	var err error
	switch {
	case s.Time != "":
		t.Kind = TargetTime
		t.Time, err = ParseTime(s.Time)
	case s.LSN != "":
		t.Kind = TargetLSN
		t.LSN, err = wal.ParseLSN(s.LSN)
	case s.XID != "":
		t.Kind = TargetXID
		if t.XID, err = strconv.ParseUint(s.XID, 10, 64); err != nil || t.XID < 3 {
			err = fmt.Errorf("target xid %q: want a transaction id (a number of 3 or more)", s.XID)
		}
	case s.Name != "":
		t.Kind, t.Name = TargetName, s.Name
		if len(s.Name) >= 64 {
			err = fmt.Errorf("target name %q: restore point names are at most 63 bytes", s.Name)
		}
	case s.Immediate:
		t.Kind = TargetImmediate
	}
	if err != nil {
		return Target{}, err
	}
	switch s.Action {
	case "", ActionPause, ActionPromote, ActionShutdown:
		t.Action = s.Action
	default:
		return Target{}, fmt.Errorf("target action %q: want pause, promote or shutdown", s.Action)
	}
	if t.Action != "" && t.Kind == TargetEnd {
		return Target{}, errors.New("--target-action needs a recovery target")
	}
	if s.Inclusive != nil && t.Kind != TargetTime && t.Kind != TargetLSN && t.Kind != TargetXID {
		return Target{}, errors.New("--target-inclusive applies to --target-time, --target-lsn and --target-xid only")
	}
	t.Inclusive = s.Inclusive
	switch s.Timeline {
	case "":
	case "latest":
		t.Timeline.Mode = TimelineLatest
	case "current":
		t.Timeline.Mode = TimelineCurrent
	default:
		tl, err := strconv.ParseUint(s.Timeline, 10, 32)
		if err != nil || tl == 0 {
			return Target{}, fmt.Errorf("target timeline %q: want latest, current or a timeline number", s.Timeline)
		}
		t.Timeline = Timeline{Mode: TimelineNumber, Number: uint32(tl)}
	}
	return t, nil
}

// String names the target for messages: "time 2026-…", "immediate", "end of WAL"...
func (t Target) String() string {
	switch t.Kind {
	case TargetTime:
		return "time " + t.formatTime()
	case TargetLSN:
		return "LSN " + t.LSN.String()
	case TargetXID:
		return "xid " + strconv.FormatUint(t.XID, 10)
	case TargetName:
		return "restore point " + strconv.Quote(t.Name)
	case TargetImmediate:
		return "immediate (end of the backup)"
	}
	return "end of archived WAL"
}

func (t Target) formatTime() string { return t.Time.Format("2006-01-02 15:04:05.999999-07:00") }

// Settings returns the recovery_target_* settings for postgresql.auto.conf,
// in a stable order.
func (t Target) Settings() [][2]string {
	var s [][2]string
	switch t.Kind {
	case TargetTime:
		s = append(s, [2]string{"recovery_target_time", t.formatTime()})
	case TargetLSN:
		s = append(s, [2]string{"recovery_target_lsn", t.LSN.String()})
	case TargetXID:
		s = append(s, [2]string{"recovery_target_xid", strconv.FormatUint(t.XID, 10)})
	case TargetName:
		s = append(s, [2]string{"recovery_target_name", t.Name})
	case TargetImmediate:
		s = append(s, [2]string{"recovery_target", "immediate"})
	}
	if t.Inclusive != nil {
		s = append(s, [2]string{"recovery_target_inclusive", strconv.FormatBool(*t.Inclusive)})
	}
	if t.Action != "" {
		s = append(s, [2]string{"recovery_target_action", t.Action})
	}
	if v := t.Timeline.String(); v != "" {
		s = append(s, [2]string{"recovery_target_timeline", v})
	}
	return s
}
