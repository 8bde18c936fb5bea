package testrig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// cmdTimeout bounds every PostgreSQL program the rig runs, so that a wedged
// server fails the test instead of hanging it until the global timeout.
const cmdTimeout = 10 * time.Minute

// PGOptions configures a test cluster.
type PGOptions struct {
	// Major selects the PostgreSQL major: 0 or 15 is Debian's
	// (/usr/lib/postgresql/15/bin); 13, 14, 16, 17 and 18 come from the npm
	// builds under PGRoot(). A major that is not installed is Unavailable.
	Major int
	// InitDBArgs are appended to initdb's arguments (after the rig's
	// defaults, so they win), e.g. "--wal-segsize=64".
	InitDBArgs []string
	// Conf is appended to postgresql.conf before the first start. Values are
	// raw: the rig quotes them (archive_command: "walsnap wal-push %p").
	Conf map[string]string
	// Env is extra environment for the server (inherited by archive_command
	// and restore_command) and for RunAs, e.g. AWS_* for MinIO.
	Env []string
	// DataDir, when set, is where initdb creates the cluster instead of
	// <work dir>/data, e.g. on a filesystem the test mounted. It must be an
	// absolute path that the postgres user can create, or an empty
	// directory it owns.
	DataDir string
}

// PG is a PostgreSQL cluster run as the postgres user (when the tests run as
// root), listening on 127.0.0.1:Port and on a unix socket in SockDir.
type PG struct {
	Major   int    // resolved major (15 for Debian's)
	BinDir  string // directory of initdb, pg_ctl, postgres
	DataDir string
	SockDir string // unix_socket_directories; also the cluster's work dir
	LogFile string // server log (pg_ctl -l), outside DataDir
	Port    int
	Env     []string // PGOptions.Env

	install pgInstall
}

// --- running as the postgres user ---

var (
	pgCredOnce sync.Once
	pgCred     *syscall.Credential // nil: not root, run as ourselves
	pgCredErr  error
)

// postgresCred returns the credential to run PostgreSQL programs with: the
// postgres user's when we are root (the server refuses to run as root), nil
// otherwise.
func postgresCred() (*syscall.Credential, error) {
	pgCredOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			pgCredErr = fmt.Errorf("running as root and no postgres user to run PostgreSQL as: %v", err)
			return
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			pgCredErr = fmt.Errorf("postgres user: %v", err)
			return
		}
		pgCred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	})
	return pgCred, pgCredErr
}

// chownToPostgres gives path (recursively) to the postgres user when root.
func chownToPostgres(path string) error {
	cred, err := postgresCred()
	if err != nil || cred == nil {
		return err
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// workBase is where WorkDir creates directories: $WALSNAP_TEST_WORKDIR or
// /tmp/walsnap-testrig. Unlike t.TempDir() (0700 root), it and all its
// parents are traversable by the postgres user.
func workBase() (string, error) {
	base := os.Getenv("WALSNAP_TEST_WORKDIR")
	if base == "" {
		base = "/tmp/walsnap-testrig"
	}
	base, err := filepath.Abs(base)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(base, 0o755); err != nil {
		return "", err
	}
	for d := filepath.Dir(base); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return "", fmt.Errorf("work dir base %s: parent %s (mode %v) is not traversable by the postgres user; set WALSNAP_TEST_WORKDIR", base, d, fi.Mode().Perm())
		}
		if d == "/" {
			return base, nil
		}
	}
}

