// Command walsnap archives PostgreSQL WAL to S3 or a local repository and
// restores it; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newApp().RunContext(ctx, os.Args)
	stop()
	os.Exit(exitCode(err))
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "walsnap",
		Usage: "continuous WAL archiving and point-in-time recovery for PostgreSQL",
		Description: "Settings come from flags, then WALSNAP_* environment variables, then the YAML\n" +
			"config file (--config, default " + defaultConfigPath + " when it exists).\n" +
			"AWS credentials come from the AWS SDK's default chain (environment, shared\n" +
			"config, instance profile); walsnap never takes them as flags.",
		Flags:           globalFlags(),
		Commands:        []*cli.Command{walPushCommand(), walFetchCommand(), backupCommand(), backupListCommand(), restoreCommand(), backupStartCommand(), backupStopCommand(), walPrefetchCommand(), walArchiverCommand(), backupHoldCommand()},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main maps errors to exit codes
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
	fmt.Fprintln(os.Stderr, "walsnap:", err)
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

// usageError is a command-line mistake; err, when set, is the cause.
type usageError struct {
	msg string
	err error
}

func (e usageError) Error() string { return e.msg }
func (e usageError) Unwrap() error { return e.err }
