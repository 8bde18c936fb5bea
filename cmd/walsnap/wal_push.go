package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/archive"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/detach"
	"github.com/walsnap/walsnap/internal/repo"
)

func walPushCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:      "wal-push",
		Usage:     "archive one WAL file (archive_command = 'walsnap wal-push %p')",
		ArgsUsage: "PATH",
		Description: "Validates the file (segment size, page header, system identifier), compresses it,\n" +
			"encrypts it with age when encryption.recipients is set (a repository that\n" +
			"expects encryption refuses a host without recipients), records its SHA-256\n" +
			"and uploads it without ever overwriting: a file already\n" +
			"archived with the same content succeeds, with different content fails.\n" +
			"Starts a background archiver unless one runs: it takes each .ready file in\n" +
			"pg_wal/archive_status the moment it appears (push.concurrency at once, at\n" +
			"most push.ahead ahead of PostgreSQL) and stays push.linger for the next,\n" +
			"so that PostgreSQL's calls return from its records. walsnap-pg, installed\n" +
			"beside walsnap, answers those calls without starting walsnap.\n" +
			"Runs as the server's user (postgres); a config file other than " + defaultConfigPath + "\n" +
			"must be named in archive_command itself: 'walsnap --config FILE wal-push %p'.\n" +
			"Exit status: 0 archived, 1 not archived (PostgreSQL retries), 2 bad usage.",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{msg: "wal-push takes one argument: the WAL file path (%p)"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, cfg.Push.Timeout)
			defer cancel()
			r, err := openRepo(ctx, cfg)
			if err != nil {
				return err
			}
			p := newPusher(cfg, r, "wal-push")
			p.CallSettings = callStamp("wal-push")
			p.StartArchiver = func(walDir string, linger bool) error {
				walDir, err := filepath.Abs(walDir)
				if err != nil {
					return err
				}
				args := []string{"wal-archiver", walDir}
				if linger {
					args = append(args, lingerArg)
				}
				_, err = detach.Start(args, childEnv(cfg), os.Stderr)
				return err
			}
			return p.Push(ctx, c.Args().First())
		},
	})
}

func newPusher(cfg config.Config, r *repo.Repo, command string) *archive.Pusher {
	return &archive.Pusher{
		Repo:        r,
		Codec:       cfg.Compression,
		Concurrency: cfg.Push.Concurrency,
		Ahead:       cfg.Push.Ahead,
		SpoolDir:    cfg.SpoolDir,
		Timeout:     cfg.Push.Timeout,
		// Lingering matters to the archiver only (it serves a running server).
		ArchiverIdle: cfg.Push.Linger,
		Log:          newLogger(cfg, command),
		LogHint:      logHint(cfg),
	}
}

// lingerArg tells wal-archiver that PostgreSQL's archiver made the call
// that started it: it lingers push.linger for the server's next file.
const lingerArg = "linger"

func walArchiverCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-archiver",
		Usage:     "internal: the background archiver of a WAL directory (started by wal-push)",
		ArgsUsage: "WALDIR [" + lingerArg + "]",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 || c.NArg() == 2 && c.Args().Get(1) != lingerArg {
				return usageError{msg: "wal-archiver takes WALDIR [" + lingerArg + "]"}
			}
			cfg, err := resolvedConfig()
			if err != nil {
				return err
			}
			r, err := openRepo(c.Context, cfg)
			if err != nil {
				return err
			}
			p := newPusher(cfg, r, "wal-archiver")
			p.Settings, p.Restamp = helperSettings()
			if c.Args().Get(1) != lingerArg {
				p.ArchiverIdle = 0 // started by a call made by hand
			}
			return p.RunArchiver(c.Context, c.Args().First())
		},
	}
}
