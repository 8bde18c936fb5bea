package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/testrig"
)

// cluster is what every test here starts from: a PostgreSQL primary that
// archives with `walsnap wal-push` into a repository, and the config file
// and environment that every walsnap command of the test runs with.
type cluster struct {
	pg      *testrig.PG
	bin     string        // the walsnap binary under test
	cfg     string        // walsnap.yaml, in a root-owned directory (testrig.ConfigDir)
	work    string        // a work directory of the test, owned by postgres
	repoDir string        // the local repository (file://), or "" for an S3 bucket
	s3      testrig.S3Env // the bucket, when the repository is in S3
	env     []string      // AWS_* for walsnap commands: the bucket's, or clusterOptions.env
}

// clusterOptions shape a cluster; the zero value is PostgreSQL 15
// archiving into a fresh MinIO bucket.
type clusterOptions struct {
	major     int           // PostgreSQL major; 0 is Debian's 15
	initdb    []string      // more initdb arguments, e.g. "--wal-segsize=64"
	dataDir   string        // where initdb puts PGDATA (default: in a new work dir)
	localRepo bool          // a file:// repository under work instead of an S3 bucket
	config    string        // YAML appended to the config file (whole sections)
	env       []string      // more environment for walsnap commands, e.g. moto's AWS_*
	s3        testrig.S3Env // the bucket, when the test has one already (zero: a fresh one)
}

// newCluster starts a primary that archives into the repository. The config
// file names the repository and the primary (pg.host, pg.port), then
// o.config.
func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	c := &cluster{bin: testrig.Walsnap(t), work: testrig.WorkDir(t), env: o.env}
	c.cfg = filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	var repoConf string
	var serverEnv []string
	if o.localRepo {
		c.repoDir = filepath.Join(c.work, "repo")
		repoConf = "repo: file://" + c.repoDir + "\n"
	} else {
		s3 := o.s3
		if s3.Bucket == "" {
			s3 = testrig.S3(t)
		}
		c.s3 = s3
		serverEnv = s3.Environ()
		c.env = append(s3.Environ(), o.env...)
		repoConf = fmt.Sprintf("repo: s3://%s/db\ns3:\n  endpoint: %s\n  path_style: true\n  region: %s\n",
			s3.Bucket, s3.Endpoint, s3.Region)
	}
	c.pg = testrig.NewPG(t, testrig.PGOptions{
		Major:      o.major,
		InitDBArgs: o.initdb,
		DataDir:    o.dataDir,
		Conf: map[string]string{
			"archive_mode":    "on",
			"archive_command": c.bin + " --config " + c.cfg + " wal-push %p",
			"archive_timeout": "0",
		},
		Env: serverEnv,
	})
	if c.repoDir != "" {
		// The local repository belongs to postgres, whose archive_command
		// writes it; walsnap run as root keeps it that way.
		if out, err := c.pg.Command(context.Background(), "/bin/mkdir", c.repoDir).CombinedOutput(); err != nil {
			t.Fatalf("mkdir %s: %v %s", c.repoDir, err, out)
		}
	}
	// Nothing is archived before the first WAL switch, so the config can
	// follow the start, and name the port the server really got.
	c.pg.Start(t)
	conf := fmt.Sprintf("%spg:\n  host: %s\n  port: %d\n%s", repoConf, c.pg.SockDir, c.pg.Port, o.config)
	if err := os.WriteFile(c.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// command is walsnap with the cluster's config and environment.
func (c *cluster) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, append([]string{"--config", c.cfg}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

// run runs walsnap and returns its combined output and error.
func (c *cluster) run(args ...string) (string, error) {
	out, err := c.command(args...).CombinedOutput()
	return string(out), err
}

// walsnap runs walsnap and returns its standard output; failure is fatal.
func (c *cluster) walsnap(t *testing.T, args ...string) string {
	t.Helper()
	cmd := c.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("walsnap %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// fail runs walsnap, which must fail with an output that mentions want.
func (c *cluster) fail(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := c.run(args...)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("walsnap %s: err %v, output %q; want a failure mentioning %q", strings.Join(args, " "), err, out, want)
	}
}

// repo opens the cluster's local repository, to check what walsnap wrote.
func (c *cluster) repo(t *testing.T) *repo.Repo {
	t.Helper()
	st, err := fs.New(c.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	return repo.New(st)
}

// pgbenchAccounts is the row count of pgbench_accounts at scale 5.
const pgbenchAccounts = "500000"

// backupUnderLoad takes a backup (`walsnap backup --fast`) while pgbench
// writes, and returns its id. The load starts before the backup and is
// stopped only after it.
func (c *cluster) backupUnderLoad(t *testing.T) string {
	t.Helper()
	return c.underLoad(t, func() string {
		out := c.walsnap(t, "backup", "--fast")
		t.Logf("backup under load: %s", strings.TrimSpace(out))
		return strings.Fields(out)[1]
	})
}

// underLoad runs backup, which takes a backup and returns its id, while
// pgbench writes (on tables it first creates at scale 5), and returns
// that id. The load starts before the backup and is stopped only after
// it.
func (c *cluster) underLoad(t *testing.T, backup func() string) string {
	t.Helper()
	c.pg.RunAs(t, "pgbench", "-i", "-s", "5", "-q", "postgres")
	load := c.pg.Command(context.Background(), "pgbench", "-T", "600", "-c", "2", "postgres")
	var loadOut bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- load.Wait() }()
	defer func() {
		load.Process.Kill()
		<-ended
	}()
	// Under load once pgbench has committed a transaction.
	c.pg.WaitFor(t, time.Minute, "t", "SELECT EXISTS (SELECT FROM pgbench_history)")
	id := backup()
	select {
	case err := <-ended:
		ended <- err
		t.Fatalf("pgbench ended (%v) before the backup did; the backup was not taken under load\n%s", err, loadOut.String())
	default:
	}
	return id
}

// marks records a recovery target: rows 1..100 committed, then T.
type marks struct {
	time, lsn, xid, name string
}

// goodThenBad commits the rows a restore must bring back, records the
// target in every form, then makes the mistakes a restore must undo, and
// waits until all of it is archived.
func (c *cluster) goodThenBad(t *testing.T) marks {
	t.Helper()
	p := c.pg
	p.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, note text)")
	p.Exec(t, "INSERT INTO t SELECT g, 'good' FROM generate_series(1, 99) g")
	var m marks
	m.xid = p.QueryString(t, "WITH i AS (INSERT INTO t VALUES (100, 'good') RETURNING 1) SELECT txid_current()::text FROM i")
	time.Sleep(1100 * time.Millisecond) // T is a clear second after the last good commit
	m.time = p.QueryString(t, "SELECT now()::text")
	m.name = "before_mistake"
	p.Exec(t, "SELECT pg_create_restore_point('before_mistake')")
	m.lsn = p.QueryString(t, "SELECT pg_current_wal_lsn()::text")
	time.Sleep(1100 * time.Millisecond) // and the mistakes a clear second after T
	p.Exec(t, "INSERT INTO t SELECT g, 'after target' FROM generate_series(101, 150) g")
	p.Exec(t, "UPDATE t SET note = 'bad update'")
	p.Exec(t, "DROP TABLE t")
	c.archiveAll(t)
	return m
}

// archiveAll switches WAL on the primary and waits until everything is
// archived.
func (c *cluster) archiveAll(t *testing.T) {
	t.Helper()
	server{t: t, sock: c.pg.SockDir, port: c.pg.Port}.archiveAll()
}

// restore runs `walsnap restore --pgdata dir --start` with args (the
// target, the backup, ...) and returns the server it started. An empty dir
// is a new data directory in a fresh work dir. The server is stopped at
// cleanup, registered before the restore runs: it runs before the
// cleanups the caller registered earlier (such as unmounting dir).
func (c *cluster) restore(t *testing.T, dir string, args ...string) *restored {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(testrig.WorkDir(t), "data")
	}
	return c.restoreSock(t, dir, filepath.Dir(dir), args...)
}

// restoreSock is restore into dir with the server's socket in sock: for
// a data directory whose path is too long for a socket next to it.
func (c *cluster) restoreSock(t *testing.T, dir, sock string, args ...string) *restored {
	t.Helper()
	r := &restored{server: server{t: t, sock: sock, port: freePort(t)}, dataDir: dir}
	t.Cleanup(func() {
		c.pg.Command(context.Background(), "pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop").Run()
	})
	all := append([]string{"restore", "--pgdata", dir, "--start", "--pg-bin", c.pg.BinDir,
		"--port", strconv.Itoa(r.port), "--socket-dir", r.sock, "--start-timeout", "3m"}, args...)
	r.out = c.walsnap(t, all...)
	t.Logf("restore: %s", strings.TrimSpace(r.out))
	return r
}

// server is a running PostgreSQL, reached over its unix socket.
type server struct {
	t    *testing.T
	sock string
	port int
}

// restored is a server that walsnap restore --start recovered.
type restored struct {
	server
	dataDir string
	out     string // walsnap restore's standard output
}

func (s server) connect(ctx context.Context) *pgx.Conn {
	s.t.Helper()
	cfg, _ := pgx.ParseConfig("")
	cfg.Host, cfg.Port, cfg.User, cfg.Database = s.sock, uint16(s.port), "postgres", "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		s.t.Fatalf("connect to the server on %s port %d: %v", s.sock, s.port, err)
	}
	return conn
}

