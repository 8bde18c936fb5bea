package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/callstamp"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/walrec"
)

const defaultConfigPath = callstamp.DefaultConfigPath

// resolvedConfigEnv passes the parent's resolved settings to a detached
// child (the prefetcher), so it uses exactly the same repository.
const resolvedConfigEnv = "WALSNAP_RESOLVED_CONFIG"

// settingsCategory heads the settings in the help of the app and of each
// command that reads them.
const settingsCategory = "SETTINGS (before or after the command; each also a WALSNAP_* variable, --s3-path-style is\n   WALSNAP_S3_PATH_STYLE, and a config file key, s3.path_style)"

// settingFlags returns one flag per setting, derived from config.Keys, plus
// --config. The app has them (walsnap --pgdata X restore) and so has each
// command that reads settings (walsnap restore --pgdata X; see
// withSettings): the same definitions, each occurrence its own flag. The
// environment variables are read by config.LoadEnv, not by the flags, so
// that a flag on the command line always wins (see flagValue). Help shows
// each default once: the real one, from config.Default, or what applies
// instead (config.Key.Help).
func settingFlags() []cli.Flag {
	flags := []cli.Flag{&cli.StringFlag{
		Name:        "config",
		Category:    settingsCategory,
		Usage:       "YAML config file, also WALSNAP_CONFIG",
		DefaultText: defaultConfigPath + " when it exists",
	}}
	for _, k := range config.Keys {
		usage, def := k.Help()
		switch k.Kind {
		case config.Int:
			flags = append(flags, &cli.IntFlag{Name: k.Flag(), Usage: usage, Category: settingsCategory, DefaultText: def})
		case config.Bool:
			flags = append(flags, &cli.BoolFlag{Name: k.Flag(), Usage: usage, Category: settingsCategory, DefaultText: def, DisableDefaultText: def == ""})
		case config.Duration:
			flags = append(flags, &cli.DurationFlag{Name: k.Flag(), Usage: usage, Category: settingsCategory, DefaultText: def})
		default:
			flags = append(flags, &cli.StringFlag{Name: k.Flag(), Usage: usage, Category: settingsCategory, DefaultText: def})
		}
	}
	return flags
}

// withSettings gives cmd the setting flags, after its own.
func withSettings(cmd *cli.Command) *cli.Command {
	cmd.Flags = append(cmd.Flags, settingFlags()...)
	return cmd
}

// flagValue returns the value of flag name as given on the command line,
// after the command or else before it; ok is false when neither has it.
func flagValue(c *cli.Context, name string) (value string, ok bool) {
	for _, ctx := range c.Lineage() {
		if slices.Contains(ctx.LocalFlagNames(), name) {
			return fmt.Sprint(ctx.Value(name)), true
		}
	}
	return "", false
}

// configFile is the config file to read: --config, else WALSNAP_CONFIG;
// else the default path, which is read only when it exists (explicit
// false).
func configFile(c *cli.Context, environ []string) (path string, explicit bool) {
	if p, ok := flagValue(c, "config"); ok && p != "" {
		return p, true
	}
	for _, kv := range environ {
		if p, ok := strings.CutPrefix(kv, "WALSNAP_CONFIG="); ok && p != "" {
			path = p
		}
	}
	if path != "" {
		return path, true
	}
	return defaultConfigPath, false
}

