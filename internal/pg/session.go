// Package pg is walsnap's PostgreSQL session: version-aware SQL for base
// backups over one dedicated, non-pooled pgx connection.
//
// A non-exclusive backup lives exactly as long as the connection that
// started it, so a Session is built to stay up: TCP keepalives on, and every
// server-side timeout that could end an idle or long-running session
// (statement_timeout, lock_timeout, idle_in_transaction_session_timeout,
// idle_session_timeout on 14+, transaction_timeout on 17+) disabled for it.
package pg

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
)

// MinMajor is the oldest PostgreSQL major Connect accepts.
const MinMajor = 12

// Defaults applied to a zero ConnConfig field when the libpq environment
// (PGHOST, PGPORT, PGUSER, PGDATABASE) does not set it.
const (
	DefaultHost           = "/var/run/postgresql"
	DefaultPort           = 5432
	DefaultUser           = "postgres"
	DefaultDatabase       = "postgres"
	DefaultConnectTimeout = 10 * time.Second
)

// keepAlive probes an idle TCP connection after 15 s, then every 15 s, and
// gives up after 4 unanswered probes.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 4}

// cancelGrace is how long a cancelled call waits for the server to honour
// the cancel request before the connection is cut.
const cancelGrace = 10 * time.Second

// ConnConfig says how to reach the server. There is deliberately no
// password field: a password comes only from PGPASSWORD or ~/.pgpass (pgx
// reads both), so it never appears in configuration dumps, errors or logs.
// Other libpq variables pgx understands (PGSSLMODE, PGSSLROOTCERT, ...) apply.
//
// This is the one place that knows the connection defaults: a zero field
// takes the libpq environment variable, as every PostgreSQL tool does,
// then the built-in default.
type ConnConfig struct {
	Host           string        // unix socket directory, or host name/IP; "" = $PGHOST, else DefaultHost
	Port           int           // 0 = $PGPORT, else DefaultPort
	User           string        // "" = $PGUSER, else DefaultUser
	Database       string        // "" = $PGDATABASE, else DefaultDatabase
	ConnectTimeout time.Duration // 0 = DefaultConnectTimeout

	// OnNotice, when set, receives the server's notices and warnings, such
	// as pg_backup_stop's "still waiting for all required WAL segments to
	// be archived". It runs on the goroutine that called the Session method.
	OnNotice func(severity, message string)
}

func (c ConnConfig) withDefaults() ConnConfig {
	c.Host = cmp.Or(c.Host, os.Getenv("PGHOST"), DefaultHost)
	if c.Port == 0 {
		c.Port, _ = strconv.Atoi(os.Getenv("PGPORT"))
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	c.User = cmp.Or(c.User, os.Getenv("PGUSER"), DefaultUser)
	c.Database = cmp.Or(c.Database, os.Getenv("PGDATABASE"), DefaultDatabase)
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	return c
}

// String returns the connection target with defaults applied, as
// "host=... port=... user=... dbname=...". It never holds a password and is
// safe to log.
func (c ConnConfig) String() string {
	c = c.withDefaults()
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s",
		quoteDSN(c.Host), c.Port, quoteDSN(c.User), quoteDSN(c.Database))
}

// quoteDSN quotes a keyword/value connection string value when needed.
func quoteDSN(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\\'") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Session is one dedicated connection to a PostgreSQL server. It is not
// safe for concurrent use: nothing else may ever use its connection at the
// same time (no concurrent ping or query), since a non-exclusive backup
// belongs to the connection and a broken connection aborts it.
//
// Cancelling the context of a call in progress cancels that statement on
// the server (pg_cancel_backend-style) and keeps the session: a backup in
// progress survives. If the server does not honour the cancel within 10 s,
// the connection is cut, which aborts the backup.
type Session struct {
	conn       *pgx.Conn
	target     string // ConnConfig.String(), for errors
	versionNum int
}

// Connect opens a Session: one non-pooled connection with TCP keepalives,
// application_name=walsnap and the session timeouts disabled. It refuses
// servers older than MinMajor.
func Connect(ctx context.Context, c ConnConfig) (*Session, error) {
	c = c.withDefaults()
	if c.Port < 1 || c.Port > 65535 {
		return nil, fmt.Errorf("connect to PostgreSQL: invalid port %d", c.Port)
	}
	target := c.String()
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL (%s): %w", target, err)
	}
	cfg.ConnectTimeout = c.ConnectTimeout
	cfg.RuntimeParams["application_name"] = "walsnap"
	dialer := &net.Dialer{KeepAliveConfig: keepAlive} // ignored for unix sockets
	cfg.DialFunc = dialer.DialContext
	// A cancelled call sends the server a cancel request and leaves the
	// session (and its backup) alive; only a server that does not answer
	// within cancelGrace gets its connection cut.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelGrace}
	}
	if c.OnNotice != nil {
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { c.OnNotice(n.Severity, n.Message) }
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL (%s): %w", target, err)
	}
	s := &Session{conn: conn, target: target}
	if err := s.init(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		conn.Close(cctx)
		cancel()
		return nil, fmt.Errorf("PostgreSQL (%s): %w", target, err)
	}
	return s, nil
}

