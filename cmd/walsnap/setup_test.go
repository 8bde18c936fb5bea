package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/config"
)

// resolve runs the real app with a probe command and returns the settings
// it resolves from args (after the program name) and the environment.
func resolve(t *testing.T, args ...string) (config.Config, error) {
	t.Helper()
	app := newApp()
	var got config.Config
	var gotErr error
	app.Commands = append(app.Commands, &cli.Command{Name: "probe", Action: func(c *cli.Context) error {
		got, gotErr = loadConfig(c)
		return nil
	}})
	if err := app.RunContext(context.Background(), append(append([]string{"walsnap"}, args...), "probe")); err != nil {
		t.Fatal(err)
	}
	return got, gotErr
}

func TestPrecedenceFlagsEnvFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "walsnap.yaml")
	os.WriteFile(cfgPath, []byte("repo: file:///from/file\ncompression: gzip\ns3:\n  region: file-region\npush:\n  concurrency: 2\n"), 0o600)

	c, err := resolve(t, "--config", cfgPath)
	if err != nil || c.Repo != "file:///from/file" || c.Compression != "gzip" || c.Push.Concurrency != 2 {
		t.Fatalf("file only: %+v %v", c, err)
	}

	t.Setenv("WALSNAP_REPO", "file:///from/env")
	t.Setenv("WALSNAP_PUSH_CONCURRENCY", "6")
	t.Setenv("WALSNAP_S3_PATH_STYLE", "true")
	c, err = resolve(t, "--config", cfgPath)
	if err != nil || c.Repo != "file:///from/env" || c.Push.Concurrency != 6 || !c.S3.PathStyle || c.Compression != "gzip" {
		t.Fatalf("env over file: %+v %v", c, err)
	}

	c, err = resolve(t, "--config", cfgPath, "--repo", "file:///from/flag", "--push-concurrency", "9", "--fetch-timeout", "7s")
	if err != nil || c.Repo != "file:///from/flag" || c.Push.Concurrency != 9 || c.Fetch.Timeout.String() != "7s" || c.S3.Region != "file-region" {
		t.Fatalf("flags over env and file: %+v %v", c, err)
	}

	t.Setenv("WALSNAP_CONFIG", cfgPath)
	t.Setenv("WALSNAP_REPO", "")
	os.Unsetenv("WALSNAP_REPO")
	c, err = resolve(t)
	if err != nil || c.Repo != "file:///from/file" {
		t.Fatalf("WALSNAP_CONFIG: %+v %v", c, err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("repo: file:///x\npush:\n  concurency: 3\n"), 0o600)
	if _, err := resolve(t, "--config", bad); err == nil {
		t.Fatal("a config file with a misspelt key was accepted")
	}
	open := filepath.Join(dir, "open.yaml")
	os.WriteFile(open, []byte("repo: file:///x\n"), 0o666)
	os.Chmod(open, 0o666)
	if _, err := resolve(t, "--config", open); !errors.Is(err, config.ErrInsecureFile) {
		t.Fatalf("world-writable config: %v", err)
	}
	if _, err := resolve(t, "--config", filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing --config file: %v", err)
	}
	if _, err := resolve(t, "--repo", "ftp://x"); !errors.Is(err, config.ErrBadRepo) {
		t.Fatalf("bad repo: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("upload failed"), 1},
		{usageError{"bad"}, 2},
		{withCode(255, errors.New("checksum mismatch")), 255},
		{fmt.Errorf("wrapped: %w", withCode(1, errors.New("absent"))), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestWalFetchUsage checks that a restore_command misconfiguration is a
// hard failure (not "file absent", which would end recovery quietly).
func TestWalFetchUsage(t *testing.T) {
	err := newApp().RunContext(context.Background(), []string{"walsnap", "--repo", "file:///nonexistent", "wal-fetch", "only-one-arg"})
	if got := exitCode(err); got != 255 {
		t.Fatalf("wal-fetch with one argument: exit %d, want 255", got)
	}
	err = newApp().RunContext(context.Background(), []string{"walsnap", "wal-fetch", "000000010000000000000001", "/tmp/x"})
	if got := exitCode(err); got != 255 {
		t.Fatalf("wal-fetch without a repository: exit %d, want 255", got)
	}
	err = newApp().RunContext(context.Background(), []string{"walsnap", "wal-push"})
	if got := exitCode(err); got != 2 {
		t.Fatalf("wal-push without an argument: exit %d, want 2", got)
	}
}
