package restore

import (
	"errors"
	"github.com/walsnap/walsnap/internal/pg"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
)

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 24, 15, 40, 19, 493982000, time.UTC)
	for _, s := range []string{
		"2026-11-24 15:40:19.493982+00",
		"2026-11-24 15:40:19.493982+00:00",
		"2026-11-24T15:40:19.493982Z",
		"2026-11-24 17:40:19.493982+02",
		"2026-11-24 10:40:19.493982-0500",
	} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v", s, got, err)
		}
	}
	local, err := ParseTime("2026-11-24 15:40:19")
	if err != nil || local.Location() != time.Local {
		t.Errorf("zone-less time: %v %v", local, err)
	}
	for _, bad := range []string{"yesterday", "2026-13-01 00:00:00", "15:40"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func TestTargetValidateAndSettings(t *testing.T) {
	yes := true
	tt, err := ParseTarget(TargetSpec{Time: "2026-11-24 15:40:19+00", Action: "promote", Inclusive: &yes, Timeline: "3"})
	if err != nil {
		t.Fatal(err)
	}
	if tt.Kind != TargetTime || tt.Timeline != (Timeline{Mode: TimelineNumber, Number: 3}) || tt.Time.Unix() != 1795534819 {
		t.Fatalf("ParseTarget = %+v", tt)
	}
	got := tt.Settings()
	want := [][2]string{
		{"recovery_target_time", "2026-11-24 15:40:19+00:00"},
		{"recovery_target_inclusive", "true"},
		{"recovery_target_action", "promote"},
		{"recovery_target_timeline", "3"},
	}
	if len(got) != len(want) {
		t.Fatalf("Settings = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d = %v, want %v", i, got[i], want[i])
		}
	}
	for name, bad := range map[string]TargetSpec{
		"two targets":          {Time: "2026-11-24 15:40:19+00", Name: "x"},
		"bad lsn":              {LSN: "0/XYZ"},
		"bad xid":              {XID: "abc"},
		"bad action":           {Name: "x", Action: "resume"},
		"action without":       {Action: "promote"},
		"inclusive with name":  {Name: "x", Inclusive: &yes},
		"bad timeline":         {Timeline: "newest"},
		"long restore point":   {Name: strings.Repeat("n", 64)},
		"immediate and a time": {Immediate: true, Time: "2026-11-24 15:40:19+00"},
	} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	im, err := ParseTarget(TargetSpec{Immediate: true})
	if err != nil || im.Settings()[0] != [2]string{"recovery_target", "immediate"} {
		t.Errorf("immediate: %v %v", im.Settings(), err)
	}
	for spec, want := range map[string]Timeline{"": {}, "latest": {Mode: TimelineLatest}, "current": {Mode: TimelineCurrent}, "12": {Mode: TimelineNumber, Number: 12}} {
		tg, err := ParseTarget(TargetSpec{Timeline: spec})
		if err != nil || tg.Timeline != want || tg.Timeline.String() != spec {
			t.Errorf("timeline %q: %+v %v", spec, tg.Timeline, err)
		}
	}
}

func backup(id string, stop time.Time, stopLSN wal.LSN, status string) *manifest.Manifest {
	return &manifest.Manifest{ID: id, Status: status, SystemID: 7, StopTime: stop, StopLSN: stopLSN, StartLSN: stopLSN - 100}
}

func TestChoose(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	list := []*manifest.Manifest{
		backup("a", t0, 0x1000000, manifest.StatusComplete),
		backup("b", t0.Add(time.Hour), 0x2000000, manifest.StatusComplete),
		backup("c", t0.Add(2*time.Hour), 0x3000000, manifest.StatusFailed),
		backup("d", t0.Add(3*time.Hour), 0x4000000, manifest.StatusComplete),
	}
	pick := func(id string, spec TargetSpec) (string, error) {
		tg, err := ParseTarget(spec)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Choose(list, id, 7, tg)
		if err != nil {
			return "", err
		}
		return m.ID, nil
	}
	for _, tc := range []struct {
		id   string
		tg   TargetSpec
		want string
	}{
		{"", TargetSpec{}, "d"},
		{"LATEST", TargetSpec{Immediate: true}, "d"},
		{"", TargetSpec{Time: "2026-11-24 12:30:00+00"}, "b"},       // c failed, d too late
		{"", TargetSpec{Time: "2026-11-24 11:00:00+00"}, "b"},       // exactly at b's stop
		{"", TargetSpec{Time: "2026-11-24 10:59:59.9+00"}, "a"},     // just before b's stop
		{"", TargetSpec{LSN: "0/3FFFFFF"}, "b"},                     // by LSN
		{"a", TargetSpec{Time: "2026-11-24 15:00:00+00"}, "a"},      // named, later target
		{"", TargetSpec{Name: "anything", Action: "pause"}, "d"},    // names cannot be placed: newest
		{"latest", TargetSpec{XID: "1234", Action: "promote"}, "d"}, // LATEST in any case
	} {
		got, err := pick(tc.id, tc.tg)
		if err != nil || got != tc.want {
			t.Errorf("Choose(%q, %+v) = %s, %v; want %s", tc.id, tc.tg, got, err, tc.want)
		}
	}
	if _, err := pick("", TargetSpec{Time: "2026-11-24 09:00:00+00"}); err == nil || !strings.Contains(err.Error(), "earliest reachable point is 2026-11-24 10:00:00") {
		t.Errorf("target before every backup: %v", err)
	}
	if _, err := pick("d", TargetSpec{Time: "2026-11-24 12:00:00+00"}); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("named backup after the target: %v", err)
	}
	if _, err := pick("c", TargetSpec{}); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("failed backup chosen by name: %v", err)
	}
	if _, err := pick("zzz", TargetSpec{}); !errors.Is(err, manifest.ErrNotFound) {
		t.Errorf("unknown backup: %v", err)
	}
	if _, err := Choose(list, "", 8, Target{}); !errors.Is(err, manifest.ErrNotFound) {
		t.Errorf("backups of another system chosen: %v", err)
	}
}