// loadConfig resolves the settings: defaults < config file < WALSNAP_*
// environment < flags, then PGDATA for a pgdata still unset. It warns (on
// stderr, one line each) about WALSNAP_* environment variables that are
// no setting, such as a misspelt one, which would otherwise be ignored
// without a word.
func loadConfig(c *cli.Context) (cfg config.Config, err error) {
	environ := os.Environ()
	defer func() {
		run.cfg = cfg
		warnUnknownEnv(cfg, c.Command.Name, environ)
	}()
	cfg = config.Default()
	if path, explicit := configFile(c, environ); explicit || config.FileExists(path) {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.LoadEnv(environ); err != nil {
		return cfg, err
	}
	for _, k := range config.Keys {
		v, ok := flagValue(c, k.Flag())
		if !ok {
			continue
		}
		if err := cfg.Set(k.Name, v); err != nil {
			return cfg, usageError{msg: err.Error(), err: err}
		}
	}
	if err := cfg.DefaultFromPostgres(environ); err != nil {
		return cfg, err
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
	env := []string{resolvedConfigEnv + "=" + string(data)}
	if in, ok := callInputs(run.command); ok {
		data, err := json.Marshal(in)
		if err != nil {
			panic(err) // strings always marshal
		}
		env = append(env, settingsCallEnv+"="+string(data))
	}
	return env
}

// settingsCallEnv passes a wal-push or wal-fetch call's callstamp.Inputs
// to the helper it starts: the helper stamps its records with them (see
// walsnap-pg), and leaves when they stamp differently later (the config
// file changed).
const settingsCallEnv = "WALSNAP_SETTINGS_CALL"

// callInputs returns this process's callstamp.Inputs when it runs command
// as a wal-push or wal-fetch call that callstamp takes apart the way the
// command line was parsed.
func callInputs(command string) (callstamp.Inputs, bool) {
	cwd, err := os.Getwd()
	if err != nil {
		return callstamp.Inputs{}, false
	}
	call, ok := callstamp.Parse(os.Args, os.Environ(), cwd)
	if !ok || call.Stamp == "" || call.Command != command || !slices.Equal(call.Files, run.args) {
		return callstamp.Inputs{}, false
	}
	return callstamp.Inputs{Argv: os.Args, Cwd: cwd}, true
}

// callStamp is the settings stamp of this wal-push or wal-fetch call ("" if
// it cannot be taken).
func callStamp(command string) string {
	in, ok := callInputs(command)
	if !ok {
		return ""
	}
	return in.Stamp(os.Environ())
}

// helperSettings returns, in a helper, the stamp of the settings of the
// call that started it and a function that takes that stamp again now
// (nil when the call had none).
func helperSettings() (string, func() string) {
	var in callstamp.Inputs
	if json.Unmarshal([]byte(os.Getenv(settingsCallEnv)), &in) != nil || len(in.Argv) == 0 {
		return "", nil
	}
	restamp := func() string { return in.Stamp(os.Environ()) }
	return restamp(), restamp
}

// logHint is how a helper with settings cfg logs, for its records.
func logHint(cfg config.Config) walrec.Log {
	return walrec.Log{Format: string(cfg.Log.Format), Info: configuredLevel(cfg) <= slog.LevelInfo}
}

// resolvedConfig reads the settings handed down by a parent walsnap.
func resolvedConfig() (cfg config.Config, err error) {
	defer func() { run.cfg = cfg }()
	if err := json.Unmarshal([]byte(os.Getenv(resolvedConfigEnv)), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", resolvedConfigEnv, err)
	}
	return cfg, cfg.Validate()
}

// newLogger logs to stderr. Under archive_command and restore_command
// that is PostgreSQL's server log, which has its own timestamps; every
// other command (run by hand, from a timer or by an orchestrator) stamps
// its lines.
func newLogger(cfg config.Config, command string) *slog.Logger {
	return newLoggerLevel(cfg, command, configuredLevel(cfg))
}

// underPostgres reports whether PostgreSQL runs the command (as
// archive_command or restore_command, or as their helper), so that its
// stderr is the server log.
func underPostgres(command string) bool {
	return command == "wal-push" || command == "wal-fetch" || command == "wal-prefetch" || command == "wal-archiver"
}

// configuredLevel is cfg's log level.
func configuredLevel(cfg config.Config) slog.Level { return slog.Level(cfg.Log.Level) }

// logOutput is where loggers write; a variable for tests.
var logOutput io.Writer = os.Stderr

// newLoggerLevel is newLogger at the given level.
func newLoggerLevel(cfg config.Config, command string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if underPostgres(command) {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	var h slog.Handler = slog.NewTextHandler(logOutput, opts)
	if cfg.Log.Format == config.LogJSON {
		h = slog.NewJSONHandler(logOutput, opts)
	}
	return slog.New(h).With("cmd", command)
}

// openRepo opens the configured repository, with its encryption keys.
func openRepo(ctx context.Context, cfg config.Config) (*repo.Repo, error) {
	r, err := repo.Open(ctx, cfg.Repo, cfg.S3)
	if err == nil {
		r.SetEncryption(cfg.Encryption)
	}
	return r, err
}

// openExistingRepo opens the configured repository, which must exist,
// with its encryption keys.
func openExistingRepo(ctx context.Context, cfg config.Config) (*repo.Repo, error) {
	r, err := repo.OpenExisting(ctx, cfg.Repo, cfg.S3)
	if err == nil {
		r.SetEncryption(cfg.Encryption)
	}
	return r, err
}
