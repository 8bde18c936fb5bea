package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/basebackup"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "take a base backup",
		Description: "Holds one PostgreSQL session in non-exclusive backup mode while the provider\n" +
			"(backup.provider; files copies PGDATA and tablespaces into the repository as\n" +
			"compressed tar parts, command runs command.snapshot and records the snapshot\n" +
			"references it prints) captures the data, then stops the backup, waits until the\n" +
			"WAL that makes it consistent is archived, and writes the manifest last.\n" +
			"Refuses a cluster whose archiving does not go through walsnap wal-push, or whose\n" +
			"system identifier differs from the repository's. One backup at a time per\n" +
			"repository. Connection: pg.host, pg.port, pg.user (password from PGPASSWORD or\n" +
			"~/.pgpass). Works on a primary or a standby.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fast", Usage: "start with an immediate checkpoint instead of a spread one"},
			&cli.StringFlag{Name: "label", Usage: "backup label (default: walsnap <id>)"},
			&cli.BoolFlag{Name: "json", Usage: "print the manifest summary as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "backup takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return runBackup(c.Context, cfg, c.Bool("fast"), c.String("label"), c.Bool("json"))
		},
	}
}

func runBackup(ctx context.Context, cfg config.Config, fast bool, label string, asJSON bool) error {
	r, err := openRepo(ctx, cfg)
	if err != nil {
		return err
	}
	provider, err := basebackup.NewProvider(ctx, cfg.Backup.Provider, backupProviderSettings(cfg))
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := basebackup.Run(ctx, backupOptions(cfg, r, provider, fast, label, "backup"))
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"id": m.ID, "provider": m.Provider, "status": m.Status,
			"start_lsn": m.StartLSN, "stop_lsn": m.StopLSN, "timeline": m.Timeline,
			"start_time": m.StartTime, "stop_time": m.StopTime,
			"duration_seconds": elapsed.Seconds(), "bytes_in": m.BytesIn, "bytes_out": m.BytesOut,
		})
	}
	fmt.Printf("backup %s %s: start %s, stop %s (timeline %d), %s, read %s, stored %s\n",
		m.ID, m.Status, m.StartLSN, m.StopLSN, m.Timeline, elapsed.Round(time.Millisecond),
		manifest.Human(m.BytesIn), manifest.Human(m.BytesOut))
	return nil
}

// backupOptions are the settings of one backup (or backup-start holder).
func backupOptions(cfg config.Config, r *repo.Repo, p basebackup.Provider, fast bool, label, command string) basebackup.Options {
	o := basebackup.Options{
		Repo:       r,
		Conn:       connConfig(cfg),
		PGData:     cfg.PGData,
		SpoolDir:   cfg.SpoolDir,
		Provider:   p,
		Fast:       fast,
		Label:      label,
		LockTTL:    cfg.Backup.LockTTL,
		WALTimeout: cfg.Backup.WALTimeout,
		Log:        newLogger(cfg, command),
	}
	if p != nil {
		o.Progress = newProgress(os.Stderr, "copied")
	}
	return o
}

func backupProviderSettings(cfg config.Config) basebackup.ProviderSettings {
	return basebackup.ProviderSettings{
		Codec:           cfg.Compression,
		Streams:         cfg.Backup.Streams,
		CommandSnapshot: cfg.Command.Snapshot,
		EBS: basebackup.EBS{InstanceID: cfg.EBS.InstanceID, Volumes: cfg.EBS.Volumes,
			Freeze: cfg.EBS.Freeze, WaitTimeout: cfg.EBS.WaitTimeout},
		NewEC2: func(ctx context.Context) (*ebs.Client, error) { return ebsClient(ctx, cfg) },
	}
}

func ebsClient(ctx context.Context, cfg config.Config) (*ebs.Client, error) {
	return ebs.New(ctx, ebs.Options{Region: cfg.EBS.Region, Endpoint: cfg.EBS.Endpoint})
}

func connConfig(cfg config.Config) pg.ConnConfig {
	return pg.ConnConfig{Host: cfg.PG.Host, Port: cfg.PG.Port, User: cfg.PG.User, Database: cfg.PG.Database}
}

func backupListCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup-list",
		Usage: "list the backups in the repository",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the manifests as JSON"}},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			r, err := openRepo(c.Context, cfg)
			if err != nil {
				return err
			}
			ms, problems, err := r.Backups(c.Context)
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintf(os.Stderr, "walsnap: backup %s is not listed: %v\n", p.ID, p.Err)
			}
			if c.Bool("json") {
				if ms == nil {
					ms = []*manifest.Manifest{}
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			return manifest.WriteTable(os.Stdout, ms)
		},
	}
}
