package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
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
			return runPin(c.Context, r, c.Args().First(), c.Bool("unpin"), os.Stdout)
		},
	})
}

// runPin pins (or unpins) backup id, which must have a manifest; a backup
// being deleted, or failed, cannot be pinned.
func runPin(ctx context.Context, r *repo.Repo, id string, unpin bool, w io.Writer) error {
	m, err := r.Manifest(ctx, id)
	if err != nil {
		return err
	}
	if unpin {
		if err := r.Unpin(ctx, id); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "backup %s unpinned\n", id)
		return err
	}
	switch m.Status {
	case manifest.StatusDeleting:
		return fmt.Errorf("backup %s: %w: it can no longer be pinned", id, repo.ErrDeleting)
	case manifest.StatusFailed:
		return fmt.Errorf("backup %s failed: only a complete (or pending) backup can be pinned", id)
	}
	if err := r.Pin(ctx, id); err != nil {
		if errors.Is(err, repo.ErrDeleting) {
			return fmt.Errorf("%w: it can no longer be pinned", err)
		}
		return err
	}
	_, err = fmt.Fprintf(w, "backup %s pinned: delete never removes it\n", id)
	return err
}

// writeBackupList prints backup-list's table and, under it, the oldest
// recovery point: the earliest time a restore can reach.
func writeBackupList(ctx context.Context, r *repo.Repo, w io.Writer, ms []*manifest.Manifest) error {
	if err := manifest.WriteTable(w, ms); err != nil {
		return err
	}
	cat, err := catalog.Load(ctx, r)
	if err != nil {
		return err
	}
	t, m, ok := cat.OldestRecoveryPoint()
	if !ok {
		_, err = fmt.Fprintln(w, "\noldest recovery point: none (no complete backup has all its WAL)")
		return err
	}
	_, err = fmt.Fprintf(w, "\noldest recovery point: %s (backup %s, LSN %s)\n", t.UTC().Format("2006-01-02 15:04:05Z"), m.ID, m.StopLSN)
	return err
}
