package drill

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
)

// TestServerSettings: the scratch copy's settings keep it away from
// production whatever its configuration says, and the user's --set come
// last; stats_temp_directory only where it exists (13, 14).
func TestServerSettings(t *testing.T) {
	s := serverSettings(15, "/s/pgdata", "/s", "", [][2]string{{"shared_buffers", "1GB"}})
	want := map[string]string{
		"data_directory": "/s/pgdata", "hba_file": "/s/pg_hba.conf", "ident_file": "/s/pg_ident.conf",
		"external_pid_file": "", "archive_mode": "off", "hot_standby": "off", "synchronous_standby_names": "",
		"max_logical_replication_workers": "0", "logging_collector": "off", "log_destination": "stderr", "ssl": "off",
	}
	got := map[string]string{}
	for _, kv := range s {
		got[kv[0]] = kv[1]
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %q (set %v), want %q", k, g, ok, v)
		}
	}
	if _, ok := got["config_file"]; ok {
		t.Error("config_file set without a configuration file to name")
	}
	if _, ok := got["stats_temp_directory"]; ok {
		t.Error("stats_temp_directory set on PostgreSQL 15, which has none")
	}
	if last := s[len(s)-1]; last != [2]string{"shared_buffers", "1GB"} {
		t.Errorf("the user's settings are not last: %v", s)
	}
	s = serverSettings(14, "/s/pgdata", "/s", "/etc/postgresql/14/main/postgresql.conf", nil)
	if s[0] != [2]string{"config_file", "/etc/postgresql/14/main/postgresql.conf"} {
		t.Errorf("config_file is not first: %v", s)
	}
	if !slices.Contains(s, [2]string{"stats_temp_directory", "pg_stat_tmp"}) {
		t.Errorf("no stats_temp_directory of its own on PostgreSQL 14: %v", s)
	}
	for _, name := range []string{"listen_addresses", "Archive_Mode", "data_directory", "port", "hot_standby"} {
		if err := CheckSet(name); err == nil || !strings.Contains(err.Error(), "keep the scratch copy away from production") {
			t.Errorf("CheckSet(%s) = %v", name, err)
		}
	}
	if err := CheckSet("shared_buffers"); err != nil {
		t.Errorf("CheckSet(shared_buffers) = %v", err)
	}
}

// TestRestoredSegments counts the distinct segments a server log says
// were restored, not history files or repeats.
func TestRestoredSegments(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	lines := []string{
		`2026-11-24 10:00:00.000 UTC [1] LOG:  restored log file "00000002.history" from archive`,
		`2026-11-24 10:00:00.100 UTC [1] LOG:  restored log file "000000010000000000000003" from archive`,
		`2026-11-24 10:00:00.200 UTC [1] LOG:  restored log file "000000010000000000000004" from archive`,
		`2026-11-24 10:00:00.300 UTC [1] LOG:  restored log file "000000010000000000000004" from archive`,
		`2026-11-24 10:00:00.400 UTC [1] LOG:  redo done at 0/5000060`,
	}
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := restoredSegments(log); n != 2 {
		t.Errorf("restoredSegments = %d, want 2", n)
	}
	if n := restoredSegments(filepath.Join(t.TempDir(), "none")); n != 0 {
		t.Errorf("restoredSegments of no log = %d", n)
	}
}

// TestWaitUnused finds a process by its working directory and by an
// open file below a directory, and waitUnused waits for it to leave.
func TestWaitUnused(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := fsutil.ProcessesUsing(dir); len(got) != 0 {
		t.Fatalf("processes using a new directory: %v", got)
	}
	byCwd := exec.Command("sleep", "30")
	byCwd.Dir = sub
	held, err := os.Create(filepath.Join(sub, "held"))
	if err != nil {
		t.Fatal(err)
	}
	byFile := exec.Command("sleep", "30")
	byFile.ExtraFiles = []*os.File{held}
	for _, c := range []*exec.Cmd{byCwd, byFile} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	held.Close()
	users := fsutil.ProcessesUsing(dir)
	if len(users) != 2 || !strings.Contains(users[0], "sleep 30") {
		t.Fatalf("processes using %s: %v, want the two sleeps", dir, users)
	}
	if err := waitUnused(t.Context(), dir, 200*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "sleep 30") {
		t.Fatalf("waitUnused with users = %v, want them named", err)
	}
	for _, c := range []*exec.Cmd{byCwd, byFile} {
		c.Process.Kill()
		c.Wait()
	}
	if err := waitUnused(t.Context(), dir, time.Minute, nil); err != nil {
		t.Fatalf("waitUnused once they are gone: %v", err)
	}
}

// TestMountsBelow: the mount points below a directory, deepest first,
// and none below a directory without mounts.
func TestMountsBelow(t *testing.T) {
	if got, err := mountsBelow(t.TempDir()); err != nil || len(got) != 0 {
		t.Fatalf("mountsBelow(a new directory) = %v, %v", got, err)
	}
	got, err := mountsBelow("/")
	if err != nil || len(got) == 0 || got[len(got)-1] != "/" {
		t.Fatalf("mountsBelow(/) = %v, %v: want / last", got, err)
	}
	if !within("/a/b", "/a") || within("/ab", "/a") || !within("/a", "/a") {
		t.Error("within")
	}
}
