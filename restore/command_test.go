package restore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

func commandManifest(payload string) *manifest.Manifest {
	return &manifest.Manifest{
		ID:          "20260102T030405Z",
		Provider:    "command",
		PGData:      "/srv/pg/15/main",
		Tablespaces: []manifest.Tablespace{{OID: 16384, Name: "ts1", Location: "/srv/ts1"}},
		Payload:     []byte(payload),
	}
}

const twoSnapshots = `{"snapshots": ["vg0/pgdata@snap-1", "vg1/ts@snap-1"], "command": "/usr/local/bin/snap"}`

func TestCommandPlan(t *testing.T) {
	c := &Command{Script: "/usr/local/bin/unsnap", Log: slog.New(slog.DiscardHandler)}
	dest := Destinations{PGData: "/restore/pgdata", Tablespaces: map[uint32]string{16384: "/restore/ts1"}}
	lines, err := c.Plan(context.Background(), commandManifest(twoSnapshots), dest)
	if err != nil {
		t.Fatal(err)
	}
	want := `run command.restore "/usr/local/bin/unsnap" on the snapshots that "/usr/local/bin/snap" printed:
  snapshot vg0/pgdata@snap-1
  snapshot vg1/ts@snap-1
  data directory → /restore/pgdata (was /srv/pg/15/main)
  tablespace ts1 (oid 16384, was /srv/ts1) → /restore/ts1`
	if got := strings.Join(lines, "\n"); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}

	for _, tc := range []struct {
		name, script, payload, want string
	}{
		{"no command.restore", "", twoSnapshots, "set command.restore"},
		{"no snapshots", "x", `{"snapshots": [], "command": "x"}`, "lists no snapshots"},
		{"bad payload", "x", `[1]`, "command payload"},
	} {
		c := &Command{Script: tc.script}
		if _, err := c.Plan(context.Background(), commandManifest(tc.payload), dest); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	spaced := Destinations{PGData: "/restore/pgdata", Tablespaces: map[uint32]string{16384: "/restore/ts 1"}}
	if _, err := c.Plan(context.Background(), commandManifest(twoSnapshots), spaced); err == nil || !strings.Contains(err.Error(), "whitespace") {
		t.Errorf("tablespace path with a space: err = %v", err)
	}
}

func TestCommandMaterialize(t *testing.T) {
	dir := t.TempDir()
	dest := Destinations{PGData: filepath.Join(dir, "pgdata"), Tablespaces: map[uint32]string{16384: filepath.Join(dir, "ts1")}}
	for _, d := range []string{dest.PGData, dest.Tablespaces[16384]} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	envOut := filepath.Join(dir, "env")
	var out bytes.Buffer
	c := &Command{
		Script: `for v in WALSNAP_BACKUP_ID WALSNAP_SNAPSHOTS WALSNAP_PGDATA WALSNAP_SOURCE_PGDATA WALSNAP_TABLESPACES; do
				printf '%s=[%s]\n' $v "$(printenv $v)"
			done > ` + envOut + `
			echo 15 > "$WALSNAP_PGDATA/PG_VERSION"
			mkdir "$(printf '%s\n' "$WALSNAP_TABLESPACES" | cut -d' ' -f3)/PG_15_202209061"
			echo 'attached /dev/loop7'; echo 'mounted' >&2`,
		Cleanup: `printf '%s %s\n' "$WALSNAP_BACKUP_ID" "$WALSNAP_PGDATA" > ` + filepath.Join(dir, "cleaned"),
		Output:  &out,
		Log:     slog.New(slog.DiscardHandler),
	}
	built, err := c.Materialize(context.Background(), commandManifest(twoSnapshots), dest)
	if err != nil {
		t.Fatal(err)
	}
	if built.Cleanup != c.Cleanup || len(built.Steps) != 1 || built.Steps[0].Name != "command.restore" {
		t.Errorf("built %+v, want command.cleanup and the command.restore step", built)
	}
	if _, err := os.Stat(filepath.Join(dir, "cleaned")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("command.cleanup ran before Undo: %v", err)
	}
	if err := built.Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "cleaned")); err != nil || string(got) != "20260102T030405Z "+dest.PGData+"\n" {
		t.Errorf("command.cleanup wrote %q (%v), want the backup id and WALSNAP_PGDATA", got, err)
	}
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	want := "WALSNAP_BACKUP_ID=[20260102T030405Z]\n" +
		"WALSNAP_SNAPSHOTS=[vg0/pgdata@snap-1\nvg1/ts@snap-1]\n" +
		"WALSNAP_PGDATA=[" + dest.PGData + "]\n" +
		"WALSNAP_SOURCE_PGDATA=[/srv/pg/15/main]\n" +
		"WALSNAP_TABLESPACES=[16384 /srv/ts1 " + dest.Tablespaces[16384] + "]\n"
	if string(env) != want {
		t.Errorf("environment:\n%s\nwant:\n%s", env, want)
	}
	if out.String() != "attached /dev/loop7\nmounted\n" {
		t.Errorf("output = %q, want the script's stdout and stderr", out.String())
	}
}

func TestCommandMaterializeFailures(t *testing.T) {
	for _, tc := range []struct {
		name, script, want string
	}{
		{"exit status", "echo 'no such snapshot' >&2; exit 4", "exit status 4"},
		{"no data directory", "true", "left no data directory"},
		{"no tablespace", `echo 15 > "$WALSNAP_PGDATA/PG_VERSION"`, "left tablespace ts1 empty or absent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := Destinations{PGData: dir, Tablespaces: map[uint32]string{16384: filepath.Join(dir, "ts1")}}
			cleaned := filepath.Join(t.TempDir(), "cleaned")
			c := &Command{Script: tc.script, Cleanup: "touch " + cleaned, Output: &bytes.Buffer{}, Log: slog.New(slog.DiscardHandler)}
			built, err := c.Materialize(context.Background(), commandManifest(twoSnapshots), dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) || built != nil {
				t.Fatalf("err = %v, built %v; want it to mention %q", err, built, tc.want)
			}
			if _, err := os.Stat(cleaned); err != nil {
				t.Errorf("command.cleanup did not run after the failure: %v", err)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		var out bytes.Buffer
		c := &Command{Script: "trap 'echo detached >&2; exit 1' TERM; sleep 30", Output: &out, Log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Materialize(ctx, commandManifest(twoSnapshots), Destinations{PGData: t.TempDir()})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Materialize returned after %v", d)
		}
		if !strings.Contains(out.String(), "detached") {
			t.Errorf("the script's TERM trap did not run; output %q", out.String())
		}
	})
}