// WorkDir returns a fresh directory owned by the postgres user (mode 0755,
// every parent traversable), removed at test cleanup. When the tests do not
// run as root it is just t.TempDir().
func WorkDir(t testing.TB) string {
	t.Helper()
	cred, err := postgresCred()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	if cred == nil {
		return t.TempDir()
	}
	base, err := workBase()
	if err != nil {
		t.Fatalf("testrig.WorkDir: %v", err)
	}
	// Keep names short: unix socket paths are limited to 107 bytes.
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 30 {
		name = name[:30]
	}
	dir, err := os.MkdirTemp(base, name+"-")
	if err != nil {
		t.Fatalf("testrig.WorkDir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("testrig: removing %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testrig.WorkDir: %v", err)
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("testrig.WorkDir: %v", err)
	}
	return dir
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testrig: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// --- creating clusters ---

// NewPG runs initdb (as postgres, trust auth, superuser postgres, UTF8, C
// locale, --no-sync) into <fresh WorkDir>/data (or o.DataDir) and appends
// o.Conf to postgresql.conf. It does not start the server. Cleanup stops the
// server (immediate) if it is running.
func NewPG(t testing.TB, o PGOptions) *PG {
	t.Helper()
	in, err := findPG(o.Major)
	if err != nil {
		Unavailable(t, "%v", err)
	}
	work := WorkDir(t)
	p := &PG{
		Major:   in.major,
		BinDir:  in.binDir,
		DataDir: filepath.Join(work, "data"),
		SockDir: work,
		LogFile: filepath.Join(work, "postgres.log"),
		Port:    freePort(t),
		Env:     slices.Clone(o.Env),
		install: in,
	}
	if o.DataDir != "" {
		p.DataDir = o.DataDir
	}
	t.Cleanup(func() { p.stopIfRunning(t) })
	args := []string{"-D", p.DataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"}
	p.RunAs(t, "initdb", append(args, o.InitDBArgs...)...)
	if len(o.Conf) > 0 {
		p.AppendConf(t, o.Conf)
	}
	return p
}

// StartPG is NewPG followed by Start.
func StartPG(t testing.TB, o PGOptions) *PG {
	t.Helper()
	p := NewPG(t, o)
	p.Start(t)
	return p
}

// NewPGFromDataDir wraps an existing data directory (e.g. a restored one) so
// it can be started, stopped and queried like NewPG's, on a new free port
// with its socket and log in a fresh WorkDir. When root, it hands dataDir to
// the postgres user (chown -R, chmod 0700); every parent of dataDir must be
// traversable by that user. Cleanup stops the server (immediate) if running.
func NewPGFromDataDir(t testing.TB, major int, dataDir string, env []string) *PG {
	t.Helper()
	in, err := findPG(major)
	if err != nil {
		Unavailable(t, "%v", err)
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if cred, _ := postgresCred(); cred != nil {
		for d := filepath.Dir(dataDir); d != "/"; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm()&0o001 == 0 && (st == nil || st.Uid != cred.Uid) {
				t.Fatalf("testrig.NewPGFromDataDir: %s is not reachable by the postgres user: %s has mode %v (use testrig.WorkDir)", dataDir, d, fi.Mode().Perm())
			}
		}
	}
	if err := chownToPostgres(dataDir); err != nil {
		t.Fatalf("testrig.NewPGFromDataDir: %v", err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatalf("testrig.NewPGFromDataDir: %v", err)
	}
	work := WorkDir(t)
	p := &PG{
		Major:   in.major,
		BinDir:  in.binDir,
		DataDir: dataDir,
		SockDir: work,
		LogFile: filepath.Join(work, "postgres.log"),
		Port:    freePort(t),
		Env:     slices.Clone(env),
		install: in,
	}
	t.Cleanup(func() { p.stopIfRunning(t) })
	return p
}

// --- configuration ---

// quoteConf renders a raw value as a postgresql.conf string literal.
func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// AppendConf appends settings to postgresql.conf (later lines win). Values
// are raw and get quoted. A running server needs Reload or a restart.
func (p *PG) AppendConf(t testing.TB, kv map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("\n# added by testrig\n")
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(kv[k]))
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("testrig.AppendConf: %v", err)
	}
	_, err = f.WriteString(b.String())
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatalf("testrig.AppendConf: %v", err)
	}
}

// --- server control ---

// serverOpts are passed with pg_ctl -o so they override postgresql.conf
// without touching the data directory (which may be a restored copy).
func (p *PG) serverOpts() string {
	return fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s'", p.Port, p.SockDir)
}

// Start runs pg_ctl start -w as postgres with the PG's Env. If the port was
// taken meanwhile it retries on another one; any other failure is fatal and
// shows the tail of the server log.
func (p *PG) Start(t testing.TB) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		before := fileSize(p.LogFile)
		out, err := p.run("pg_ctl", "-D", p.DataDir, "-l", p.LogFile, "-w", "-t", "300", "-o", p.serverOpts(), "start")
		if err == nil {
			return
		}
		log := readFrom(p.LogFile, before)
		if attempt < 5 && (strings.Contains(log, "Address already in use") || strings.Contains(log, "could not create any TCP/IP sockets")) {
			t.Logf("testrig: port %d taken, retrying on another", p.Port)
			p.Port = freePort(t)
			continue
		}
		t.Fatalf("testrig: starting PostgreSQL %d in %s: %v\n%s\n--- tail of %s ---\n%s", p.Major, p.DataDir, err, out, p.LogFile, tail(log, 40))
	}
}

