package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/archive"
)

func walPushCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:      "wal-push",
		Usage:     "archive one WAL file (archive_command = 'walsnap wal-push %p')",
		ArgsUsage: "PATH",
		Description: "Validates the file (segment size, page header, system identifier), compresses it,\n" +
			"records its SHA-256 and uploads it without ever overwriting: a file already\n" +
			"archived with the same content succeeds, with different content fails.\n" +
			"Also pushes ahead up to push.ahead files waiting in pg_wal/archive_status,\n" +
			"push.concurrency at once, so a backlog drains at network speed.\n" +
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
			p := &archive.Pusher{
				Repo:        r,
				Codec:       cfg.Compression,
				Concurrency: cfg.Push.Concurrency,
				Ahead:       cfg.Push.Ahead,
				SpoolDir:    cfg.SpoolDir,
				Log:         newLogger(cfg, "wal-push"),
			}
			return p.Push(ctx, c.Args().First())
		},
	})
}