// init reads the server version and disables the session timeouts.
func (s *Session) init(ctx context.Context) error {
	var v string
	if err := s.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')").Scan(&v); err != nil {
		return fmt.Errorf("read server_version_num: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("server_version_num %q: %w", v, err)
	}
	s.versionNum = n
	if s.Major() < MinMajor {
		return fmt.Errorf("PostgreSQL %d is not supported (walsnap needs %d or later)", s.Major(), MinMajor)
	}
	sets := []string{
		"SET statement_timeout = 0",
		"SET lock_timeout = 0",
		"SET idle_in_transaction_session_timeout = 0",
	}
	if s.Major() >= 14 {
		sets = append(sets, "SET idle_session_timeout = 0")
	}
	if s.Major() >= 17 {
		sets = append(sets, "SET transaction_timeout = 0")
	}
	// Without arguments pgx sends this as one simple-protocol query.
	if _, err := s.conn.Exec(ctx, strings.Join(sets, "; ")); err != nil {
		return fmt.Errorf("disable session timeouts: %w", err)
	}
	return nil
}

// Close closes the connection. A backup still in progress on it is aborted
// by the server.
func (s *Session) Close(ctx context.Context) error {
	if err := s.conn.Close(ctx); err != nil {
		return fmt.Errorf("close PostgreSQL connection (%s): %w", s.target, err)
	}
	return nil
}

// VersionNum returns the server's server_version_num, e.g. 150020.
func (s *Session) VersionNum() int { return s.versionNum }

// Major returns the server's major version, e.g. 15.
func (s *Session) Major() int { return s.versionNum / 10000 }

// SystemID returns the cluster's system identifier (pg_control_system()).
// PostgreSQL shows it as a signed bigint; the bits are those of the uint64
// in pg_control and in WAL page headers.
func (s *Session) SystemID(ctx context.Context) (uint64, error) {
	var id int64
	if err := s.conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
		return 0, fmt.Errorf("pg_control_system: %w", err)
	}
	return uint64(id), nil
}

// SegmentSize returns the WAL segment size in bytes (wal_segment_size).
func (s *Session) SegmentSize(ctx context.Context) (uint64, error) {
	var setting, unit string
	err := s.conn.QueryRow(ctx,
		"SELECT setting, coalesce(unit, '') FROM pg_settings WHERE name = 'wal_segment_size'").Scan(&setting, &unit)
	if err != nil {
		return 0, fmt.Errorf("read wal_segment_size: %w", err)
	}
	n, err := strconv.ParseUint(setting, 10, 64)
	mult, ok := map[string]uint64{"": 1, "B": 1, "kB": 1 << 10, "8kB": 8 << 10, "MB": 1 << 20}[unit]
	if err != nil || !ok || !wal.ValidSegmentSize(n*mult) {
		return 0, fmt.Errorf("unexpected wal_segment_size %q (unit %q)", setting, unit)
	}
	return n * mult, nil
}

// DataDirectory returns the server's data_directory.
func (s *Session) DataDirectory(ctx context.Context) (string, error) {
	return s.Setting(ctx, "data_directory")
}

// InRecovery reports whether the server is in recovery (a standby).
func (s *Session) InRecovery(ctx context.Context) (bool, error) {
	var r bool
	if err := s.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
		return false, fmt.Errorf("pg_is_in_recovery: %w", err)
	}
	return r, nil
}

// Now returns the server's clock (clock_timestamp()).
func (s *Session) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("clock_timestamp: %w", err)
	}
	return t, nil
}

// Tablespaces returns the user tablespaces (not pg_default or pg_global)
// with their locations, sorted by OID.
func (s *Session) Tablespaces(ctx context.Context) ([]manifest.Tablespace, error) {
	rows, err := s.conn.Query(ctx, `SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace
		WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	var ts []manifest.Tablespace
	for rows.Next() {
		var t manifest.Tablespace
		if err := rows.Scan(&t.OID, &t.Name, &t.Location); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tablespaces: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return ts, nil
}

// Setting returns the current value of a configuration parameter, as SHOW
// displays it (current_setting).
func (s *Session) Setting(ctx context.Context, name string) (string, error) {
	var v string
	if err := s.conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return v, nil
}

// RecoveryState is where a recovering server is.
type RecoveryState struct {
	InRecovery bool
	Paused     bool   // replay paused (at a target with action pause, or by hand)
	ReplayLSN  string // last replayed location; "" when not known
}

// Recovery reads the server's recovery state.
func (s *Session) Recovery(ctx context.Context) (RecoveryState, error) {
	var st RecoveryState
	var replay *string
	q := "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_is_wal_replay_paused()"
	if s.Major() >= 14 {
		q = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_get_wal_replay_pause_state() = 'paused'"
	}
	err := s.conn.QueryRow(ctx, q).Scan(&st.InRecovery, &replay, &st.Paused)
	if replay != nil {
		st.ReplayLSN = *replay
	}
	if err != nil {
		// pg_is_wal_replay_paused() fails outside recovery on old majors.
		if err2 := s.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&st.InRecovery); err2 == nil && !st.InRecovery {
			return RecoveryState{}, nil
		}
		return st, fmt.Errorf("read the recovery state: %w", err)
	}
	return st, nil
}
