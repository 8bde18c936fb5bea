package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/walsnap/walsnap/internal/wal"
)

// Databases lists the databases that accept connections (datallowconn),
// by name.
func (s *Session) Databases(ctx context.Context) ([]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return names, nil
}

// LastReplayLSN returns where recovery last replayed WAL
// (pg_last_wal_replay_lsn()); after a promotion, where recovery ended.
// ok is false on a server that never recovered.
func (s *Session) LastReplayLSN(ctx context.Context) (lsn wal.LSN, ok bool, err error) {
	var text *string
	if err := s.conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&text); err != nil {
		return 0, false, fmt.Errorf("pg_last_wal_replay_lsn: %w", err)
	}
	if text == nil {
		return 0, false, nil
	}
	lsn, err = wal.ParseLSN(*text)
	return lsn, err == nil, err
}

// ErrCheckFailed is the error of a check query that ran but did not
// pass (see Check).
var ErrCheckFailed = errors.New("check failed")

// Check runs sql, one or more statements sent as one query (simple
// protocol: they run in one transaction unless they hold their own
// transaction control), and judges what each returns: a statement that
// returns rows must return at least one, and where its first column is
// boolean, true in every row. A statement that returns no rows at all
// (SET, CREATE TEMP TABLE) passes when it succeeds. A check that ran but
// did not pass is an error matching ErrCheckFailed that says which
// statement and why; a statement that fails is the server's error.
func (s *Session) Check(ctx context.Context, sql string) error {
	mrr := s.conn.PgConn().Exec(ctx, sql)
	var failed error
	n := 1
	for ; mrr.NextResult(); n++ {
		rr := mrr.ResultReader()
		fields := rr.FieldDescriptions()
		rows := 0
		for rr.NextRow() {
			rows++
			if failed != nil || len(fields) == 0 || fields[0].DataTypeOID != pgtype.BoolOID {
				continue
			}
			if v := rr.Values()[0]; v == nil || string(v) != "t" {
				got := "NULL"
				if v != nil {
					got = "false"
				}
				failed = fmt.Errorf("%w: statement %d: %s is %s in row %d", ErrCheckFailed, n, fields[0].Name, got, rows)
			}
		}
		if _, err := rr.Close(); err != nil {
			mrr.Close()
			return fmt.Errorf("statement %d: %w", n, err)
		}
		if failed == nil && len(fields) > 0 && rows == 0 {
			failed = fmt.Errorf("%w: statement %d returned no rows", ErrCheckFailed, n)
		}
	}
	// A statement that fails before it describes its rows (an error of
	// planning, such as 1/0 folded) ends the results: it is statement n.
	if err := mrr.Close(); err != nil {
		return fmt.Errorf("statement %d: %w", n, err)
	}
	return failed
}
