package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/retention"
)

func backupPinCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:      "backup-pin",
		Usage:     "pin a backup so that delete never removes it, or unpin it",
		ArgsUsage: "ID",
		Description: "A pinned backup is kept whatever the retention policy, with the WAL from its\n" +
			"start to its stop (so that it stays restorable to that point); the WAL after it\n" +
			"is kept only as the policy's backups need it. backup-list shows the pins;\n" +
			"'walsnap backup --pin' pins a new backup.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "unpin", Usage: "remove the pin instead"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{msg: "backup-pin takes one backup id (flags before it)"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			r, err := openExistingRepo(c.Context, cfg)
			if err != nil {
				return err
			}
			msg, err := retention.Pin(c.Context, r, c.Args().First(), c.Bool("unpin"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(os.Stdout, msg)
			return err
		},
	})
}
