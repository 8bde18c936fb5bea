package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/basebackup"
	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/repo"
)

func backupCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "backup",
		Usage: "take a base backup",
		Description: "Holds one PostgreSQL session in non-exclusive backup mode while the provider\n" +
			"(backup.provider; files copies PGDATA and tablespaces into the repository as\n" +
			"compressed tar parts, command runs command.snapshot and records the snapshot\n" +
			"references it prints) captures the data, then stops the backup, waits until the\n" +
			"WAL that makes it consistent is archived, and writes the manifest last.\n" +
			"Refuses a cluster whose archiving does not go through walsnap wal-push, or whose\n" +
			"system identifier differs from the repository's. One backup at a time per\n" +
			"repository. Connection: pg.host, pg.port, pg.user, pg.database (else PGHOST,\n" +
			"PGPORT, PGUSER, PGDATABASE; password from PGPASSWORD or ~/.pgpass). Works on a\n" +
			"primary or a standby. Without --fast, the backup starts after PostgreSQL's next\n" +
			"spread checkpoint, which can take up to checkpoint_timeout ×\n" +
			"checkpoint_completion_target (4.5 minutes with the defaults).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fast", Usage: "start with an immediate checkpoint instead of waiting for a spread one"},
			&cli.StringFlag{Name: "label", Usage: "backup label (default: walsnap <id>)"},
			&cli.BoolFlag{Name: "json", Usage: "print the manifest summary as JSON, with the snapshot ids"},
			&cli.BoolFlag{Name: "pin", Usage: "pin the backup: delete never removes it (see backup-pin)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "backup takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return runBackup(c.Context, cfg, c.Bool("fast"), c.String("label"), c.Bool("json"), c.Bool("pin"))
		},
	})
}

func runBackup(ctx context.Context, cfg config.Config, fast bool, label string, asJSON, pin bool) error {
	r, err := openRepo(ctx, cfg)
	if err != nil {
		return err
	}
	provider, err := basebackup.NewProvider(ctx, cfg.Backup.Provider, backupProviderSettings(cfg))
	if err != nil {
		return err
	}
	opts := backupOptions(cfg, r, provider, fast, label, "backup")
	opts.Pin = pin
	if !fast {
		opts.Log.Info(spreadCheckpointWait)
	}
	start := time.Now()
	m, err := basebackup.Run(ctx, opts)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	snaps, err := snapshotIDs(m)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(map[string]any{
			"id": m.ID, "provider": m.Provider, "status": m.Status, "label": m.Label,
			"start_lsn": m.StartLSN, "stop_lsn": m.StopLSN, "timeline": m.Timeline,
			"start_time": m.StartTime, "stop_time": m.StopTime, "snapshots": snaps,
			"duration_seconds": elapsed.Seconds(), "bytes_in": m.BytesIn, "bytes_out": m.BytesOut,
			"walsnap_version": m.WalsnapVersion,
		})
	}
	fmt.Printf("backup %s %s: start %s, stop %s (timeline %d), %s, read %s, stored %s",
		m.ID, m.Status, m.StartLSN, m.StopLSN, m.Timeline, elapsed.Round(time.Millisecond),
		manifest.Human(m.BytesIn), manifest.Human(m.BytesOut))
	if len(snaps) > 0 {
		fmt.Printf(", snapshots %s", strings.Join(snaps, " "))
	}
	fmt.Println()
	return nil
}

// spreadCheckpointWait says why a backup without --fast takes a while to
// start.
const spreadCheckpointWait = "waiting for PostgreSQL's spread checkpoint before the backup starts: up to " +
	"checkpoint_timeout × checkpoint_completion_target (4.5 minutes with the defaults); --fast checkpoints at once"

// snapshotIDs lists the snapshots a backup's manifest records: none for
// the files provider.
func snapshotIDs(m *manifest.Manifest) ([]string, error) {
	p, err := m.DecodePayload()
	if err != nil {
		return nil, err
	}
	ids := []string{}
	switch p := p.(type) {
	case *manifest.EBSPayload:
		for _, s := range p.Snapshots {
			ids = append(ids, s.SnapshotID)
		}
	case *manifest.CommandPayload:
		ids = append(ids, p.Snapshots...)
	case *manifest.ExternalPayload:
		ids = append(ids, p.Snapshots...)
	}
	return ids, nil
}

// printJSON writes v to stdout as one JSON document.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
		EBS: basebackup.EBS{InstanceID: cfg.EBS.InstanceID, Volumes: ebsVolumes(cfg.EBS.Volumes),
			Freeze: cfg.EBS.Freeze, WaitTimeout: cfg.EBS.WaitTimeout, WindowTimeout: cfg.EBS.WindowTimeout},
		NewEC2: func(ctx context.Context) (*ebs.Client, error) { return ebsClient(ctx, cfg) },
	}
}

// ebsVolumes are the volumes of ebs.volumes, for the ebs provider.
func ebsVolumes(vs config.EBSVolumes) []basebackup.EBSVolume {
	out := make([]basebackup.EBSVolume, len(vs))
	for i, v := range vs {
		out[i] = basebackup.EBSVolume{ID: v.ID, MountPoint: v.Mount}
	}
	return out
}

func ebsClient(ctx context.Context, cfg config.Config) (*ebs.Client, error) {
	return ebs.New(ctx, ebs.Options{Region: cfg.EBS.Region, Endpoint: cfg.EBS.Endpoint})
}

func connConfig(cfg config.Config) pg.ConnConfig {
	return pg.ConnConfig{Host: cfg.PG.Host, Port: cfg.PG.Port, User: cfg.PG.User, Database: cfg.PG.Database}
}

func backupListCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "backup-list",
		Usage: "list the backups in the repository",
		Description: "Shows every backup whose manifest is in the repository, oldest first.\n" +
			"Fails (exit 1) when there is no repository at repo: a directory that does not\n" +
			"exist, or a bucket prefix without walsnap.json.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the manifests as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "backup-list takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			r, err := openExistingRepo(c.Context, cfg)
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
				return printJSON(ms)
			}
			return inspect.WriteBackupList(c.Context, r, os.Stdout, ms)
		},
	})
}
