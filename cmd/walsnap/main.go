// Command walsnap archives PostgreSQL WAL to S3 or a local repository and
// restores it; see README.md.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newApp().RunContext(ctx, os.Args)
	stop()
	os.Exit(exitCode(err))
}

// run is what this process knows of the command it runs, for the final
// error line: which command, and its resolved settings (the log format).
// newApp resets it; a process runs one app.
var run struct {
	command string
	args    []string // the command's arguments
	cfg     config.Config
}

func newApp() *cli.App {
	run.command, run.args, run.cfg = "", nil, config.Config{}
	commands := []*cli.Command{walPushCommand(), walFetchCommand(), backupCommand(), backupListCommand(), restoreCommand(), drillCommand(),
		backupStartCommand(), backupStopCommand(), verifyCommand(), checkCommand(), statusCommand(), deleteCommand(), backupPinCommand(), versionCommand(), completionCommand(), manCommand(), helpCommand(),
		walPrefetchCommand(), walArchiverCommand(), backupHoldCommand()}
	for _, cmd := range commands {
		tidyHelp(cmd.Flags)
		cmd.HideHelpCommand = true // "walsnap help CMD" and "walsnap CMD --help"
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = onUsageError(2)
		}
		cmd.Before = func(c *cli.Context) error {
			run.command, run.args = c.Command.Name, c.Args().Slice()
			return nil
		}
	}
	return &cli.App{
		Name:  "walsnap",
		Usage: "continuous WAL archiving and point-in-time recovery for PostgreSQL",
		Description: "Settings come from flags (before or after the command), then WALSNAP_*\n" +
			"environment variables, then the YAML config file (--config, default " + defaultConfigPath + "\n" +
			"when it exists); pgdata defaults to $PGDATA, and pg.host, pg.port, pg.user and\n" +
			"pg.database to PGHOST, PGPORT, PGUSER and PGDATABASE. AWS credentials come from\n" +
			"the AWS SDK's default chain (environment, shared config, instance profile);\n" +
			"walsnap never takes them as flags. 'walsnap help COMMAND' shows a command's options.",
		// cli.HelpFlag too: with a help command of its own, the app adds none.
		Flags:                append(settingFlags(), &cli.BoolFlag{Name: "version", Usage: "print the version and exit", DisableDefaultText: true}, cli.HelpFlag),
		Commands:             commands,
		HideHelpCommand:      true, // helpCommand instead
		EnableBashCompletion: true,
		Action:               rootAction,
		OnUsageError:         onUsageError(2),
		ExitErrHandler:       func(*cli.Context, error) {}, // main maps errors to exit codes
	}
}

// tidyHelp makes the help of a command's own flags show each default once:
// a usage that ends in "(default: X)" gets X as the flag's default text
// instead of the flag's zero value; a boolean that is off by default shows
// none.
func tidyHelp(flags []cli.Flag) {
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.BoolFlag:
			f.DisableDefaultText = f.DisableDefaultText || !f.Value
		case *cli.IntFlag:
			f.Usage, f.DefaultText = splitDefault(f.Usage, f.DefaultText)
		case *cli.DurationFlag:
			f.Usage, f.DefaultText = splitDefault(f.Usage, f.DefaultText)
		case *cli.StringFlag:
			f.Usage, f.DefaultText = splitDefault(f.Usage, f.DefaultText)
		case *cli.StringSliceFlag:
			f.Usage, f.DefaultText = splitDefault(f.Usage, f.DefaultText)
		}
	}
}

// splitDefault is config.SplitDefault, keeping a default text already set.
func splitDefault(usage, defaultText string) (string, string) {
	rest, def := config.SplitDefault(usage)
	if def == "" {
		return usage, defaultText
	}
	return rest, cmp.Or(defaultText, def)
}

// rootAction runs when no command was named: --version, the help, or an
// unknown command.
func rootAction(c *cli.Context) error {
	switch {
	case c.Bool("version"):
		return printVersion(c.App.Writer, false)
	case c.NArg() == 0:
		return cli.ShowAppHelp(c)
	}
	return unknownCommand(c.App, c.Args().First())
}

// unknownCommand is the error for a command name that is none, with the
// command it most likely misspells.
func unknownCommand(app *cli.App, name string) error {
	var names []string
	for _, cmd := range app.VisibleCommands() {
		names = append(names, cmd.Name)
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if near := config.Nearest(name, names); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	return usageError{msg: msg, help: "walsnap"}
}

// onUsageError turns a flag the command line got wrong into one line that
// points to the command's help, with the exit status code (wal-fetch keeps
// its own: PostgreSQL must stop recovery on it).
func onUsageError(code int) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		// The flag package names flags with one dash; walsnap's take two.
		msg := strings.NewReplacer("defined: -", "defined: --", "for flag -", "for flag --", "argument: -", "argument: --").Replace(err.Error())
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			var names []string
			for _, f := range c.Command.Flags {
				names = append(names, f.Names()...)
			}
			if near := config.Nearest(name, names); near != "" {
				msg += fmt.Sprintf(" (did you mean --%s?)", near)
			}
		}
		ue := usageError{msg: msg, err: err, help: c.Command.HelpName}
		if code == 2 {
			return ue
		}
		return withCode(code, ue)
	}
}

// exitError carries the process exit status for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches an exit status to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// exitCode prints err (once) and maps it to the process exit status:
// 0 success, 1 failure (for wal-fetch: the file does not exist), 2 bad
// usage, and what a command chose with withCode (wal-fetch: 255 for every
// failure other than absence, so PostgreSQL stops recovery).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	reportError(err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// reportError writes the final error line: "walsnap: ..." in the text log
// format, one JSON log record in the json format. A usage error points to
// the help.
func reportError(err error) {
	msg := err.Error()
	var ue usageError
	if errors.As(err, &ue) {
		help := cmp.Or(ue.help, "walsnap "+run.command)
		if run.command == "" && ue.help == "" {
			help = "walsnap"
		}
		msg += fmt.Sprintf(" (see '%s --help')", help)
	}
	if run.cfg.Log.Format == config.LogJSON {
		newLoggerLevel(run.cfg, cmp.Or(run.command, "walsnap"), slog.LevelError).Error(msg)
		return
	}
	fmt.Fprintln(logOutput, "walsnap:", msg)
}

// usageError is a command-line mistake; err, when set, is the cause; help
// is the command whose --help explains it ("" = the command that ran).
type usageError struct {
	msg  string
	err  error
	help string
}

func (e usageError) Error() string { return e.msg }
func (e usageError) Unwrap() error { return e.err }
