package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/drill"
	"github.com/walsnap/walsnap/restore"
)

func drillCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "drill",
		Usage: "prove that a backup restores: restore it aside, recover, check, measure, clean up",
		Description: "Chooses the backup as restore does (default: the newest, recovering to the end of\n" +
			"the archived WAL) and checks that the WAL it needs is all in the repository. Then\n" +
			"it restores it where it cannot touch production: files into a scratch directory\n" +
			"(--scratch); ebs into volumes built from the snapshots in this instance's zone,\n" +
			"tagged walsnap:drill and mounted under the scratch directory; command through\n" +
			"command.restore with WALSNAP_PGDATA in the scratch directory. It recovers the copy\n" +
			"with archiving off, on a private unix socket and no TCP listener, to the target,\n" +
			"and promotes it. Checks: every database accepts connections; pg_amcheck of the\n" +
			"backup's major, when installed, on the catalogs (--amcheck all: everything); each\n" +
			"--check-sql file (a statement that returns no rows, or false in its first\n" +
			"column, fails the drill). Each phase is timed: the choice, the unpacking or the\n" +
			"volumes, the WAL replay (segments, bytes, rate), the checks, and the recovery time\n" +
			"this backup needs on this host. Everything the drill built is removed (server\n" +
			"stopped, volumes unmounted, detached and deleted, command.cleanup run, scratch\n" +
			"directory removed) on success, failure and SIGINT/SIGTERM; --keep leaves the copy\n" +
			"running and prints how to reach and remove it. The result is stored in the\n" +
			"repository (walsnap status shows it) and a backup that passes is marked drilled\n" +
			"(backup-list). Runs as root (restore's files are given to --owner); the checks\n" +
			"connect as pg.user. Exit status 1 when the drill fails.",
		Flags: append(targetFlags(),
			&cli.StringSliceFlag{Name: "check-sql", Usage: "`FILE` of SQL run on the promoted copy; fails the drill on an error, no rows or false (repeatable)"},
			&cli.StringFlag{Name: "check-database", Value: "postgres", Usage: "database the --check-sql files run in"},
			&cli.StringFlag{Name: "amcheck", Value: drill.AmcheckCatalogs, Usage: "pg_amcheck scope: catalogs, all or none"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the promoted copy running, and print how to connect and how to remove it"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON (progress goes to stderr)"},
			&cli.StringFlag{Name: "scratch", Value: drill.DefaultScratch, Usage: "`DIR` in which the drill makes its scratch directory (room for a files backup, unpacked)"},
			&cli.StringFlag{Name: "server-config", Usage: "the source's postgresql.conf, for data directories without one (Debian: /etc/postgresql/N/main/postgresql.conf)"},
			&cli.StringSliceFlag{Name: "set", Usage: "server setting `NAME=VALUE` of the copy, e.g. shared_buffers=1GB (repeatable)"},
			&cli.StringFlag{Name: "owner", Usage: "OS user that runs the copy when run as root (default: postgres)"},
			&cli.StringFlag{Name: "pg-bin", Usage: "directory of pg_ctl and pg_amcheck (default: /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin, pg_config --bindir, PATH)"},
			&cli.DurationFlag{Name: "replay-timeout", Usage: "fail the drill when recovery has not ended after this long (default: no limit)"},
			&cli.DurationFlag{Name: "device-timeout", Value: restore.DefaultDeviceTimeout, Usage: "ebs backups: how long to wait for each attached volume's device to appear"},
		),
		Action: runDrill,
	})
}

func runDrill(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError{msg: "drill takes no arguments; use --backup and --target-*"}
	}
	t, err := parseTarget(c, "")
	if err != nil {
		return err
	}
	switch a := c.String("amcheck"); a {
	case drill.AmcheckCatalogs, drill.AmcheckAll, drill.AmcheckNone:
	default:
		return usageError{msg: fmt.Sprintf("--amcheck %q: want catalogs, all or none", a)}
	}
	var set [][2]string
	for _, kv := range c.StringSlice("set") {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return usageError{msg: fmt.Sprintf("--set %q: want NAME=VALUE", kv)}
		}
		if err := drill.CheckSet(name); err != nil {
			return usageError{msg: err.Error()}
		}
		set = append(set, [2]string{name, value})
	}
	var checks []drill.SQLCheck
	for _, f := range c.StringSlice("check-sql") {
		sql, err := os.ReadFile(f)
		if err != nil {
			return usageError{msg: fmt.Sprintf("--check-sql: %v", err), err: err}
		}
		checks = append(checks, drill.SQLCheck{Name: f, SQL: string(sql)})
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	rc, r, log, err := restoreSource(c, cfg, "drill")
	if err != nil {
		return err
	}
	res, err := drill.Run(c.Context, drill.Options{
		Repo:           r,
		BackupID:       c.String("backup"),
		Target:         t,
		RestoreCommand: rc,
		Owner:          c.String("owner"),
		PGBin:          c.String("pg-bin"),
		User:           cfg.PG.User,
		Scratch:        c.String("scratch"),
		ServerConfig:   c.String("server-config"),
		Set:            set,
		Amcheck:        c.String("amcheck"),
		CheckSQL:       checks,
		CheckDatabase:  c.String("check-database"),
		Keep:           c.Bool("keep"),
		ReplayTimeout:  c.Duration("replay-timeout"),
		Out:            humanOut(c),
		Log:            log,
		Providers:      providerSettings(cfg, r, log, restore.EBS{InstanceID: cfg.EBS.InstanceID, DeviceTimeout: c.Duration("device-timeout")}),
	})
	if c.Bool("json") && res != nil && !errors.Is(err, drill.ErrInterrupted) {
		if jerr := printJSON(res); jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	return err
}