func TestTablespaceMap(t *testing.T) {
	m := &manifest.Manifest{
		TablespaceMap: "16385 /srv/ts1\n16386 /srv/ts 2\n",
		Tablespaces:   []manifest.Tablespace{{OID: 16385, Location: "/srv/ts1"}, {OID: 16386, Location: "/srv/ts 2"}},
	}
	same := Destinations{Tablespaces: map[uint32]string{16385: "/srv/ts1", 16386: "/srv/ts 2"}}
	if got := tablespaceMap(m, same); got != m.TablespaceMap {
		t.Errorf("unmapped tablespace_map changed: %q", got)
	}
	moved := Destinations{Tablespaces: map[uint32]string{16385: "/new/ts1", 16386: "/srv/ts 2"}}
	if got := tablespaceMap(m, moved); got != "16385 /new/ts1\n16386 /srv/ts 2\n" {
		t.Errorf("mapped tablespace_map = %q", got)
	}
}

func TestWriteAutoConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "postgresql.auto.conf")
	os.WriteFile(p, []byte("# Do not edit this file manually!\nwork_mem = '8MB'\nrestore_command = 'old'\nrecovery_target_time = '2020-01-01'\narchive_mode = 'on'"), 0o600)
	err := writeAutoConf(p, "B1", [][2]string{{"restore_command", `/usr/bin/walsnap --repo 's3://b/p' wal-fetch %f %p`}, {"recovery_target_name", `it's`}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	want := "# Do not edit this file manually!\nwork_mem = '8MB'\n# walsnap restore of backup B1\n" +
		"restore_command = '/usr/bin/walsnap --repo ''s3://b/p'' wal-fetch %f %p'\nrecovery_target_name = 'it''s'\n"
	if string(got) != want {
		t.Fatalf("postgresql.auto.conf:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrepareDir(t *testing.T) {
	dir := t.TempDir()
	if err := prepareDir(filepath.Join(dir, "new", "pgdata"), false); err != nil {
		t.Fatal(err)
	}
	// The server's user must reach the data directory through the parents
	// made for it (under a restore's --mount-root, they belong to root).
	for name, want := range map[string]os.FileMode{"new": 0o755, "new/pgdata": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "base"), 0o700)
	if err := prepareDir(full, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty dir without force: %v", err)
	}
	// A live server's data directory is never emptied, even with force.
	os.WriteFile(filepath.Join(full, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"+full+"\n"), 0o600)
	if err := prepareDir(full, true); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("dir of a running server: %v", err)
	}
	// A pid file copied from elsewhere (a snapshot image) does not count.
	os.WriteFile(filepath.Join(full, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/srv/other/data\n"), 0o600)
	if _, running := pg.RunningPostmaster(full); running {
		t.Fatal("a copied postmaster.pid naming another directory counted as running here")
	}
	os.WriteFile(filepath.Join(full, "postmaster.pid"), []byte("999999999\n"), 0o600)
	if err := prepareDir(full, true); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Fatalf("force left %v", ents)
	}
}

func TestOwnedDirsFollowsWALSymlink(t *testing.T) {
	dir := t.TempDir()
	pgdata, wal, ts := filepath.Join(dir, "data"), filepath.Join(dir, "wal"), filepath.Join(dir, "ts")
	for _, d := range []string{pgdata, wal, ts} {
		os.Mkdir(d, 0o700)
	}
	dest := Destinations{PGData: pgdata, Tablespaces: map[uint32]string{16385: ts}}
	if got := ownedDirs(dest); len(got) != 2 {
		t.Fatalf("without a pg_wal symlink: %v", got)
	}
	os.Symlink(wal, filepath.Join(pgdata, "pg_wal"))
	if got := ownedDirs(dest); len(got) != 3 || got[2] != wal {
		t.Fatalf("with pg_wal -> %s: %v", wal, got)
	}
}