// Stop runs pg_ctl stop -m fast -w.
func (p *PG) Stop(t testing.TB) {
	t.Helper()
	p.stop(t, "fast")
}

// StopImmediate runs pg_ctl stop -m immediate -w (a crash, as far as the
// data directory is concerned).
func (p *PG) StopImmediate(t testing.TB) {
	t.Helper()
	p.stop(t, "immediate")
}

// Restart is Stop followed by Start.
func (p *PG) Restart(t testing.TB) {
	t.Helper()
	p.Stop(t)
	p.Start(t)
}

// Reload makes a running server re-read its configuration (pg_ctl reload).
func (p *PG) Reload(t testing.TB) {
	t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.DataDir, "reload"); err != nil {
		t.Fatalf("testrig: pg_ctl reload: %v\n%s", err, out)
	}
}

func (p *PG) stop(t testing.TB, mode string) {
	t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.DataDir, "-m", mode, "-w", "-t", "300", "stop"); err != nil {
		t.Fatalf("testrig: pg_ctl stop -m %s: %v\n%s\n--- tail of %s ---\n%s", mode, err, out, p.LogFile, tail(readFrom(p.LogFile, 0), 20))
	}
}

// Running reports whether the data directory has a live postmaster.
func (p *PG) Running() bool {
	_, err := p.run("pg_ctl", "-D", p.DataDir, "status")
	return err == nil
}

func (p *PG) stopIfRunning(t testing.TB) {
	if _, err := os.Stat(filepath.Join(p.DataDir, "postmaster.pid")); err != nil {
		return
	}
	if !p.Running() {
		return
	}
	if out, err := p.run("pg_ctl", "-D", p.DataDir, "-m", "immediate", "-w", "-t", "60", "stop"); err != nil {
		t.Logf("testrig: cleanup: stopping PostgreSQL in %s: %v\n%s", p.DataDir, err, out)
	}
}

// --- queries ---

// DSN is a pgx/libpq connection string for the server, over TCP.
func (p *PG) DSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", p.Port)
}

func (p *PG) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatalf("testrig: connecting to PostgreSQL %d on port %d: %v", p.Major, p.Port, err)
	}
	return c
}

// Conn opens a connection, closed at test cleanup.
func (p *PG) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	c := p.connect(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// Exec runs sql on a fresh connection; without args, sql may hold several
// statements.
func (p *PG) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	c := p.connect(t)
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("testrig: %s: %v", sql, err)
	}
}

// QueryString runs sql on a fresh connection and returns the first column of
// the first row in PostgreSQL's text form ("" for NULL). No row is fatal.
func (p *PG) QueryString(t testing.TB, sql string, args ...any) string {
	t.Helper()
	s, err := p.queryString(t, sql, args...)
	if err != nil {
		t.Fatalf("testrig: %s: %v", sql, err)
	}
	return s
}

