package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/archive"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/detach"
)

// Exit statuses of wal-fetch, PostgreSQL's restore_command contract.
const (
	fetchAbsent = 1   // the file is not in the repository: recovery may end here
	fetchFailed = 255 // anything else: PostgreSQL must stop, not end recovery early
)

func walFetchCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:      "wal-fetch",
		Usage:     "restore one WAL file (restore_command = 'walsnap wal-fetch %f %p')",
		ArgsUsage: "NAME DEST",
		Description: "Writes the verified file (size, SHA-256, page header) to DEST through a\n" +
			"temporary name, fsync and rename, then prefetches the next fetch.prefetch\n" +
			"segments in the background so the next call is a rename.\n" +
			"An encrypted file needs encryption.identity_file (the age private key).\n" +
			"Exit status: 0 restored; 1 only when the repository does not have the file;\n" +
			"255 on any other failure (unreachable store, checksum mismatch, bad data, a\n" +
			"missing or wrong identity for an encrypted file),\n" +
			"which makes PostgreSQL abort recovery instead of ending it on a wrong timeline;\n" +
			"a command line it cannot use (bad flag, wrong arguments) is such a failure too.",
		OnUsageError: onUsageError(fetchFailed),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return withCode(fetchFailed, usageError{msg: "wal-fetch takes two arguments: NAME (%f) and DEST (%p)"})
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return withCode(fetchFailed, err)
			}
			err = fetch(c.Context, cfg, c.Args().Get(0), c.Args().Get(1))
			if errors.Is(err, archive.ErrNotFound) {
				return withCode(fetchAbsent, err)
			}
			return withCode(fetchFailed, err)
		},
	})
}

func fetch(ctx context.Context, cfg config.Config, name, dest string) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Fetch.Timeout)
	defer cancel()
	f, err := newFetcher(ctx, cfg, "wal-fetch")
	if err != nil {
		return err
	}
	f.CallSettings = callStamp("wal-fetch")
	walDir := filepath.Dir(dest)
	f.StartPrefetch = func(after string) error { return startPrefetcher(cfg, after, walDir) }
	return f.Fetch(ctx, name, dest)
}

func newFetcher(ctx context.Context, cfg config.Config, command string) (*archive.Fetcher, error) {
	r, err := openRepo(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &archive.Fetcher{
		Repo:        r,
		Codec:       cfg.Compression,
		Prefetch:    cfg.Fetch.Prefetch,
		Concurrency: cfg.Fetch.Concurrency,
		SpoolDir:    cfg.SpoolDir,
		Timeout:     cfg.Fetch.Timeout,
		Log:         newLogger(cfg, command),
		LogHint:     logHint(cfg),
	}, nil
}

// startPrefetcher runs "walsnap wal-prefetch" detached. Its stderr is
// PostgreSQL's log, like ours; a write to it after PostgreSQL rotated or
// closed the log only loses that line.
func startPrefetcher(cfg config.Config, after, walDir string) error {
	walDir, err := filepath.Abs(walDir)
	if err != nil {
		return err
	}
	_, err = detach.Start([]string{"wal-prefetch", after, walDir}, childEnv(cfg), os.Stderr)
	return err
}

func walPrefetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-prefetch",
		Usage:     "internal: the standing prefetcher, from NAME on (started by wal-fetch)",
		ArgsUsage: "NAME WALDIR",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError{msg: "wal-prefetch takes NAME and WALDIR"}
			}
			cfg, err := resolvedConfig()
			if err != nil {
				return err
			}
			// The standing prefetcher lives until PostgreSQL stops asking
			// (or recovery ends); each download has fetch.timeout.
			ctx := c.Context
			f, err := newFetcher(ctx, cfg, "wal-prefetch")
			if err != nil {
				return err
			}
			f.Settings, f.Restamp = helperSettings()
			if err := detach.Yield(archive.PrefetchNice); err != nil {
				f.Log.Warn("prefetcher runs at normal priority", "err", err)
			}
			return f.RunPrefetch(ctx, c.Args().Get(0), c.Args().Get(1))
		},
	}
}
