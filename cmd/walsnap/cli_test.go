package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestRestoreCommandLine: the restore_command a restore writes carries
// the config file it used and every setting wal-fetch reads that came from
// a flag (before or after the command) or a WALSNAP_* variable, since the
// restored server runs without this shell's environment; nothing else.
func TestRestoreCommandLine(t *testing.T) {
	clearUnknownEnv(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "walsnap.yaml")
	os.WriteFile(cfgPath, []byte("repo: file:///from/file\nfetch:\n  concurrency: 3\n"), 0o600)
	t.Setenv("WALSNAP_S3_ENDPOINT", "http://127.0.0.1:9000")
	t.Setenv("WALSNAP_PG_PORT", "5444")
	var got string
	app := newApp()
	app.Commands = append(app.Commands, withSettings(&cli.Command{Name: "probe", Action: func(c *cli.Context) error {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		got, err = restoreCommandLine(c, cfg)
		return err
	}}))
	args := []string{"walsnap", "--config", cfgPath, "--fetch-prefetch", "2", "probe", "--s3-path-style", "--pg-host", "/tmp"}
	if err := app.RunContext(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	want := exe + " --config " + cfgPath + " --s3-endpoint=http://127.0.0.1:9000 --s3-path-style=true --fetch-prefetch=2 wal-fetch %f %p"
	if got != want {
		t.Fatalf("restore_command:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(got, "pg-") || strings.Contains(got, "concurrency") {
		t.Fatalf("restore_command carries settings wal-fetch does not read, or the file's: %s", got)
	}
}
