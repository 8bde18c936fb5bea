package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// ctxFor returns a context that ends with the test (bounded, so a wedged
// server fails instead of hanging).
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a Session to p over its unix socket (tcp false) or
// 127.0.0.1, closed at cleanup.
func connect(t *testing.T, p *testrig.PG, tcp bool, onNotice func(severity, msg string)) *Session {
	t.Helper()
	c := ConnConfig{Host: p.SockDir, Port: p.Port, OnNotice: onNotice}
	if tcp {
		c.Host = "127.0.0.1"
	}
	s, err := Connect(ctxFor(t), c)
	if err != nil {
		t.Fatalf("Connect(%s): %v", c, err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// archivingPG starts a cluster of the given major that archives with cp
// into a fresh directory, with every session timeout the server has set to
// 1s, so that only a Session that disables them survives a backup.
func archivingPG(t *testing.T, major int, initdbArgs ...string) (p *testrig.PG, archive string) {
	t.Helper()
	archive = testrig.WorkDir(t)
	conf := map[string]string{
		"archive_mode":                        "on",
		"archive_command":                     "cp %p '" + archive + "/%f'",
		"statement_timeout":                   "1s",
		"lock_timeout":                        "1s",
		"idle_in_transaction_session_timeout": "1s",
	}
	if major >= 14 {
		conf["idle_session_timeout"] = "1s"
	}
	if major >= 17 {
		conf["transaction_timeout"] = "1s"
	}
	return testrig.StartPG(t, testrig.PGOptions{Major: major, Conf: conf, InitDBArgs: initdbArgs}), archive
}

func TestMajors(t *testing.T) {
	testrig.ForEachMajor(t, func(t *testing.T, major int) {
		t.Parallel()
		p, archive := archivingPG(t, major)
		s := connect(t, p, false, nil)
		tsDir := testrig.WorkDir(t) // lives as long as the cluster

		t.Run("connect", func(t *testing.T) { testConnect(t, p, s, major) })
		t.Run("identity", func(t *testing.T) { testIdentity(t, p, s) })
		t.Run("backup", func(t *testing.T) { testBackup(t, p, s, tsDir, archive) })
		t.Run("check", func(t *testing.T) { testCheckArchiving(t, p, s) }) // last: breaks archiving
	})
}

func testConnect(t *testing.T, p *testrig.PG, s *Session, major int) {
	ctx := ctxFor(t)
	tcp := connect(t, p, true, nil)
	want, err := strconv.Atoi(p.QueryString(t, "SHOW server_version_num"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Session{"unix": s, "tcp": tcp} {
		if s.VersionNum() != want || s.Major() != major {
			t.Errorf("%s: VersionNum %d Major %d, want %d and %d", name, s.VersionNum(), s.Major(), want, major)
		}
		settings := map[string]string{
			"application_name":                    "walsnap",
			"statement_timeout":                   "0",
			"lock_timeout":                        "0",
			"idle_in_transaction_session_timeout": "0",
		}
		if major >= 14 {
			settings["idle_session_timeout"] = "0"
		}
		if major >= 17 {
			settings["transaction_timeout"] = "0"
		}
		for k, v := range settings {
			if got, err := s.Setting(ctx, k); err != nil || got != v {
				t.Errorf("%s: Setting(%s) = %q, %v; want %q", name, k, got, err, v)
			}
		}
	}
	if _, err := s.Setting(ctx, "no_such_setting"); err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("Setting(no_such_setting) error = %v", err)
	}

	// TCP keepalives are on, probing after 15s.
	tc, ok := tcp.conn.PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Fatalf("TCP session runs over %T", tcp.conn.PgConn().Conn())
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var serr error
	raw.Control(func(fd uintptr) {
		on, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if serr == nil {
			idle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		}
	})
	if serr != nil || on != 1 || idle != 15 {
		t.Errorf("TCP keepalive: SO_KEEPALIVE=%d TCP_KEEPIDLE=%d (%v), want 1 and 15", on, idle, serr)
	}

	// A cancelled call leaves the session and its backup alive.
	if _, err := tcp.StartBackup(ctx, "cancel", false); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = tcp.conn.Exec(cctx, "SELECT pg_sleep(5)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" || time.Since(began) > 3*time.Second {
		t.Fatalf("pg_sleep(5) with a 200ms context: %v after %v, want a query_canceled error at once", err, time.Since(began))
	}
	if _, err := tcp.StopBackup(ctx); err != nil {
		t.Errorf("StopBackup after a cancelled call: %v", err)
	}
}

func testIdentity(t *testing.T, p *testrig.PG, s *Session) {
	ctx := ctxFor(t)
	id, err := s.SystemID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.ParseInt(p.QueryString(t, "SELECT system_identifier FROM pg_control_system()"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if id != uint64(want) || id == 0 {
		t.Errorf("SystemID = %d, want %d", id, uint64(want))
	}
	if size, err := s.SegmentSize(ctx); err != nil || size != 16<<20 {
		t.Errorf("SegmentSize = %d, %v; want 16 MiB", size, err)
	}
	if dir, err := s.DataDirectory(ctx); err != nil || dir != p.DataDir {
		t.Errorf("DataDirectory = %q, %v; want %q", dir, err, p.DataDir)
	}
	if r, err := s.InRecovery(ctx); err != nil || r {
		t.Errorf("InRecovery = %v, %v; want false", r, err)
	}
	if now, err := s.Now(ctx); err != nil || time.Since(now).Abs() > time.Minute {
		t.Errorf("Now = %v, %v; local clock %v", now, err, time.Now())
	}
	if ts, err := s.Tablespaces(ctx); err != nil || len(ts) != 0 {
		t.Errorf("Tablespaces on a fresh cluster = %v, %v; want none", ts, err)
	}
}

// testBackup runs a backup of a cluster with a tablespace, idling past the
// server's 1s session timeouts in the middle.
func testBackup(t *testing.T, p *testrig.PG, s *Session, tsDir, archive string) {
	ctx := ctxFor(t)
	p.Exec(t, "CREATE TABLESPACE walsnap_ts LOCATION '"+tsDir+"'")
	p.Exec(t, "CREATE TABLE in_ts TABLESPACE walsnap_ts AS SELECT generate_series(1, 100) AS i")
	oid, err := strconv.ParseUint(p.QueryString(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'walsnap_ts'"), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := s.Tablespaces(ctx)
	if want := []manifest.Tablespace{{OID: uint32(oid), Name: "walsnap_ts", Location: tsDir}}; err != nil || !slices.Equal(ts, want) {
		t.Errorf("Tablespaces = %v, %v; want %v", ts, err, want)
	}

	// A plain connection that idles as long as the backup does is cut by
	// idle_session_timeout (14+): proof that the setting is in force.
	var plainErr error
	var wg sync.WaitGroup
	if s.Major() >= 14 {
		plain := p.Conn(t)
		wg.Go(func() {
			time.Sleep(3 * time.Second)
			_, plainErr = plain.Exec(ctx, "SELECT 1")
		})
	}

	label := "walsnap test " + t.Name()
	start, err := s.StartBackup(ctx, label, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartBackup(ctx, label, true); err == nil {
		t.Error("a second StartBackup on the same session succeeded")
	}
	if s.Major() >= 14 {
		time.Sleep(3 * time.Second)
	}
	p.Exec(t, "INSERT INTO in_ts SELECT generate_series(1, 100)")
	res, err := s.StopBackup(ctx)
	if err != nil {
		t.Fatalf("StopBackup: %v\n--- server log ---\n%s", err, tailFile(p.LogFile))
	}
	wg.Wait()
	if s.Major() >= 14 && plainErr == nil {
		t.Error("a plain connection survived 3s idle under idle_session_timeout = 1s: the test proves nothing")
	}

	t.Logf("PostgreSQL %d backup_label:\n%s", s.Major(), res.BackupLabel)
	t.Logf("PostgreSQL %d tablespace_map: %q", s.Major(), res.TablespaceMap)
	saveSample(t, fmt.Sprintf("pg%d.primary", s.Major()), res.BackupLabel)
	bl, err := ParseBackupLabel(res.BackupLabel)
	if err != nil {
		t.Fatalf("ParseBackupLabel: %v\n%s", err, res.BackupLabel)
	}
	seg := wal.SegmentForLSN(1, start, 16<<20).Name(16 << 20)
	if bl.StartLSN != start || bl.StartWAL != seg || bl.StartTimeline != 1 || bl.Method != "streamed" ||
		bl.From != "primary" || bl.Label != label || bl.CheckpointLSN < start || bl.StartTime == "" {
		t.Errorf("label %+v: want start %v in %s on timeline 1, streamed from primary, label %q", bl, start, seg, label)
	}
	if res.LSN < start {
		t.Errorf("stop LSN %v < start LSN %v", res.LSN, start)
	}
	if want := fmt.Sprintf("%d %s\n", oid, tsDir); res.TablespaceMap != want {
		t.Errorf("tablespace_map = %q, want %q", res.TablespaceMap, want)
	}

	// wait_for_archive: the backup history file is archived by now, and
	// ParseBackupLabel reads it too (its STOP lines are ignored).
	hist := filepath.Join(archive, wal.SegmentForLSN(1, start, 16<<20).Name(16<<20)+
		fmt.Sprintf(".%08X.backup", uint64(start)%(16<<20)))
	b, err := os.ReadFile(hist)
	if err != nil {
		t.Fatalf("backup history file not archived when StopBackup returned: %v", err)
	}
	saveSample(t, fmt.Sprintf("pg%d.backup", s.Major()), string(b))
	if hl, err := ParseBackupLabel(string(b)); err != nil || hl != bl {
		t.Errorf("ParseBackupLabel(history file) = %+v, %v; want %+v", hl, err, bl)
	}
	// The session is still usable, and a second backup works.
	if _, err := s.StartBackup(ctx, "again", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StopBackup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StopBackup(ctx); err == nil {
		t.Error("StopBackup without a backup in progress succeeded")
	}
}

// setConf changes settings with ALTER SYSTEM and reloads, waiting until s
// sees the change.
func setConf(t *testing.T, p *testrig.PG, s *Session, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		p.Exec(t, fmt.Sprintf("ALTER SYSTEM SET %s = %s", k, confValue(v)))
	}
	p.Exec(t, "SELECT pg_reload_conf()")
	deadline := time.Now().Add(10 * time.Second)
	for k, v := range kv {
		for {
			got, err := s.Setting(ctxFor(t), k)
			if err != nil {
				t.Fatal(err)
			}
			if got == v {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is still %q after reload, want %q", k, got, v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func wantRefusal(t *testing.T, s *Session, wantIn ...string) {
	t.Helper()
	warnings, err := s.CheckArchiving(ctxFor(t))
	var ae *ArchivingError
	if !errors.As(err, &ae) {
		t.Fatalf("CheckArchiving = %q, %v; want an *ArchivingError", warnings, err)
	}
	for _, w := range wantIn {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("CheckArchiving error %q does not mention %q", err, w)
		}
	}
	t.Logf("refused: %v", err)
}

func testCheckArchiving(t *testing.T, p *testrig.PG, s *Session) {
	ctx := ctxFor(t)
	cmd, err := s.Setting(ctx, "archive_command")
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, s, "archive_command is '"+strings.ReplaceAll(cmd, "'", "''")+"'", "walsnap wal-push")

	good := "/usr/local/bin/walsnap --config /x wal-push %p"
	setConf(t, p, s, map[string]string{"archive_command": good})
	if w, err := s.CheckArchiving(ctx); err != nil || len(w) != 0 {
		t.Errorf("CheckArchiving with %q = %q, %v; want accepted", good, w, err)
	}
	for _, bad := range []string{"walsnap wal-push", "walsnap wal-push %%p", "/usr/bin/wal-g wal-push %p", "walsnap wal-fetch %f %p"} {
		setConf(t, p, s, map[string]string{"archive_command": bad})
		wantRefusal(t, s, "archive_command")
	}
	if s.Major() >= 15 {
		setConf(t, p, s, map[string]string{"archive_command": good, "archive_library": "basic_archive"})
		wantRefusal(t, s, "archive_library is 'basic_archive'")
		setConf(t, p, s, map[string]string{"archive_library": ""})
	}

	// Settings that need a restart; the session dies with it.
	p.Exec(t, "ALTER SYSTEM SET archive_mode = off")
	p.Restart(t)
	s = connect(t, p, true, nil)
	wantRefusal(t, s, "archive_mode is 'off'")

	p.Exec(t, "ALTER SYSTEM SET wal_level = minimal")
	p.Exec(t, "ALTER SYSTEM SET max_wal_senders = 0")
	p.Restart(t)
	s = connect(t, p, false, nil)
	wantRefusal(t, s, "wal_level is 'minimal'", "archive_mode is 'off'")
}

// TestStandby takes a backup from a streaming standby (PostgreSQL 15, whose
// Debian build has pg_basebackup) of a cluster with 64 MiB WAL segments.
func TestStandby(t *testing.T) {
	t.Parallel()
	const major = testrig.DebianMajor
	primary, _ := archivingPG(t, major, "--wal-segsize=64")
	dataDir := filepath.Join(testrig.WorkDir(t), "data")
	primary.RunAs(t, "pg_basebackup", "-D", dataDir, "-R", "-c", "fast", "-X", "stream", "--no-sync")
	standby := testrig.NewPGFromDataDir(t, major, dataDir, nil)
	standby.Start(t)

	ctx := ctxFor(t)
	ps := connect(t, primary, true, nil)
	var mu sync.Mutex
	var notices []string
	s := connect(t, standby, true, func(sev, msg string) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, sev+": "+msg)
	})

	for name, s := range map[string]*Session{"primary": ps, "standby": s} {
		if size, err := s.SegmentSize(ctx); err != nil || size != 64<<20 {
			t.Errorf("%s: SegmentSize = %d, %v; want 64 MiB", name, size, err)
		}
	}
	if r, err := s.InRecovery(ctx); err != nil || !r {
		t.Fatalf("standby InRecovery = %v, %v", r, err)
	}
	pid, err1 := ps.SystemID(ctx)
	sid, err2 := s.SystemID(ctx)
	if err := errors.Join(err1, err2); err != nil || pid != sid {
		t.Errorf("SystemID primary %d standby %d (%v)", pid, sid, err)
	}

	// archive_mode = on: the standby archives nothing; walsnap accepts it
	// with warnings (here also about its cp archive_command).
	warnings, err := s.CheckArchiving(ctx)
	if err != nil || len(warnings) != 2 || !strings.Contains(warnings[0], "primary must archive") {
		t.Errorf("CheckArchiving on a standby with archive_mode = on = %q, %v", warnings, err)
	}
	t.Logf("standby warnings: %q", warnings)

	// Give the standby a checkpoint to make a restartpoint from.
	primary.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 10000) AS i")
	primary.Exec(t, "CHECKPOINT")
	target := primary.QueryString(t, "SELECT pg_current_wal_lsn()::text")
	standby.WaitFor(t, 30*time.Second, "t", "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target)

	start, err := s.StartBackup(ctx, "walsnap standby", true)
	if err != nil {
		t.Fatal(err)
	}
	primary.Exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
	res, err := s.StopBackup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL %d standby backup_label:\n%s", major, res.BackupLabel)
	t.Logf("notices: %q", notices)
	saveSample(t, fmt.Sprintf("pg%d.standby", major), res.BackupLabel)
	bl, err := ParseBackupLabel(res.BackupLabel)
	if err != nil {
		t.Fatal(err)
	}
	if bl.From != "standby" || bl.StartLSN != start || bl.Label != "walsnap standby" || res.LSN < start ||
		bl.StartWAL != wal.SegmentForLSN(1, start, 64<<20).Name(64<<20) {
		t.Errorf("standby backup: label %+v, start %v, stop %v", bl, start, res.LSN)
	}
	if res.TablespaceMap != "" {
		t.Errorf("tablespace_map = %q, want empty", res.TablespaceMap)
	}
}

func TestConnConfigString(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	t.Setenv("PGPASSWORD", pw)
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE"} {
		t.Setenv(v, "")
	}
	for _, tc := range []struct {
		c    ConnConfig
		want string
	}{
		{ConnConfig{}, "host=/var/run/postgresql port=5432 user=postgres dbname=postgres"},
		{ConnConfig{Host: "db.example.com", Port: 6432, User: "backup", Database: "app"}, "host=db.example.com port=6432 user=backup dbname=app"},
		{ConnConfig{Host: "/tmp/a b", User: `o'k\`}, `host='/tmp/a b' port=5432 user='o\'k\\' dbname=postgres`},
	} {
		got := tc.c.String()
		if got != tc.want || strings.Contains(got, pw) {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		// pgx reads it back as meant (and takes the password from the
		// environment, not from the string).
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Fatal(err)
		}
		d := tc.c.withDefaults()
		if cfg.Host != d.Host || int(cfg.Port) != d.Port || cfg.User != d.User || cfg.Database != d.Database || cfg.Password != pw {
			t.Errorf("pgx parses %q as host %q port %d user %q db %q", got, cfg.Host, cfg.Port, cfg.User, cfg.Database)
		}
	}

	// A failed connection names the target, never the password.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Connect(context.Background(), ConnConfig{Host: "127.0.0.1", Port: port, ConnectTimeout: 2 * time.Second})
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "port="+strconv.Itoa(port)) {
		t.Errorf("Connect to a closed port: %v", err)
	}
	if _, err := Connect(context.Background(), ConnConfig{Port: 70000}); err == nil {
		t.Error("Connect with port 70000 succeeded")
	}
}

// TestLibpqEnvironment: the libpq variables are the defaults beneath
// walsnap's own settings, as for every PostgreSQL tool (issue 12).
func TestLibpqEnvironment(t *testing.T) {
	t.Setenv("PGHOST", "/tmp")
	t.Setenv("PGPORT", "5499")
	t.Setenv("PGUSER", "backup")
	t.Setenv("PGDATABASE", "app")
	if got := (ConnConfig{}).String(); got != "host=/tmp port=5499 user=backup dbname=app" {
		t.Errorf("from the environment: %s", got)
	}
	if got := (ConnConfig{Host: "db1", Port: 5432, User: "u", Database: "d"}).String(); got != "host=db1 port=5432 user=u dbname=d" {
		t.Errorf("settings above the environment: %s", got)
	}
}

func TestLocalServer(t *testing.T) {
	dir := t.TempDir()
	if _, ok := RunningPostmaster(dir); ok {
		t.Fatal("no postmaster.pid, yet running")
	}
	// A live process, but the pid file names another data directory (a
	// copy taken with a snapshot): not running here.
	os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(fmt.Sprintf("%d\n/elsewhere\n", os.Getpid())), 0o600)
	if _, ok := RunningPostmaster(dir); ok {
		t.Fatal("a postmaster.pid of another directory counted")
	}
	os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), dir)), 0o600)
	if pid, ok := RunningPostmaster(dir); !ok || pid != os.Getpid() {
		t.Fatal("a live postmaster of this directory not seen")
	}
	if ProcessAlive(0) || !ProcessAlive(1) {
		t.Error("ProcessAlive")
	}
	if _, _, err := OSUser("no-such-user-walsnap"); err == nil {
		t.Error("OSUser of a missing user")
	}
	if uid, _, err := OSUser("root"); err != nil || uid != 0 {
		t.Errorf("OSUser(root) = %d, %v", uid, err)
	}
}

// saveSample writes a backup_label sample to $WALSNAP_TEST_SAVE_LABELS, if
// set, to refresh testdata/backup_label.
func saveSample(t *testing.T, name, text string) {
	if dir := os.Getenv("WALSNAP_TEST_SAVE_LABELS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// tailFile returns the end of a log file, for failure messages.
func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
