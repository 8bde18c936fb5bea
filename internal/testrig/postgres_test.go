package testrig

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWorkDir(t *testing.T) {
	var dir string
	t.Run("create", func(t *testing.T) {
		dir = WorkDir(t)
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if cred, _ := postgresCred(); cred != nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != cred.Uid {
				t.Errorf("%s owned by uid %d, want postgres (%d)", dir, st.Uid, cred.Uid)
			}
			for d := dir; d != "/"; d = filepath.Dir(d) {
				fi, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm()&0o001 == 0 {
					t.Errorf("%s is not traversable by others (mode %v)", d, fi.Mode().Perm())
				}
			}
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work dir %s still there after cleanup (err %v)", dir, err)
	}
}

func TestQuoteConf(t *testing.T) {
	if got, want := quoteConf(`test -f '/x y/%f'`), `'test -f ''/x y/%f'''`; got != want {
		t.Errorf("quoteConf = %s, want %s", got, want)
	}
}

func TestPG15(t *testing.T) {
	work := WorkDir(t)
	archive := filepath.Join(work, "archive")
	if err := os.Mkdir(archive, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chownToPostgres(archive); err != nil {
		t.Fatal(err)
	}
	p := StartPG(t, PGOptions{
		InitDBArgs: []string{"--wal-segsize=32"},
		Conf: map[string]string{
			"archive_mode":    "on",
			"archive_command": `test ! -f '` + archive + `/%f' && echo "$TESTRIG_MARK" > '` + archive + `/%f.mark' && cp %p '` + archive + `/%f'`,
		},
		Env: []string{"TESTRIG_MARK=from-env"},
	})
	if p.Major != 15 || p.BinDir != debianBinDir {
		t.Fatalf("Major %d BinDir %s, want Debian 15", p.Major, p.BinDir)
	}
	if v := p.QueryString(t, "SHOW server_version_num"); !strings.HasPrefix(v, "15") {
		t.Fatalf("server_version_num = %s", v)
	}
	if v := p.QueryString(t, "SHOW wal_segment_size"); v != "32MB" {
		t.Errorf("wal_segment_size = %s, want 32MB (InitDBArgs)", v)
	}
	if v := p.QueryString(t, "SELECT $1::int + 1", 41); v != "42" {
		t.Errorf("QueryString with args = %q", v)
	}
	p.RunAs(t, "pgbench", "-i", "-s", "1", "-q")
	out := p.RunAs(t, "pgbench", "-T", "2", "-c", "2")
	if !strings.Contains(out, "tps = ") {
		t.Errorf("pgbench output has no tps:\n%s", out)
	}

	// archive_command runs as postgres with PGOptions.Env.
	seg := p.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	p.Exec(t, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT pg_switch_wal()")
	waitFile(t, filepath.Join(archive, seg), 30*time.Second)
	if b, err := os.ReadFile(filepath.Join(archive, seg+".mark")); err != nil || strings.TrimSpace(string(b)) != "from-env" {
		t.Errorf("archive_command environment: %q, %v", b, err)
	}

	// Conn, AppendConf + Reload.
	c := p.Conn(t)
	p.AppendConf(t, map[string]string{"work_mem": "7MB"})
	p.Reload(t)
	p.WaitFor(t, 10*time.Second, "7MB", "SHOW work_mem")
	var n int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pgbench_accounts").Scan(&n); err != nil || n != 100000 {
		t.Errorf("pgbench_accounts: %d rows, err %v", n, err)
	}
	c.Close(t.Context())

	// Stop, then wrap the same data directory with a new port.
	p.Stop(t)
	if p.Running() {
		t.Fatal("still running after Stop")
	}
	q := NewPGFromDataDir(t, 0, p.DataDir, nil)
	if q.Port == 0 || q.SockDir == p.SockDir {
		t.Fatalf("NewPGFromDataDir: port %d sockdir %s", q.Port, q.SockDir)
	}
	q.Start(t)
	if v := q.QueryString(t, "SELECT count(*) FROM t"); v != "1" {
		t.Errorf("count after restart = %s", v)
	}
	if !strings.Contains(q.RunAs(t, "pg_controldata"), "in production") {
		t.Error("pg_controldata (PGDATA from env) does not say in production")
	}
	q.StopImmediate(t)
	// Crash recovery works and cleanup stops the server left running.
	q.Start(t)
	if v := q.QueryString(t, "SELECT count(*) FROM t"); v != "1" {
		t.Errorf("count after crash restart = %s", v)
	}
}

// fatalRecorder captures a Fatalf and ends the goroutine, like testing.T.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestPGStartFailureShowsLog(t *testing.T) {
	p := NewPG(t, PGOptions{Conf: map[string]string{"shared_buffers": "not-a-size"}})
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Start(r)
	}()
	<-done
	if !strings.Contains(r.msg, "starting PostgreSQL") || !strings.Contains(r.msg, "shared_buffers") {
		t.Errorf("Start with a bad setting: want a fatal error quoting the server log, got:\n%s", r.msg)
	}
}

func TestPGMajors(t *testing.T) {
	ForEachMajor(t, func(t *testing.T, major int) {
		t.Parallel()
		p := StartPG(t, PGOptions{Major: major})
		if v := p.QueryString(t, "SHOW server_version_num"); !strings.HasPrefix(v, strconv.Itoa(major)) {
			t.Fatalf("server_version_num = %s, want major %d", v, major)
		}
		if !p.HasBin("pgbench") || !p.HasBin("psql") {
			t.Fatal("no pgbench/psql client (Debian's postgresql-client-15 should be the fallback)")
		}
		p.RunAs(t, "pgbench", "-i", "-s", "1", "-q")
		if out := p.RunAs(t, "pgbench", "-T", "1"); !strings.Contains(out, "tps = ") {
			t.Errorf("pgbench output has no tps:\n%s", out)
		}
		if v := strings.TrimSpace(p.RunAs(t, "psql", "-XAtc", "SELECT count(*) FROM pgbench_branches")); v != "1" {
			t.Errorf("psql: %q", v)
		}
		p.Stop(t)
	})
}

func TestFindPGMissing(t *testing.T) {
	t.Setenv("WALSNAP_PG_ROOT", t.TempDir())
	if _, err := findPG(17); err == nil || !strings.Contains(err.Error(), "install-pg.sh 17") {
		t.Errorf("findPG(17) with empty root: %v", err)
	}
	if HavePG(17) {
		t.Error("HavePG(17) with empty root")
	}
}

func TestMajors(t *testing.T) {
	got := Majors()
	want := []int{13, 14, 15, 16, 17, 18}
	if len(got) != len(want) {
		t.Fatalf("Majors() = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Majors() = %v", got)
		}
	}
}

func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
