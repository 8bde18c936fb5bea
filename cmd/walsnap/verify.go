package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/config"
)

func verifyCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "verify",
		Usage: "check that every backup is restorable and the WAL chain is unbroken",
		Description: "For each backup: its manifest parses, its payload exists (files: every part with\n" +
			"its recorded size; ebs: every snapshot exists and is completed; command: command.verify,\n" +
			"when set, exits 0), and the WAL from its start to its stop segment is all there. Then\n" +
			"the WAL from every backup to the newest segment of each timeline it can follow\n" +
			"(through the .history files): each gap as a range, and per backup the points in time\n" +
			"it restores to, per timeline. --deep also downloads every WAL segment in range and\n" +
			"every part, and checks sizes, SHA-256, and the segments' page headers and system\n" +
			"identifier. Encrypted objects are checked against the SHA-256 of their stored bytes\n" +
			"without the key, and their content too with encryption.identity_file.\n" +
			"Prints one line per problem and exits 1 when there is any. The result is\n" +
			"stored in the repository, for walsnap status.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "deep", Usage: "read every object in range whole and check its bytes"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.IntFlag{Name: "concurrency", Value: inspect.DefaultConcurrency, Usage: "objects --deep reads at once"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError{msg: "verify takes no arguments"}
			}
			if c.Int("concurrency") < 1 {
				return usageError{msg: "--concurrency must be at least 1"}
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return runVerify(c.Context, cfg, c.Bool("deep"), c.Bool("json"), c.Int("concurrency"))
		},
	})
}

func runVerify(ctx context.Context, cfg config.Config, deep, asJSON bool, concurrency int) error {
	r, err := openExistingRepo(ctx, cfg)
	if err != nil {
		return err
	}
	res, err := inspect.Verify(ctx, inspect.VerifyOptions{
		Repo:        r,
		Deep:        deep,
		Concurrency: concurrency,
		EC2: func(ctx context.Context) (inspect.SnapshotDescriber, error) {
			client, err := ebsClient(ctx, cfg)
			if err != nil {
				return nil, err
			}
			return client, nil
		},
		CommandVerify: cfg.Command.Verify,
		Progress:      newProgress(os.Stderr, "verified"),
	})
	if err != nil {
		return err
	}
	saveErr := inspect.SaveVerify(ctx, r, res)
	if asJSON {
		if err := printJSON(res); err != nil {
			return err
		}
	} else {
		res.WriteText(os.Stdout)
	}
	if saveErr != nil {
		return fmt.Errorf("store the verify result in the repository: %w", saveErr)
	}
	if !res.OK {
		return fmt.Errorf("verify found %d problems", len(res.Problems))
	}
	return nil
}
