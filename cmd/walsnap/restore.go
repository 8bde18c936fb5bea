package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/callstamp"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/restore"
)

func restoreCommand() *cli.Command {
	return withSettings(&cli.Command{
		Name:  "restore",
		Usage: "restore a base backup and configure point-in-time recovery",
		Description: "Chooses the newest complete backup that is consistent at or before the target\n" +
			"(or --backup ID), puts its files in --pgdata (and each tablespace in place),\n" +
			"writes backup_label and tablespace_map from the manifest, clears pg_wal and\n" +
			"pg_replslot, writes restore_command = 'walsnap ... wal-fetch %f %p' with this\n" +
			"repository's settings plus the recovery target to postgresql.auto.conf, and\n" +
			"creates recovery.signal (standby.signal with --standby). --pgdata defaults to $PGDATA.\n" +
			"A restored server does not archive (--archive-mode off, the default): a copy\n" +
			"restored to look at data must not push its new timeline into this repository.\n" +
			"A server that replaces the primary needs --archive-mode preserve, which keeps\n" +
			"the backup's archive_command.\n" +
			"Give at most one target; none replays all archived WAL. Times without a zone are\n" +
			"read in this host's zone. The WAL that reaches the target must be archived: a\n" +
			"target past the newest archived segment draws a warning (run SELECT\n" +
			"pg_switch_wal() on the primary first). With --start, the server is started with\n" +
			"pg_ctl (found in /usr/lib/postgresql/N/bin, /usr/pgsql-N/bin, pg_config --bindir or\n" +
			"PATH) and recovery is followed to its end; next to a running server it needs its\n" +
			"own --port and --socket-dir, and a port in use is refused. The restore_command\n" +
			"runs as the server's user: AWS credentials must reach it (instance profile or\n" +
			"that user's ~/.aws), and for an encrypted repository so must encryption.identity_file\n" +
			"(restore checks that it opens the backup's objects before it changes anything).",
		Flags: append(targetFlags(),
			&cli.StringFlag{Name: "target-action", Usage: "at the target: pause (PostgreSQL's default), promote or shutdown"},
			&cli.BoolFlag{Name: "standby", Usage: "set the server up as a standby (standby.signal)"},
			&cli.StringSliceFlag{Name: "tablespace-map", Usage: "relocate a tablespace: OLD=NEW (repeatable)"},
			&cli.StringFlag{Name: "archive-mode", Value: "off", Usage: "off: the restored server never archives (a copy); preserve: keep the backup's archive_command, for a server that replaces the primary"},
			&cli.BoolFlag{Name: "force", Usage: "replace the contents of a non-empty --pgdata or tablespace directory"},
			&cli.StringFlag{Name: "owner", Usage: "owner of the restored files when run as root (default: postgres)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan (--dry-run) or the outcome as JSON"},
			&cli.BoolFlag{Name: "start", Usage: "start the server and follow recovery to its end"},
			&cli.StringFlag{Name: "pg-bin", Usage: "directory of pg_ctl for --start (default: /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin, pg_config --bindir, PATH)"},
			&cli.IntFlag{Name: "port", Usage: "with --start: port for the restored server, which must be free (default: its configured one)"},
			&cli.StringFlag{Name: "socket-dir", Usage: "with --start: unix socket directory for the restored server (default: its configured one)"},
			&cli.StringFlag{Name: "instance-id", Usage: "ebs backups: attach the new volumes to this instance (default: ebs.instance_id, else this one, from IMDS)"},
			&cli.StringFlag{Name: "availability-zone", Usage: "ebs backups: create the volumes in this zone (default: the instance's, from IMDS or DescribeInstances)"},
			&cli.StringFlag{Name: "volume-type", Usage: "ebs backups: volume type for the new volumes (default: as recorded)"},
			&cli.IntFlag{Name: "iops", Usage: "ebs backups: provisioned IOPS (default: as recorded)"},
			&cli.IntFlag{Name: "throughput", Usage: "ebs backups: throughput in MiB/s for gp3 (default: as recorded)"},
			&cli.IntFlag{Name: "initialization-rate", Usage: "ebs backups: fetch snapshot blocks at this rate in MiB/s (100-300) instead of lazily"},
			&cli.StringFlag{Name: "mount-root", Usage: "ebs backups: mount the new volumes under this directory instead of at their recorded mount points"},
			&cli.DurationFlag{Name: "device-timeout", Value: restore.DefaultDeviceTimeout, Usage: "ebs backups: how long to wait for each attached volume's device to appear"},
			&cli.DurationFlag{Name: "start-timeout", Usage: "with --start: give up following after this long (0: no limit)"},
		),
		Action: runRestore,
	})
}

