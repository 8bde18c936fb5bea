package basebackup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// commandFixture is a PGDATA whose pg_wal links to another "volume" and a
// tablespace on a third, with a mount table holding all three and decoys.
type commandFixture struct {
	dir, pgdata, wal, ts, mountinfo string
}

func newCommandFixture(t *testing.T) commandFixture {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := commandFixture{
		dir:       dir,
		pgdata:    filepath.Join(dir, "pgdata"),
		wal:       filepath.Join(dir, "wal vol", "pg_wal"),
		ts:        filepath.Join(dir, "tsvol", "ts1"),
		mountinfo: filepath.Join(dir, "mountinfo"),
	}
	for _, d := range []string{f.pgdata, f.wal, f.ts} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(f.wal, filepath.Join(f.pgdata, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	esc := strings.ReplaceAll(dir, " ", `\040`)
	mounts := []string{
		"/",
		esc,                  // holds pgdata
		esc + "/pgd",         // a prefix of pgdata's name, not its parent
		esc + `/wal\040vol`,  // escaped space
		esc + "/tsvol",       // holds the tablespace
		esc + "/tsvol/other", // below the tablespace's mount, not holding it
	}
	var b strings.Builder
	for i, m := range mounts {
		fmt.Fprintf(&b, "%d 1 8:%d / %s rw,relatime shared:%d - ext4 /dev/vd%c rw\n", 20+i, i, m, i, 'a'+i)
	}
	if err := os.WriteFile(f.mountinfo, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f commandFixture) job() *Job {
	return &Job{
		ID:          "20260102T030405Z",
		Label:       "nightly 'snap'",
		PGData:      f.pgdata,
		StartLSN:    0x2000028,
		Tablespaces: []manifest.Tablespace{{OID: 16384, Name: "ts1", Location: f.ts}},
		Log:         slog.New(slog.DiscardHandler),
	}
}

func TestCommandCaptureEnvAndReferences(t *testing.T) {
	f := newCommandFixture(t)
	envOut := filepath.Join(f.dir, "env")
	var stderr bytes.Buffer
	c := &Command{
		Script: `for v in WALSNAP_BACKUP_ID WALSNAP_BACKUP_LABEL WALSNAP_PGDATA WALSNAP_START_LSN WALSNAP_MOUNT_POINTS WALSNAP_TABLESPACES; do
				printf '%s=[%s]\n' $v "$(printenv $v)"
			done > ` + envOut + `
			echo 'progress on stderr' >&2
			printf 'snap-0001\n\n   \nvol 2: snap-0002 \n'`,
		Stderr:    &stderr,
		mountinfo: f.mountinfo,
	}
	got, err := c.Capture(context.Background(), f.job())
	if err != nil {
		t.Fatal(err)
	}
	want := manifest.CommandPayload{Snapshots: []string{"snap-0001", "vol 2: snap-0002 "}, Command: c.Script}
	if !reflect.DeepEqual(got.Payload, want) {
		t.Errorf("payload = %#v, want %#v", got.Payload, want)
	}
	if got.BytesIn != 0 || got.BytesOut != 0 || got.Complete != nil {
		t.Errorf("captured = %+v, want no bytes and no Complete", got)
	}
	if stderr.String() != "progress on stderr\n" {
		t.Errorf("stderr = %q", stderr.String())
	}
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := "WALSNAP_BACKUP_ID=[20260102T030405Z]\n" +
		"WALSNAP_BACKUP_LABEL=[nightly 'snap']\n" +
		"WALSNAP_PGDATA=[" + f.pgdata + "]\n" +
		"WALSNAP_START_LSN=[0/2000028]\n" +
		"WALSNAP_MOUNT_POINTS=[" + f.dir + "\n" + filepath.Dir(f.wal) + "\n" + filepath.Dir(f.ts) + "]\n" +
		"WALSNAP_TABLESPACES=[16384 " + f.ts + "]\n"
	if string(env) != wantEnv {
		t.Errorf("environment:\n%s\nwant:\n%s", env, wantEnv)
	}
}

func TestCommandCaptureMountPointsShared(t *testing.T) {
	// pg_wal inside PGDATA and no tablespaces: one mount point, PGDATA's.
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pgdata := filepath.Join(dir, "data", "pgdata")
	if err := os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(dir, "mountinfo")
	os.WriteFile(info, []byte("1 0 8:1 / / rw - ext4 /dev/vda rw\n2 1 7:0 / "+dir+"/data rw - ext4 /dev/loop0 rw\n"), 0o600)
	got, err := mountPoints(info, []string{pgdata, filepath.Join(pgdata, "pg_wal")})
	if err != nil || !reflect.DeepEqual(got, []string{dir + "/data"}) {
		t.Fatalf("mountPoints = %q, %v", got, err)
	}
}

func TestCommandCaptureFailures(t *testing.T) {
	f := newCommandFixture(t)
	for _, tc := range []struct {
		name, script, want string
	}{
		{"exit status", "echo snap-1; echo 'cannot snapshot' >&2; exit 3", "exit status 3"},
		{"no reference", "echo '  '; true", "printed no snapshot reference"},
		{"empty", "", "command.snapshot is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c := &Command{Script: tc.script, Stderr: &stderr, mountinfo: f.mountinfo}
			_, err := c.Capture(context.Background(), f.job())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}

	t.Run("tablespace with whitespace", func(t *testing.T) {
		job := f.job()
		job.Tablespaces[0].Location = filepath.Join(f.dir, "wal vol")
		_, err := (&Command{Script: "echo x", mountinfo: f.mountinfo}).Capture(context.Background(), job)
		if err == nil || !strings.Contains(err.Error(), "whitespace") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("timeout lets traps run", func(t *testing.T) {
		var stderr bytes.Buffer
		c := &Command{
			Script:    "trap 'echo thawed >&2' EXIT; trap 'exit 1' TERM; echo snap-1; sleep 30",
			Stderr:    &stderr,
			mountinfo: f.mountinfo,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Capture(ctx, f.job())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Capture returned after %v: the script's sleep was not stopped", d)
		}
		if !strings.Contains(stderr.String(), "thawed") {
			t.Errorf("the script's EXIT trap did not run on SIGTERM; stderr %q", stderr.String())
		}
	})
}
