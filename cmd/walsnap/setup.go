package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/repo"
)

const defaultConfigPath = config.DefaultPath

// resolvedConfigEnv passes the parent's resolved settings to a detached
// child (the prefetcher), so it uses exactly the same repository.
const resolvedConfigEnv = "WALSNAP_RESOLVED_CONFIG"

// globalFlags derives one flag per setting from config.Keys, plus --config.
func globalFlags() []cli.Flag {
	flags := []cli.Flag{&cli.StringFlag{
		Name:    "config",
		Usage:   "YAML config file (default " + defaultConfigPath + " if it exists)",
		EnvVars: []string{"WALSNAP_CONFIG"},
	}}
	for _, k := range config.Keys {
		env := []string{k.Env()}
		switch k.Kind {
		case config.Int:
			flags = append(flags, &cli.IntFlag{Name: k.Flag(), Usage: k.Usage, EnvVars: env})
		case config.Bool:
			flags = append(flags, &cli.BoolFlag{Name: k.Flag(), Usage: k.Usage, EnvVars: env})
		case config.Duration:
			flags = append(flags, &cli.DurationFlag{Name: k.Flag(), Usage: k.Usage, EnvVars: env})
		default:
			flags = append(flags, &cli.StringFlag{Name: k.Flag(), Usage: k.Usage, EnvVars: env})
		}
	}
	return flags
}

// loadConfig resolves the settings: defaults < config file < env < flags.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Default()
	if path := c.String("config"); path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, err
		}
	} else if config.FileExists(defaultConfigPath) {
		if err := cfg.LoadFile(defaultConfigPath); err != nil {
			return cfg, err
		}
	}
	for _, k := range config.Keys {
		if !c.IsSet(k.Flag()) {
			continue
		}
		if err := cfg.Set(k.Name, fmt.Sprint(c.Value(k.Flag()))); err != nil {
			return cfg, usageError{err.Error()}
		}
	}
	return cfg, cfg.Validate()
}

// resolvedConfig reads the settings handed down by a parent walsnap.
func resolvedConfig() (config.Config, error) {
	var cfg config.Config
	if err := json.Unmarshal([]byte(os.Getenv(resolvedConfigEnv)), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", resolvedConfigEnv, err)
	}
	return cfg, cfg.Validate()
}

// newLogger logs to stderr, which PostgreSQL keeps in its server log for
// archive and restore commands. Timestamps are left to that log.
func newLogger(cfg config.Config, command string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h).With("cmd", command)
}

// openRepo opens the configured repository.
func openRepo(ctx context.Context, cfg config.Config) (*repo.Repo, error) {
	return repo.Open(ctx, cfg)
}

// spawnDetached starts this very executable (resolved, not os.Args[0],
// which may be relative to a directory the child does not share) with args,
// in its own session, handing it the resolved settings, and does not wait
// for it. The child's stdout and stderr go to out; extra become fds 3...
func spawnDetached(cfg config.Config, args []string, out *os.File, extra ...*os.File) (pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), resolvedConfigEnv+"="+string(data))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid = cmd.Process.Pid
	return pid, cmd.Process.Release()
}
