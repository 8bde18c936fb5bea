package main

import (
	"context"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/config"
)

func statusCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "status",
		Usage: "show where the archive and the backups stand",
		Description: "One screen: the repository and its system identifier; the newest archived\n" +
			"segment and when; the archive lag (the server's WAL position past the newest\n" +
			"archived segment) and the archiver's failures, when the server answers; the\n" +
			"backups (count, newest and its age, the oldest point a backup restores to);\n" +
			"what the WAL, the backups and the EBS snapshots occupy; and the results of the\n" +
			"last walsnap verify and walsnap drill. --prometheus writes the same as metrics\n" +
			"for node_exporter's textfile collector (replaced atomically); when the repository\n" +
			"cannot be read it writes walsnap_repository_up 0 and exits 1.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
			&cli.StringFlag{Name: "prometheus", Usage: "write the metrics to `FILE` (e.g. /var/lib/prometheus/node-exporter/walsnap.prom)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "status takes no arguments"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return runStatus(c.Context, cfg, c.Bool("json"), c.String("prometheus"))
		},
	})
}

func runStatus(ctx context.Context, cfg config.Config, asJSON bool, promFile string) error {
	st, err := readStatus(ctx, cfg)
	if promFile != "" {
		if werr := inspect.WriteMetrics(promFile, st, time.Now()); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(st)
	}
	if promFile == "" {
		st.WriteText(os.Stdout)
	}
	return nil
}

func readStatus(ctx context.Context, cfg config.Config) (*inspect.Status, error) {
	r, err := openExistingRepo(ctx, cfg)
	if err != nil {
		return nil, err
	}
	conn := connConfig(cfg)
	return inspect.ReadStatus(ctx, inspect.StatusOptions{Repo: r, Conn: &conn})
}
