package main

import (
	"context"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/retention"
)

func deleteCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "delete",
		Usage: "expire backups, their snapshots and the WAL no kept backup needs (a dry run unless --confirm)",
		Description: "Applies the retention policy: retention.full keeps the newest N complete\n" +
			"backups, retention.window (e.g. 14d) what restores to any point of that past\n" +
			"span (every backup that stopped within it and the newest one before); with\n" +
			"both, a backup either keeps is kept. --retain and --window replace the\n" +
			"configured policy; without any, delete refuses to run. Pinned backups are\n" +
			"never deleted (backup-pin). Failed backups, backups pending for longer than\n" +
			"ebs.wait_timeout, and what backups without a manifest left over a day ago\n" +
			"(objects, EBS snapshots tagged walsnap:backup-id) go too. WAL goes when no\n" +
			"kept backup needs it and it is older than every kept backup; timeline history\n" +
			"files never go. Without --confirm it only shows what would go and what is kept,\n" +
			"and why. With --confirm it takes the backup lock (no backup runs meanwhile)\n" +
			"and marks each backup deleting before its payload goes, its manifest last; a\n" +
			"delete interrupted anywhere is finished by the next one.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "retain", Usage: "keep the newest `N` complete backups", DefaultText: "retention.full"},
			&cli.StringFlag{Name: "window", Usage: "keep what restores to any point of the last `SPAN`, e.g. 14d or 36h", DefaultText: "retention.window"},
			&cli.StringFlag{Name: "backup", Usage: "delete the one backup `ID` instead of the expired ones"},
			&cli.BoolFlag{Name: "force", Usage: "with --backup: delete it even when it is the only restorable backup, or the one that keeps the window restorable"},
			&cli.BoolFlag{Name: "confirm", Usage: "delete; without it, only show what would be deleted"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan (with --confirm, what was done) as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "delete takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			policy := retention.Policy{Full: cfg.Retention.Full, Window: cfg.Retention.Window.Duration()}
			if c.IsSet("retain") || c.IsSet("window") {
				policy = retention.Policy{}
				if c.IsSet("retain") {
					if policy.Full = c.Int("retain"); policy.Full < 1 {
						return usageError{msg: "--retain: want 1 or more"}
					}
				}
				if c.IsSet("window") {
					w, err := config.ParseWindow(c.String("window"))
					if err != nil {
						return usageError{msg: "--window: " + err.Error(), err: err}
					}
					policy.Window = w.Duration()
				}
			}
			if c.Bool("force") && c.String("backup") == "" {
				return usageError{msg: "--force goes with --backup ID"}
			}
			if !policy.IsSet() && c.String("backup") == "" {
				return usageError{msg: retention.ErrNoPolicy.Error(), err: retention.ErrNoPolicy}
			}
			r, err := openExistingRepo(c.Context, cfg)
			if err != nil {
				return err
			}
			o := retention.Options{
				Repo: r, Policy: policy, Backup: c.String("backup"), Force: c.Bool("force"),
				PendingTimeout: cfg.EBS.WaitTimeout, Provider: cfg.Backup.Provider,
				Snapshots: func(ctx context.Context) (retention.Snapshots, error) {
					return ebsClient(ctx, cfg)
				},
				CommandDelete: cfg.Command.Delete, Output: os.Stderr,
				PGData: cfg.PGData, SpoolDir: cfg.SpoolDir, LockTTL: cfg.Backup.LockTTL,
				Log: newLogger(cfg, "delete"),
			}
			confirm := c.Bool("confirm")
			if confirm && !c.Bool("json") {
				o.Progress = countProgress(os.Stderr, "deleted", "objects and snapshots")
			}
			plan, err := retention.Run(c.Context, o, !confirm)
			if plan == nil {
				return err
			}
			if c.Bool("json") {
				if perr := printJSON(plan); perr != nil {
					return perr
				}
			} else if perr := plan.WriteTable(os.Stdout); perr != nil {
				return perr
			}
			return err
		},
	})
}