func (p *PG) queryString(t testing.TB, sql string, args ...any) (string, error) {
	t.Helper()
	c := p.connect(t)
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	rows, err := c.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", errors.New("no rows")
	}
	v := string(rows.RawValues()[0])
	rows.Close()
	return v, rows.Err()
}

// WaitFor polls sql (on fresh connections, tolerating connection and query
// errors) until it returns want, failing the test after timeout. Use it for
// servers that become ready asynchronously, e.g. a promotion after PITR.
func (p *PG) WaitFor(t testing.TB, timeout time.Duration, want, sql string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var c *pgx.Conn
		c, err = pgx.Connect(ctx, p.DSN())
		if err == nil {
			var rows pgx.Rows
			rows, err = c.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
			if err == nil {
				got = ""
				if rows.Next() {
					got = string(rows.RawValues()[0])
				}
				rows.Close()
				err = rows.Err()
			}
			c.Close(ctx)
		}
		cancel()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testrig: %s: wanted %q within %v, last got %q (err %v)\n--- tail of %s ---\n%s", sql, want, timeout, got, err, p.LogFile, tail(readFrom(p.LogFile, 0), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// --- programs ---

// HasBin reports whether this major has the PostgreSQL program name. The
// npm builds ship only initdb, pg_ctl and postgres; for psql, pgbench and
// pg_isready Debian's 15 stands in (they work across majors).
func (p *PG) HasBin(name string) bool {
	_, _, ok := p.install.bin(name)
	return ok
}

// env is the environment for PostgreSQL programs: ours without PG*
// variables, HOME in the work dir, LD_LIBRARY_PATH for npm programs,
// client defaults pointing at this server, then p.Env.
func (p *PG) env(npm bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LD_LIBRARY_PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+p.SockDir, "PGHOST="+p.SockDir, "PGPORT="+strconv.Itoa(p.Port),
		"PGUSER=postgres", "PGDATABASE=postgres", "PGDATA="+p.DataDir)
	if npm {
		env = append(env, "LD_LIBRARY_PATH="+p.install.libDir)
	}
	return append(env, p.Env...)
}

// Command returns a command that runs as the postgres user (when root) in
// SockDir with the environment RunAs uses. name is a PostgreSQL program
// (resolved with Bin) or a path, e.g. the walsnap binary.
func (p *PG) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path, npm := name, false
	if !strings.ContainsRune(name, '/') {
		path, npm, _ = p.install.bin(name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = p.SockDir
	cmd.Env = p.env(npm)
	if cred, _ := postgresCred(); cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

// run runs a program as postgres and returns its combined output.
func (p *PG) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := p.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// RunAs runs a PostgreSQL program (see Bin) as the postgres user with PGHOST,
// PGPORT, PGUSER, PGDATABASE and PGDATA set for this cluster, and returns its
// stdout. Failure is fatal and shows the combined output; a program this
// major lacks is Unavailable.
func (p *PG) RunAs(t testing.TB, name string, args ...string) string {
	t.Helper()
	if !strings.ContainsRune(name, '/') && !p.HasBin(name) {
		Unavailable(t, "%s is not available for PostgreSQL %d (the npm builds ship only initdb, pg_ctl and postgres)", name, p.Major)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := p.Command(ctx, name, args...)
	// stdout and stderr are copied by two goroutines: the shared
	// buffer needs a lock.
	var stdout bytes.Buffer
	combined := &lockedBuffer{}
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	cmd.Stderr = combined
	if err := cmd.Run(); err != nil {
		t.Fatalf("testrig: %s %s: %v\n%s", cmd.Path, strings.Join(args, " "), err, combined.String())
	}
	return stdout.String()
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// --- log helpers ---

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns path's content from offset on ("" if unreadable).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