func runRestore(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError{msg: "restore takes no arguments; use --pgdata and --target-*"}
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if cfg.PGData == "" {
		return usageError{msg: "restore needs --pgdata (the directory to restore into), or PGDATA"}
	}
	t, err := parseTarget(c, c.String("target-action"))
	if err != nil {
		return err
	}
	tsmap := map[string]string{}
	for _, kv := range c.StringSlice("tablespace-map") {
		old, nw, ok := strings.Cut(kv, "=")
		if !ok || !filepath.IsAbs(old) || !filepath.IsAbs(nw) {
			return usageError{msg: fmt.Sprintf("--tablespace-map %q: want OLD=NEW with absolute paths", kv)}
		}
		tsmap[filepath.Clean(old)] = filepath.Clean(nw)
	}
	archiving := c.String("archive-mode") == "preserve"
	if am := c.String("archive-mode"); am != "preserve" && am != "off" {
		return usageError{msg: fmt.Sprintf("--archive-mode %q: want off or preserve", am)}
	}
	if c.Bool("start") && c.IsSet("port") {
		if err := restore.CheckPort(c.Int("port"), c.String("socket-dir")); err != nil {
			return usageError{msg: err.Error(), err: err}
		}
	}
	rc, r, log, err := restoreSource(c, cfg, "restore")
	if err != nil {
		return err
	}
	res, err := restore.Run(c.Context, restore.Options{
		Repo:           r,
		BackupID:       c.String("backup"),
		PGData:         cfg.PGData,
		Force:          c.Bool("force"),
		Target:         t,
		Standby:        c.Bool("standby"),
		TablespaceMap:  tsmap,
		RestoreCommand: rc,
		Owner:          c.String("owner"),
		NoArchive:      !archiving,
		DryRun:         c.Bool("dry-run"),
		Log:            log,
		Providers: restore.Providers(providerSettings(cfg, r, log, restore.EBS{InstanceID: cmp.Or(c.String("instance-id"), cfg.EBS.InstanceID),
			AZ: c.String("availability-zone"), DeviceTimeout: c.Duration("device-timeout"),
			VolumeType: c.String("volume-type"), IOPS: int32(c.Int("iops")), Throughput: int32(c.Int("throughput")),
			InitializationRate: int32(c.Int("initialization-rate")), MountRoot: c.String("mount-root")})),
	})
	if err != nil {
		return err
	}
	result := map[string]any{"backup": res.Backup.ID, "pgdata": res.Dest.PGData, "target": t.String(),
		"archive_mode": c.String("archive-mode"), "warnings": append([]string{}, res.Warnings...)}
	if c.Bool("dry-run") {
		if c.Bool("json") {
			result["plan"], result["restore_command"], result["dry_run"] = res.Plan, rc, true
			return printJSON(result)
		}
		for _, line := range res.Plan {
			fmt.Println(line)
		}
		fmt.Printf("restore_command = %s\n", restore.QuoteConf(rc))
		return nil
	}
	if !c.Bool("json") {
		fmt.Printf("restored backup %s into %s; recovery target: %s\n", res.Backup.ID, res.Dest.PGData, t)
	}
	if !c.Bool("start") {
		next := fmt.Sprintf("pg_ctl -D %s start", res.Dest.PGData)
		if c.Bool("json") {
			result["next"] = next
			return printJSON(result)
		}
		fmt.Printf("start the server (as its owner) to recover: %s\n", next)
		return nil
	}
	out, err := restore.Start(c.Context, restore.StartOptions{
		PGData: res.Dest.PGData, Major: res.Backup.PGMajor(), PGBin: c.String("pg-bin"),
		Owner: c.String("owner"), Port: c.Int("port"), SocketDir: c.String("socket-dir"),
		Target: t, Standby: c.Bool("standby"), Archiving: archiving, Out: humanOut(c), Timeout: c.Duration("start-timeout"),
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		result["outcome"] = map[string]string{"state": out.State, "replay_lsn": out.ReplayLSN, "message": out.Message, "log": out.LogFile}
		return printJSON(result)
	}
	if out.ReplayLSN != "" {
		fmt.Printf("%s (replayed up to %s)\n", out.Message, out.ReplayLSN)
	} else {
		fmt.Println(out.Message)
	}
	return nil
}

// restoreSource is what restore and drill open first: the
// restore_command of the recovered server, the repository (which must
// exist) and the command's logger.
func restoreSource(c *cli.Context, cfg config.Config, command string) (string, *repo.Repo, *slog.Logger, error) {
	rc, err := restoreCommandLine(c, cfg)
	if err != nil {
		return "", nil, nil, err
	}
	r, err := openExistingRepo(c.Context, cfg)
	if err != nil {
		return "", nil, nil, err
	}
	return rc, r, newLogger(cfg, command), nil
}

// humanOut is where restore and drill print their progress: stdout, or
// stderr when --json keeps stdout for the result.
func humanOut(c *cli.Context) io.Writer {
	if c.Bool("json") {
		return os.Stderr
	}
	return os.Stdout
}

// providerSettings are the restore providers' settings from cfg, for
// restore and drill; e is the ebs provider's.
func providerSettings(cfg config.Config, r *repo.Repo, log *slog.Logger, e restore.EBS) restore.ProviderSettings {
	return restore.ProviderSettings{
		Repo:           r,
		Concurrency:    cfg.Backup.Streams,
		Progress:       newProgress(os.Stderr, "restored"),
		CommandRestore: cfg.Command.Restore,
		CommandCleanup: cfg.Command.Cleanup,
		EBS:            e,
		NewEC2:         func(ctx context.Context) (*ebs.Client, error) { return ebsClient(ctx, cfg) },
		Log:            log,
	}
}

// targetFlags are the flags of a recovery target (--backup and the
// --target-* but --target-action), for restore and drill.
func targetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "backup", Value: restore.Latest, Usage: "backup id, or LATEST for the newest one that reaches the target"},
		&cli.StringFlag{Name: "target-time", Usage: "recover to this time, e.g. '2026-11-24 15:04:05+00'"},
		&cli.StringFlag{Name: "target-lsn", Usage: "recover to this WAL location, e.g. 0/5000028"},
		&cli.StringFlag{Name: "target-xid", Usage: "recover to this transaction id"},
		&cli.StringFlag{Name: "target-name", Usage: "recover to this restore point (pg_create_restore_point)"},
		&cli.BoolFlag{Name: "target-immediate", Usage: "stop as soon as the backup is consistent"},
		&cli.BoolFlag{Name: "target-inclusive", DisableDefaultText: true, Usage: "--target-inclusive=false stops just before the target; left out, recovery stops just after it (PostgreSQL's default)"},
		&cli.StringFlag{Name: "target-timeline", Usage: "latest (default), current or a timeline number"},
	}
}