// query returns the first column of the first row, as text.
func (s server) query(sql string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := s.connect(ctx)
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sql, pgx.QueryResultFormats{pgx.TextFormatCode}).Scan(&v); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func (s server) exec(sql string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := s.connect(ctx)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

// archiveAll switches WAL and waits until everything written so far is
// archived.
func (s server) archiveAll() {
	s.t.Helper()
	last := s.query("SELECT pg_walfile_name(pg_current_wal_lsn())")
	s.exec("SELECT pg_switch_wal()")
	deadline := time.Now().Add(2 * time.Minute)
	for s.query("SELECT coalesce(last_archived_wal >= '"+last+"', false)::text FROM pg_stat_archiver") != "true" {
		if time.Now().After(deadline) {
			s.t.Fatalf("WAL up to %s not archived within 2 minutes", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAtTarget asserts the data is exactly as at the target of goodThenBad,
// with the pgbench tables of backupUnderLoad.
func (r *restored) checkAtTarget() {
	r.t.Helper()
	if got := r.query("SELECT count(*)::text FROM t"); got != "100" {
		r.t.Fatalf("restored t has %s rows, want the 100 committed before the target", got)
	}
	if got := r.query("SELECT count(*)::text FROM t WHERE note <> 'good'"); got != "0" {
		r.t.Fatalf("%s rows changed after the target survived", got)
	}
	if got := r.query("SELECT count(*)::text FROM pgbench_accounts"); got != pgbenchAccounts {
		r.t.Fatalf("pgbench_accounts has %s rows, want %s", got, pgbenchAccounts)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
