package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/basebackup"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/detach"
)

// holdFlags are shared by backup-start and the holder it starts.
func holdFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socket", Usage: "holder socket (default: backup.sock in the cluster's run directory, pg_wal/.walsnap/run)"},
		&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "abort the backup if backup-stop does not come within this long"},
		&cli.StringFlag{Name: "label", Usage: "backup label (default: walsnap <id>)"},
		&cli.BoolFlag{Name: "fast", Usage: "start with an immediate checkpoint"},
	}
}

// holderFiles are the holder's socket (--socket, else the default in the
// cluster's run directory) and log.
func holderFiles(c *cli.Context, cfg config.Config) (basebackup.HolderFiles, error) {
	f, err := basebackup.Holder(c.Context, connConfig(cfg), cfg.SpoolDir, cfg.PGData)
	if s := c.String("socket"); s != "" {
		f.Socket, err = s, nil
		if f.Log == "" {
			f.Log = strings.TrimSuffix(s, ".sock") + ".log"
		}
	}
	return f, err
}

func backupStartCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "backup-start",
		Usage: "start a backup for an external snapshot orchestrator (its before-hook)",
		Description: "Starts a small holder process that owns the PostgreSQL session, runs\n" +
			"pg_backup_start and returns once the backup is started (exit 0), or with the\n" +
			"reason it could not (exit 1). Take the snapshots, then run walsnap backup-stop\n" +
			"(the after-hook). A holder not told to stop within --timeout aborts the backup.\n" +
			"The holder's socket and log (backup-hold.log) are in the cluster's run\n" +
			"directory, pg_wal/.walsnap/run (spool_dir/run), which only the cluster's owner\n" +
			"and root can use.",
		Flags: append(holdFlags(), &cli.BoolFlag{Name: "json", Usage: "print the started backup as JSON"}),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "backup-start takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return startHolder(c, cfg)
		},
	})
}

// startHolder runs "walsnap backup-hold" detached and waits for its
// report that the backup has started (or failed to).
func startHolder(c *cli.Context, cfg config.Config) error {
	files, err := holderFiles(c, cfg)
	if err != nil {
		return err
	}
	logFile, err := files.OpenLog()
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{"backup-hold", "--socket", files.Socket, "--timeout", c.Duration("timeout").String(), "--label", c.String("label")}
	if c.Bool("fast") {
		args = append(args, "--fast")
	}
	if !c.Bool("fast") {
		newLogger(cfg, "backup-start").Info(spreadCheckpointWait)
	}
	pid, report, err := detach.StartReady(args, childEnv(cfg), logFile)
	if err != nil {
		return err
	}
	id, startLSN, _ := strings.Cut(report, " ")
	if c.Bool("json") {
		return printJSON(map[string]any{"id": id, "start_lsn": startLSN, "holder_pid": pid, "socket": files.Socket,
			"log": files.Log, "timeout_seconds": c.Duration("timeout").Seconds()})
	}
	fmt.Printf("backup %s started at %s (holder pid %d, socket %s); run walsnap backup-stop within %v\n", id, startLSN, pid, files.Socket, c.Duration("timeout"))
	return nil
}

func backupHoldCommand() *cli.Command {
	return &cli.Command{
		Name:   "backup-hold",
		Usage:  "internal: hold a backup session for backup-start/backup-stop",
		Hidden: true,
		Flags:  holdFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := resolvedConfig()
			if err != nil {
				detach.Ready("", err)
				return err
			}
			r, err := openRepo(c.Context, cfg)
			if err != nil {
				detach.Ready("", err)
				return err
			}
			// With backup.provider ebs, the orchestrator's EBS snapshots
			// are found and recorded as an ebs backup.
			rec, err := basebackup.NewRecorder(c.Context, cfg.Backup.Provider, backupProviderSettings(cfg))
			if err != nil {
				detach.Ready("", err)
				return err
			}
			o := backupOptions(cfg, r, nil, c.Bool("fast"), c.String("label"), "backup-hold")
			return basebackup.Hold(c.Context, o, rec, c.String("socket"), c.Duration("timeout"), func(b *basebackup.Backup, err error) {
				if err != nil {
					detach.Ready("", err)
				} else {
					detach.Ready(b.ID()+" "+b.StartLSN().String(), nil)
				}
			})
		},
	}
}

func backupStopCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "backup-stop",
		Usage: "stop the backup begun by backup-start (the orchestrator's after-hook)",
		Description: "Tells the holder to run pg_backup_stop, waits until the WAL that makes the\n" +
			"backup consistent is archived, and writes the manifest with the snapshot ids\n" +
			"given (--snapshot-id, repeatable). --abort abandons the backup instead.\n" +
			"With backup.provider ebs the holder records the orchestrator's EBS snapshots of\n" +
			"the PostgreSQL volumes as an ebs backup that walsnap restore rebuilds: those\n" +
			"given, or without --snapshot-id those that started within the backup window.\n" +
			"Such a backup is pending until its snapshots are completed; the holder waits\n" +
			"for them (ebs.wait_timeout) after replying.\n" +
			"Exit 0 only when the backup is complete or pending.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Usage: "holder socket (default: backup.sock in the cluster's run directory, pg_wal/.walsnap/run)"},
			&cli.StringSliceFlag{Name: "snapshot-id", Usage: "a snapshot the orchestrator took (repeatable)"},
			&cli.StringFlag{Name: "orchestrator", Usage: "who took the snapshots, recorded in the manifest (e.g. n2w, dlm)"},
			&cli.BoolFlag{Name: "abort", Usage: "abandon the backup: no manifest is written"},
			&cli.DurationFlag{Name: "timeout", Value: 15 * time.Minute, Usage: "how long to wait for the holder"},
			&cli.BoolFlag{Name: "json", Usage: "print the outcome as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "backup-stop takes no arguments; give snapshots with --snapshot-id"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			req := basebackup.HoldRequest{Op: "stop", Orchestrator: c.String("orchestrator"), Snapshots: c.StringSlice("snapshot-id")}
			if c.Bool("abort") {
				req = basebackup.HoldRequest{Op: "abort"}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			files, err := holderFiles(c, cfg)
			if err != nil {
				return err
			}
			if !c.Bool("abort") {
				newLogger(cfg, "backup-stop").Info("stopping the backup: waiting until the WAL that makes it consistent is archived (at most backup.wal_timeout)")
			}
			reply, err := basebackup.SendHold(ctx, files.Socket, req)
			if err != nil {
				return err
			}
			snapshots := append([]string{}, req.Snapshots...)
			if len(reply.Snapshots) > 0 { // found and recorded by the holder
				snapshots = reply.Snapshots
			}
			if c.Bool("json") {
				return printJSON(map[string]any{"id": reply.ID, "status": reply.Status, "stop_lsn": reply.StopLSN,
					"snapshots": snapshots})
			}
			fmt.Printf("backup %s %s", reply.ID, reply.Status)
			if reply.StopLSN != "" {
				fmt.Printf(" (stop %s)", reply.StopLSN)
			}
			if len(reply.Snapshots) > 0 {
				fmt.Printf(": snapshots %s", strings.Join(reply.Snapshots, " "))
			}
			fmt.Println()
			return nil
		},
	})
}
