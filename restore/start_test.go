package restore

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

// fakeProgram writes an executable shell script.
func fakeProgram(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestFindPGCtl: pg_ctl of the backup's major is found in Debian's and
// PGDG's layouts, then through pg_config --bindir, then on PATH, each of
// the latter only when it is of that major.
func TestFindPGCtl(t *testing.T) {
	root := t.TempDir()
	debian, pgdg := filepath.Join(root, "debian", "%d", "bin"), filepath.Join(root, "pgsql-%d", "bin")
	layouts := []string{debian, pgdg}
	version := func(major int) string { return "echo 'pg_ctl (PostgreSQL) " + strconv.Itoa(major) + ".4 (Debian)'" }
	fakeProgram(t, filepath.Join(root, "debian", "15", "bin", "pg_ctl"), version(15))
	fakeProgram(t, filepath.Join(root, "pgsql-16", "bin", "pg_ctl"), version(16))
	fakeProgram(t, filepath.Join(root, "configured", "pg_ctl"), version(17))
	fakeProgram(t, filepath.Join(root, "path", "pg_config"), "echo "+filepath.Join(root, "configured"))
	fakeProgram(t, filepath.Join(root, "path", "pg_ctl"), version(18))
	t.Setenv("PATH", filepath.Join(root, "path"))

	for major, want := range map[int]string{
		15: filepath.Join(root, "debian", "15", "bin", "pg_ctl"),
		16: filepath.Join(root, "pgsql-16", "bin", "pg_ctl"),
		17: filepath.Join(root, "configured", "pg_ctl"),
		18: filepath.Join(root, "path", "pg_ctl"),
	} {
		if got, err := findPGCtl("", major, layouts); got != want || err != nil {
			t.Errorf("PostgreSQL %d: %s, %v; want %s", major, got, err, want)
		}
	}
	_, err := findPGCtl("", 14, layouts)
	for _, want := range []string{"pg_ctl for PostgreSQL 14 not found", "(PostgreSQL 17)", "(PostgreSQL 18)", "give --pg-bin"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PostgreSQL 14: %v; want it to say %q", err, want)
		}
	}
	if got, err := findPGCtl(filepath.Join(root, "pgsql-16", "bin"), 15, layouts); err != nil || !strings.HasSuffix(got, "pgsql-16/bin/pg_ctl") {
		t.Errorf("--pg-bin wins: %s, %v", got, err)
	}
	if _, err := findPGCtl(root, 15, layouts); err == nil || !strings.Contains(err.Error(), "--pg-bin") {
		t.Errorf("--pg-bin without pg_ctl: %v", err)
	}
}

// TestCheckPort: a port some server answers on, over TCP or its unix
// socket, is refused with the flags that avoid it; a free one is not.
func TestCheckPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	err = CheckPort(busy, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(busy)+" is in use") || !strings.Contains(err.Error(), "--port") || !strings.Contains(err.Error(), "--socket-dir") {
		t.Fatalf("CheckPort(busy TCP port) = %v", err)
	}

	dir := t.TempDir()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	if err := CheckPort(port, dir); err != nil {
		t.Fatalf("CheckPort(free port) = %v", err)
	}
	u, err := net.Listen("unix", filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := CheckPort(port, dir); err == nil || !strings.Contains(err.Error(), ".s.PGSQL.") {
		t.Fatalf("CheckPort(port with a socket in the directory) = %v", err)
	}
	// Without TCP only the socket counts: a server on the same port over
	// TCP (the source, next to a drill) is no conflict.
	if err := checkSocket(port, dir); err == nil || !strings.Contains(err.Error(), ".s.PGSQL."+strconv.Itoa(port)) {
		t.Fatalf("checkSocket(port with a socket in the directory) = %v", err)
	}
	if err := checkSocket(busy, dir); err != nil {
		t.Fatalf("checkSocket(port busy over TCP only) = %v", err)
	}
}

func TestConfiguredPortAndSocketDir(t *testing.T) {
	dir := t.TempDir()
	if got := configuredPort(dir); got != 5432 {
		t.Fatalf("no configuration: port %d", got)
	}
	os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte("#port = 5444\nport = 5433  # the copy's\nunix_socket_directories = '/run/a, /tmp'\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("port = '5434'\n"), 0o600)
	if got := configuredPort(dir); got != 5434 {
		t.Fatalf("configured port %d, want postgresql.auto.conf's 5434", got)
	}
	if got := configuredSocketDir(dir); got != "/run/a" {
		t.Fatalf("configured socket directory %q", got)
	}
}

// TestServerErrorsLeaveOutRefusedConnections: the lines a failed recovery
// shows are the server's own, not clients' refused connection attempts.
func TestServerErrorsLeaveOutRefusedConnections(t *testing.T) {
	log := strings.Join([]string{
		"2026-11-24 15:00:00 UTC [10] LOG:  starting PostgreSQL 15",
		"2026-11-24 15:00:01 UTC [11] FATAL:  the database system is not yet accepting connections",
		"2026-11-24 15:00:01 UTC [11] DETAIL:  Consistent recovery state has not been yet reached.",
		"2026-11-24 15:00:02 UTC [12] FATAL:  the database system is starting up",
		"2026-11-24 15:00:03 UTC [10] FATAL:  recovery ended before configured recovery target was reached",
	}, "\n")
	if got := serverErrors(log); got != "  2026-11-24 15:00:03 UTC [10] FATAL:  recovery ended before configured recovery target was reached" {
		t.Fatalf("serverErrors:\n%s", got)
	}
}

// TestArchiveWarnings: a target past the newest archived segment (by the
// time it was archived, or by its end LSN) draws a warning with the fix.
func TestArchiveWarnings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := repo.New(st)
	const seg = 16 << 20
	at := func(s string) Target {
		tt, err := ParseTarget(TargetSpec{Time: s})
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	lsn := func(s string) Target {
		tt, err := ParseTarget(TargetSpec{LSN: s})
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	w, err := archiveWarnings(ctx, r, at("2026-11-24 15:00:00+00"), seg)
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "no archived WAL segment yet") {
		t.Fatalf("empty repository: %v %v", w, err)
	}
	none, _ := compress.Parse("none")
	key, err := r.PutWAL(ctx, "000000010000000000000003", none, []byte("x"), strings.Repeat("0", 64), 1)
	if err != nil {
		t.Fatal(err)
	}
	archived := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(key)), archived, archived); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target Target
		warn   string
	}{
		{at("2026-11-24 14:59:59+00"), ""},
		{at("2026-11-24 15:00:01+00"), "later than the newest archived WAL segment 000000010000000000000003"},
		{lsn("0/3FFFFFF"), ""},
		{lsn("0/4000000"), "past the end of the newest archived WAL segment (0/4000000)"},
		{Target{Kind: TargetXID, XID: 1000}, ""},
	} {
		w, err := archiveWarnings(ctx, r, tc.target, seg)
		switch {
		case err != nil:
			t.Errorf("%s: %v", tc.target, err)
		case tc.warn == "" && len(w) != 0:
			t.Errorf("%s: warned %q", tc.target, w)
		case tc.warn != "" && (len(w) != 1 || !strings.Contains(w[0], tc.warn) || !strings.Contains(w[0], "SELECT pg_switch_wal()")):
			t.Errorf("%s: warnings %q, want one saying %q and the fix", tc.target, w, tc.warn)
		}
	}
}
