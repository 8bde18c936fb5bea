package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

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
// It warns (on stderr, one line each) about WALSNAP_* environment variables
// that are no setting, such as a misspelt one, which would otherwise be
// ignored without a word.
func loadConfig(c *cli.Context) (cfg config.Config, err error) {
	defer func() { warnUnknownEnv(cfg, c.Command.Name, os.Environ()) }()
	cfg = config.Default()
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
			return cfg, usageError{err.Error(), err}
		}
	}
	return cfg, cfg.Validate()
}

// warnUnknownEnv logs one warning per unknown WALSNAP_* variable in
// environ, in the configured log format, whatever the log level. It runs
// even when the settings are refused, as a misspelt variable may be why.
// Under archive_command and restore_command the lines go to PostgreSQL's
// log, which is where such a mistake has to be seen.
func warnUnknownEnv(cfg config.Config, command string, environ []string) {
	unknown := config.UnknownEnv(environ)
	if len(unknown) == 0 {
		return
	}
	log := newLoggerLevel(cfg, command, min(configuredLevel(cfg), slog.LevelWarn))
	for _, u := range unknown {
		if u.Near != "" {
			log.Warn("unknown environment variable ignored", "var", u.Name, "did_you_mean", u.Near)
		} else {
			log.Warn("unknown environment variable ignored", "var", u.Name)
		}
	}
}

// childEnv hands a detached walsnap helper (the prefetcher, the backup
// holder) this process's resolved settings, so that it uses exactly the
// same repository and options.
func childEnv(cfg config.Config) []string {
	data, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a Config always marshals
	}
	return []string{resolvedConfigEnv + "=" + string(data)}
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
	return newLoggerLevel(cfg, command, configuredLevel(cfg))
}

// configuredLevel is cfg's log level.
func configuredLevel(cfg config.Config) slog.Level { return slog.Level(cfg.Log.Level) }

// logOutput is where loggers write; a variable for tests.
var logOutput io.Writer = os.Stderr

// newLoggerLevel is newLogger at the given level.
func newLoggerLevel(cfg config.Config, command string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var h slog.Handler = slog.NewTextHandler(logOutput, opts)
	if cfg.Log.Format == config.LogJSON {
		h = slog.NewJSONHandler(logOutput, opts)
	}
	return slog.New(h).With("cmd", command)
}

// openRepo opens the configured repository.
func openRepo(ctx context.Context, cfg config.Config) (*repo.Repo, error) {
	return repo.Open(ctx, cfg.Repo, cfg.S3)
}
