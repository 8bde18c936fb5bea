package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/walsnap/walsnap/internal/wal"
)

// StopResult is what stopping a backup returns. BackupLabel and
// TablespaceMap are byte for byte the text PostgreSQL returns (read in the
// database encoding, without client-encoding conversion), to be written as
// backup_label and tablespace_map at restore time. TablespaceMap is "" when
// the cluster has no tablespaces.
type StopResult struct {
	LSN           wal.LSN
	BackupLabel   string
	TablespaceMap string
}

// StartBackup starts a non-exclusive backup on this session:
// pg_backup_start(label, fast) on PostgreSQL 15+, pg_start_backup(label,
// fast, false) before. fast requests an immediate checkpoint. It returns the
// backup's start LSN. The backup lasts until StopBackup on this same
// Session; closing or losing the connection aborts it.
func (s *Session) StartBackup(ctx context.Context, label string, fast bool) (wal.LSN, error) {
	fn, q := "pg_backup_start", "SELECT pg_backup_start($1, $2)::text"
	if s.Major() < 15 {
		fn, q = "pg_start_backup", "SELECT pg_start_backup($1, $2, false)::text"
	}
	var v string
	if err := s.conn.QueryRow(ctx, q, label, fast).Scan(&v); err != nil {
		return 0, fmt.Errorf("%s: %w", fn, err)
	}
	lsn, err := wal.ParseLSN(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", fn, err)
	}
	return lsn, nil
}

// StopBackup stops the non-exclusive backup started by StartBackup on this
// session, waiting until the last WAL segment the backup needs has been
// archived: pg_backup_stop(wait_for_archive => true) on PostgreSQL 15+,
// pg_stop_backup(false, true) before. (On a standby the server waits only
// with archive_mode = always; otherwise it returns at once with a notice.)
func (s *Session) StopBackup(ctx context.Context) (StopResult, error) {
	fn, from := "pg_backup_stop", "pg_backup_stop(wait_for_archive => true)"
	if s.Major() < 15 {
		fn, from = "pg_stop_backup", "pg_stop_backup(false, true)"
	}
	// convert_to(x, <database encoding>) hands over the server's bytes
	// unconverted, e.g. a tablespace path that is not valid UTF-8 in a
	// SQL_ASCII cluster.
	q := `SELECT lsn::text, convert_to(labelfile, getdatabaseencoding()),
		convert_to(coalesce(spcmapfile, ''), getdatabaseencoding()) FROM ` + from
	var lsnText string
	var label, spcmap []byte
	if err := s.conn.QueryRow(ctx, q).Scan(&lsnText, &label, &spcmap); err != nil {
		return StopResult{}, fmt.Errorf("%s: %w", fn, err)
	}
	lsn, err := wal.ParseLSN(lsnText)
	if err != nil {
		return StopResult{}, fmt.Errorf("%s: %w", fn, err)
	}
	if len(label) == 0 {
		return StopResult{}, fmt.Errorf("%s: %w", fn, errors.New("the server returned an empty backup_label"))
	}
	return StopResult{LSN: lsn, BackupLabel: string(label), TablespaceMap: string(spcmap)}, nil
}
