package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/basebackup"
	"github.com/walsnap/walsnap/internal/config"
)

// holdFlags are shared by backup-start and the holder it starts.
func holdFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socket", Usage: "holder socket (default: <tmp>/walsnap-backup-<pg.port>.sock)"},
		&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "abort the backup if backup-stop does not come within this long"},
		&cli.StringFlag{Name: "label", Usage: "backup label (default: walsnap <id>)"},
		&cli.BoolFlag{Name: "fast", Usage: "start with an immediate checkpoint"},
	}
}

func holdSocket(c *cli.Context, cfg config.Config) string {
	if s := c.String("socket"); s != "" {
		return s
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("walsnap-backup-%d.sock", cfg.PG.Port))
}

func backupStartCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup-start",
		Usage: "start a backup for an external snapshot orchestrator (its before-hook)",
		Description: "Starts a small holder process that owns the PostgreSQL session, runs\n" +
			"pg_backup_start and returns once the backup is started (exit 0), or with the\n" +
			"reason it could not (exit 1). Take the snapshots, then run walsnap backup-stop\n" +
			"(the after-hook). A holder not told to stop within --timeout aborts the backup.\n" +
			"The holder logs to <tmp>/walsnap-backup-<pg.port>.log.",
		Flags: holdFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return startHolder(c, cfg)
		},
	}
}

// startHolder runs "walsnap backup-hold" detached and waits for the line
// it writes on a pipe once the backup has started (or failed to).
func startHolder(c *cli.Context, cfg config.Config) error {
	socket := holdSocket(c, cfg)
	logPath := strings.TrimSuffix(socket, ".sock") + ".log"
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	args := []string{"backup-hold", "--socket", socket, "--timeout", c.Duration("timeout").String(), "--label", c.String("label")}
	if c.Bool("fast") {
		args = append(args, "--fast")
	}
	pid, err := spawnDetached(cfg, args, logFile, pw) // fd 3: readiness
	pw.Close()
	if err != nil {
		pr.Close()
		return err
	}
	line, _ := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	status, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch status {
	case "ok":
		fmt.Printf("backup %s started (holder pid %d, socket %s); run walsnap backup-stop within %v\n", rest, pid, socket, c.Duration("timeout"))
		return nil
	case "error":
		return errors.New(rest)
	}
	return fmt.Errorf("the backup holder exited without starting the backup; see %s", logPath)
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
				return err
			}
			r, err := openRepo(c.Context, cfg)
			if err != nil {
				return err
			}
			ready := os.NewFile(3, "ready")
			return basebackup.Hold(c.Context, basebackup.Options{
				Repo:       r,
				Conn:       connConfig(cfg),
				PGData:     cfg.PGData,
				Fast:       c.Bool("fast"),
				Label:      c.String("label"),
				LockTTL:    cfg.Backup.LockTTL,
				WALTimeout: cfg.Backup.WALTimeout,
				Log:        newLogger(cfg, "backup-hold"),
			}, c.String("socket"), c.Duration("timeout"), func(b *basebackup.Backup, err error) {
				if err != nil {
					fmt.Fprintf(ready, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				} else {
					fmt.Fprintf(ready, "ok %s %s\n", b.ID(), b.StartLSN())
				}
				ready.Close()
			})
		},
	}
}

func backupStopCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup-stop",
		Usage: "stop the backup begun by backup-start (the orchestrator's after-hook)",
		Description: "Tells the holder to run pg_backup_stop, waits until the WAL that makes the\n" +
			"backup consistent is archived, and writes the manifest with the snapshot ids\n" +
			"given (--snapshot-id, repeatable). --abort abandons the backup instead.\n" +
			"Exit 0 only when the backup is complete.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Usage: "holder socket (default: <tmp>/walsnap-backup-<pg.port>.sock)"},
			&cli.StringSliceFlag{Name: "snapshot-id", Usage: "a snapshot the orchestrator took (repeatable)"},
			&cli.StringFlag{Name: "orchestrator", Usage: "who took the snapshots, recorded in the manifest (e.g. n2w, dlm)"},
			&cli.BoolFlag{Name: "abort", Usage: "abandon the backup: no manifest is written"},
			&cli.DurationFlag{Name: "timeout", Value: 15 * time.Minute, Usage: "how long to wait for the holder"},
		},
		Action: func(c *cli.Context) error {
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
			reply, err := basebackup.SendHold(ctx, holdSocket(c, cfg), req)
			if err != nil {
				return err
			}
			fmt.Printf("backup %s %s", reply.ID, reply.Status)
			if reply.StopLSN != "" {
				fmt.Printf(" (stop %s)", reply.StopLSN)
			}
			fmt.Println()
			return nil
		},
	}
}
