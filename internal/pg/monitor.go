package pg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/wal"
)

// ArchiveSettings are the server settings that decide whether, how and
// how often WAL is archived, as the server has them in force.
type ArchiveSettings struct {
	WALLevel       string
	ArchiveMode    string
	ArchiveCommand string // "(disabled)" while archive_mode is off
	ArchiveLibrary string // "" before PostgreSQL 15
	ArchiveTimeout time.Duration
	InRecovery     bool
}

// ArchiveSettings reads the archiving settings, each on its own, for a
// report that judges them one by one (CheckArchiving judges them at once).
func (s *Session) ArchiveSettings(ctx context.Context) (ArchiveSettings, error) {
	var a ArchiveSettings
	var timeoutSec int64
	q := `SELECT current_setting('wal_level'), current_setting('archive_mode'), current_setting('archive_command'),
		(SELECT setting::bigint FROM pg_settings WHERE name = 'archive_timeout'), pg_is_in_recovery()`
	if s.Major() >= 15 {
		q += ", current_setting('archive_library')"
		if err := s.conn.QueryRow(ctx, q).Scan(&a.WALLevel, &a.ArchiveMode, &a.ArchiveCommand, &timeoutSec, &a.InRecovery, &a.ArchiveLibrary); err != nil {
			return a, fmt.Errorf("read archiving settings: %w", err)
		}
	} else if err := s.conn.QueryRow(ctx, q).Scan(&a.WALLevel, &a.ArchiveMode, &a.ArchiveCommand, &timeoutSec, &a.InRecovery); err != nil {
		return a, fmt.Errorf("read archiving settings: %w", err)
	}
	a.ArchiveTimeout = time.Duration(timeoutSec) * time.Second // pg_settings' unit is s
	return a, nil
}

// IsWalsnapPush reports whether an archive_command runs walsnap wal-push
// with the file's path (%p).
func IsWalsnapPush(command string) bool { return isWalsnapPush(command) }

// ArchiverStats is the server's pg_stat_archiver: what its archiver has
// done since the statistics were last reset. Zero times and empty names
// mean "never".
type ArchiverStats struct {
	ArchivedCount    int64
	LastArchivedWAL  string
	LastArchivedTime time.Time
	FailedCount      int64
	LastFailedWAL    string
	LastFailedTime   time.Time
	StatsReset       time.Time
}

// ArchiverStats reads pg_stat_archiver.
func (s *Session) ArchiverStats(ctx context.Context) (ArchiverStats, error) {
	var st ArchiverStats
	var lastTime, failedTime, reset *time.Time
	err := s.conn.QueryRow(ctx, `SELECT archived_count, coalesce(last_archived_wal, ''), last_archived_time,
		failed_count, coalesce(last_failed_wal, ''), last_failed_time, stats_reset FROM pg_stat_archiver`).
		Scan(&st.ArchivedCount, &st.LastArchivedWAL, &lastTime, &st.FailedCount, &st.LastFailedWAL, &failedTime, &reset)
	if err != nil {
		return st, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	st.LastArchivedTime, st.LastFailedTime, st.StatsReset = orZero(lastTime), orZero(failedTime), orZero(reset)
	return st, nil
}

// orZero is *t, or the zero time for NULL.
func orZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// WALPosition is where a primary writes WAL now.
type WALPosition struct {
	LSN     wal.LSN     // pg_current_wal_lsn()
	Segment wal.Segment // the segment holding it, on the server's timeline
}

// CurrentWAL returns the server's current WAL write position. It fails on
// a standby, which writes no WAL of its own.
func (s *Session) CurrentWAL(ctx context.Context, segSize uint64) (WALPosition, error) {
	var lsnText, name string
	err := s.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").Scan(&lsnText, &name)
	if err != nil {
		return WALPosition{}, fmt.Errorf("read the current WAL position: %w", err)
	}
	lsn, err := wal.ParseLSN(lsnText)
	if err != nil {
		return WALPosition{}, fmt.Errorf("pg_current_wal_lsn: %w", err)
	}
	// pg_walfile_name() names the segment before a position on a
	// segment boundary: only its timeline is taken.
	seg, err := wal.ParseSegmentName(name, segSize)
	if err != nil {
		return WALPosition{}, fmt.Errorf("pg_walfile_name: %w", err)
	}
	return WALPosition{LSN: lsn, Segment: wal.SegmentForLSN(seg.TLI, lsn, segSize)}, nil
}

// SwitchWAL makes the server finish its current WAL segment and hand it
// to the archiver, and returns that segment's file name. It first writes
// a small WAL record (a logical decoding message, which nothing consumes),
// so that there is always a segment to finish: on an idle server
// pg_switch_wal() alone does nothing.
func (s *Session) SwitchWAL(ctx context.Context) (string, error) {
	if _, err := s.conn.Exec(ctx, "SELECT pg_logical_emit_message(false, 'walsnap', 'check')"); err != nil {
		return "", fmt.Errorf("write a WAL record: %w", err)
	}
	var name string
	// pg_walfile_name() of the switch's end names the segment it finished.
	if err := s.conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&name); err != nil {
		return "", fmt.Errorf("pg_switch_wal: %w", err)
	}
	return strings.TrimSpace(name), nil
}
