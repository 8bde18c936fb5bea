package pg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/walsnap/walsnap/internal/wal"
)

// BackupLabel is the content of a backup_label file, as returned by
// pg_backup_stop (pg_stop_backup before PostgreSQL 15).
type BackupLabel struct {
	StartLSN      wal.LSN // START WAL LOCATION: the backup's redo point
	StartWAL      string  // the segment holding StartLSN, from "(file ...)"
	CheckpointLSN wal.LSN // CHECKPOINT LOCATION
	Method        string  // BACKUP METHOD: "streamed" for non-exclusive backups
	From          string  // BACKUP FROM: "primary" or "standby" ("" when absent; 13's "master" reads as "primary")
	StartTime     string  // START TIME, verbatim (in the server's log_timezone)
	Label         string  // LABEL, the label given to pg_backup_start
	StartTimeline uint32  // START TIMELINE (from StartWAL when the line is absent)
}

// ParseBackupLabel parses backup_label text written by PostgreSQL 13 to 18.
// START WAL LOCATION and CHECKPOINT LOCATION are required; the timeline of
// the START WAL file must agree with START TIMELINE, and the file must be
// the segment holding the start LSN for some valid segment size. Unknown
// lines (such as PostgreSQL 17's INCREMENTAL FROM LSN/TLI) are ignored; a
// known field given twice is an error.
func ParseBackupLabel(text string) (BackupLabel, error) {
	var b BackupLabel
	seen := map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			continue // blank or unknown line
		}
		switch key {
		case "START WAL LOCATION", "CHECKPOINT LOCATION", "BACKUP METHOD", "BACKUP FROM",
			"START TIME", "LABEL", "START TIMELINE":
		default:
			continue
		}
		if seen[key] {
			return BackupLabel{}, fmt.Errorf("backup_label line %d: %s given twice", i+1, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "START WAL LOCATION":
			b.StartLSN, b.StartWAL, err = parseStartWAL(value)
		case "CHECKPOINT LOCATION":
			b.CheckpointLSN, err = wal.ParseLSN(value)
		case "BACKUP METHOD":
			b.Method = value
		case "BACKUP FROM":
			switch value {
			case "primary", "standby":
				b.From = value
			case "master": // PostgreSQL 13
				b.From = "primary"
			default:
				err = errors.New(`want "primary" or "standby"`)
			}
		case "START TIME":
			b.StartTime = value
		case "LABEL":
			b.Label = value
		case "START TIMELINE":
			var tli uint64
			tli, err = strconv.ParseUint(value, 10, 32)
			if err == nil && tli == 0 {
				err = errors.New("timeline 0 does not exist")
			}
			b.StartTimeline = uint32(tli)
		}
		if err != nil {
			return BackupLabel{}, fmt.Errorf("backup_label line %d: %s %q: %w", i+1, key, value, err)
		}
	}
	switch {
	case !seen["START WAL LOCATION"]:
		return BackupLabel{}, errors.New("backup_label has no START WAL LOCATION line")
	case !seen["CHECKPOINT LOCATION"]:
		return BackupLabel{}, errors.New("backup_label has no CHECKPOINT LOCATION line")
	}
	walTLI, _ := strconv.ParseUint(b.StartWAL[:8], 16, 32) // checked by parseStartWAL
	if !seen["START TIMELINE"] {
		b.StartTimeline = uint32(walTLI)
	} else if uint64(b.StartTimeline) != walTLI {
		return BackupLabel{}, fmt.Errorf("backup_label: START TIMELINE %d does not match the timeline of START WAL file %s", b.StartTimeline, b.StartWAL)
	}
	return b, nil
}

// parseStartWAL parses "0/2000028 (file 000000010000000000000002)" and
// checks that the file is the segment holding the LSN for some segment size.
func parseStartWAL(value string) (wal.LSN, string, error) {
	lsnText, rest, ok := strings.Cut(value, " (file ")
	file, ok2 := strings.CutSuffix(rest, ")")
	if !ok || !ok2 {
		return 0, "", errors.New(`want "<LSN> (file <WAL segment>)"`)
	}
	lsn, err := wal.ParseLSN(lsnText)
	if err != nil {
		return 0, "", err
	}
	if k, err := wal.Classify(file); err != nil || k != wal.KindSegment {
		return 0, "", fmt.Errorf("%q is not a WAL segment name", file)
	}
	for size := uint64(1 << 20); size <= 1<<30; size <<= 1 {
		seg, err := wal.ParseSegmentName(file, size)
		if err == nil && seg == wal.SegmentForLSN(seg.TLI, lsn, size) {
			return lsn, file, nil
		}
	}
	return 0, "", fmt.Errorf("WAL file %s does not hold LSN %s for any segment size", file, lsn)
}
