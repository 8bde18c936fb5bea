package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/ebs"
)

func checkCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "check",
		Usage: "check that the cluster archives into the repository, now",
		Description: "Connects to PostgreSQL (pg.host, pg.port, pg.user) and checks, one line each with\n" +
			"pass, warn or fail: wal_level, archive_mode, archive_command (runs walsnap wal-push\n" +
			"with this repository), archive_timeout, pg_stat_archiver (failures, the last\n" +
			"archived segment), the repository (reachable, this cluster's, and writable: a test\n" +
			"object written with the configured encryption, read back and deleted), and for\n" +
			"backup.provider ebs that the PostgreSQL directories are on EBS volumes and that EC2\n" +
			"would snapshot them (DryRun). Then the live test: pg_switch_wal(), and the finished\n" +
			"segment must reach the repository within --timeout and fetch back intact.\n" +
			"Exits 1 when any check fails.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: inspect.DefaultSwitchTimeout, Usage: "how long the live test waits for the switched segment"},
			&cli.BoolFlag{Name: "json", Usage: "print the checks as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "check takes no arguments"}
			}
			if c.Duration("timeout") <= 0 {
				return usageError{msg: "--timeout must be positive"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return runCheck(c.Context, cfg, c.Duration("timeout"), c.Bool("json"))
		},
	})
}

func runCheck(ctx context.Context, cfg config.Config, timeout time.Duration, asJSON bool) error {
	o := inspect.CheckOptions{
		RepoURL:    cfg.Repo.String(),
		Conn:       connConfig(cfg),
		Encryption: encryption(cfg.S3),
		Provider:   cfg.Backup.Provider,
		EBS: inspect.EBSCheck{
			Client:     func(ctx context.Context) (*ebs.Client, error) { return ebsClient(ctx, cfg) },
			InstanceID: cfg.EBS.InstanceID,
			Volumes:    volumeIDs(cfg.EBS.Volumes),
		},
		Timeout: timeout,
		Codec:   cfg.Compression,
	}
	if _, err := os.Stat(cfg.Repo.Dir); cfg.Repo.Scheme == "file" && errors.Is(err, fs.ErrNotExist) {
		o.RepoErr = fmt.Errorf("directory %s does not exist", cfg.Repo.Dir)
	} else if o.Repo, err = openRepo(ctx, cfg); err != nil {
		o.RepoErr = err
	}
	lines := inspect.Check(ctx, o)
	if asJSON {
		if err := printJSON(lines); err != nil {
			return err
		}
	} else {
		inspect.WriteCheckText(os.Stdout, lines)
	}
	if inspect.Failed(lines) {
		return errors.New("check failed")
	}
	return nil
}

// encryption describes the server-side encryption of new objects.
func encryption(s config.S3) string {
	switch {
	case s.SSE == config.SSEKMS && s.SSEKMSKeyID != "":
		return "SSE-KMS key " + s.SSEKMSKeyID
	case s.SSE == config.SSEKMS:
		return "SSE-KMS (the account's default key)"
	case s.SSE == config.SSEAES256:
		return "SSE-S3 (AES256)"
	}
	return ""
}

// volumeIDs are the ids of ebs.volumes.
func volumeIDs(vs config.EBSVolumes) []string {
	var ids []string
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	return ids
}