// parseTarget reads the target flags (targetFlags) with the action.
func parseTarget(c *cli.Context, action string) (restore.Target, error) {
	spec := restore.TargetSpec{
		Time: c.String("target-time"), LSN: c.String("target-lsn"), XID: c.String("target-xid"),
		Name: c.String("target-name"), Immediate: c.Bool("target-immediate"),
		Action: action, Timeline: c.String("target-timeline"),
	}
	if c.IsSet("target-inclusive") {
		v := c.Bool("target-inclusive")
		spec.Inclusive = &v
	}
	t, err := restore.ParseTarget(spec)
	if err != nil {
		return t, usageError{msg: err.Error(), err: err}
	}
	return t, nil
}

// restoreCommandLine is the restore_command for the restored server: this
// executable (or walsnap-pg beside it) with the same repository settings. Settings that came from
// the environment or flags are passed as flags, because the server will
// not have this shell's environment.
func restoreCommandLine(c *cli.Context, cfg config.Config) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	environ := os.Environ()
	file, explicit := configFile(c, environ)
	if explicit {
		if file, err = filepath.Abs(file); err != nil {
			return "", err
		}
	} else if !config.FileExists(file) {
		file = ""
	}
	var flags []string
	for _, k := range config.Keys {
		if !k.UsedByFetch() {
			continue
		}
		_, fromFlag := flagValue(c, k.Flag())
		if !fromFlag && !slices.ContainsFunc(environ, func(kv string) bool {
			v, ok := strings.CutPrefix(kv, k.Env()+"=")
			return ok && v != ""
		}) {
			continue
		}
		v, err := cfg.Get(k.Name)
		if err != nil {
			return "", err
		}
		flags = append(flags, "--"+k.Flag()+"="+v)
	}
	// walsnap-pg, where it is installed beside this walsnap, answers the
	// prefetched segments without starting walsnap (see README).
	return restore.CommandLine(callstamp.FrontEndBeside(exe), file, flags), nil
}
