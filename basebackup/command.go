package basebackup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/shellcmd"
)

// Command is the provider for snapshot systems walsnap does not drive
// itself (LVM, ZFS, btrfs, SAN arrays): a shell command snapshots the
// volumes while PostgreSQL is in backup mode and prints references to the
// snapshots, which the manifest records for the restore command.
type Command struct {
	// Script is run with /bin/sh -c; see Capture.
	Script string
	// Stderr receives the script's stderr; nil means os.Stderr.
	Stderr io.Writer
	// mountinfo is the mount table read for WALSNAP_MOUNT_POINTS; ""
	// means /proc/self/mountinfo.
	mountinfo string
}

// Name implements Provider.
func (*Command) Name() manifest.Provider { return manifest.ProviderCommand }

// Capture implements Provider. The script's environment adds
// WALSNAP_BACKUP_ID, WALSNAP_BACKUP_LABEL, WALSNAP_PGDATA, WALSNAP_START_LSN,
// WALSNAP_MOUNT_POINTS (the mount points holding PGDATA, the pg_wal target
// and each tablespace, one per line) and WALSNAP_TABLESPACES ("OID PATH"
// lines). Each non-blank line it prints on stdout is a snapshot reference;
// at least one is required. A non-zero exit, or the end of ctx, fails the
// capture.
func (c *Command) Capture(ctx context.Context, job *Job) (*Captured, error) {
	if c.Script == "" {
		return nil, errors.New("command.snapshot is not set")
	}
	env, err := c.env(job)
	if err != nil {
		return nil, err
	}
	stderr := c.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	job.Log.Info("running command.snapshot", "command", c.Script)
	start := time.Now()
	var stdout bytes.Buffer
	err = shellcmd.Run(ctx, c.Script, env, &stdout, stderr)
	out := stdout.Bytes()
	if err != nil {
		return nil, fmt.Errorf("command.snapshot %q: %w", c.Script, err)
	}
	var refs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			refs = append(refs, line)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("command.snapshot %q printed no snapshot reference on stdout", c.Script)
	}
	job.Log.Info("snapshots taken", "snapshots", refs, "duration", time.Since(start).Round(time.Millisecond))
	return &Captured{Payload: manifest.CommandPayload{Snapshots: refs, Command: c.Script}}, nil
}

// env is the script's documented environment for job.
func (c *Command) env(job *Job) ([]string, error) {
	paths := []string{job.PGData, filepath.Join(job.PGData, "pg_wal")}
	var ts []string
	for _, t := range job.Tablespaces {
		if strings.ContainsAny(t.Location, " \t\n") {
			return nil, fmt.Errorf("tablespace %s: location %q contains whitespace, which WALSNAP_TABLESPACES cannot carry", t.Name, t.Location)
		}
		paths = append(paths, t.Location)
		ts = append(ts, fmt.Sprintf("%d %s", t.OID, t.Location))
	}
	info := c.mountinfo
	if info == "" {
		info = "/proc/self/mountinfo"
	}
	mps, err := mountPoints(info, paths)
	if err != nil {
		return nil, err
	}
	return []string{
		"WALSNAP_BACKUP_ID=" + job.ID,
		"WALSNAP_BACKUP_LABEL=" + job.Label,
		"WALSNAP_PGDATA=" + job.PGData,
		"WALSNAP_START_LSN=" + job.StartLSN.String(),
		"WALSNAP_MOUNT_POINTS=" + strings.Join(mps, "\n"),
		"WALSNAP_TABLESPACES=" + strings.Join(ts, "\n"),
	}, nil
}

// mountPoints returns the mount points that hold paths (after resolving
// symbolic links), in the order of paths, without repeats. mountinfo is a
// file in the format of /proc/self/mountinfo.
func mountPoints(mountinfo string, paths []string) ([]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("mount points: %w", err)
	}
	defer f.Close()
	mounts, err := blockdev.ParseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("mount points: %s: %w", mountinfo, err)
	}
	var out []string
	for _, p := range paths {
		resolved, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("mount points: %w", err)
		}
		m, err := blockdev.MountFor(mounts, resolved)
		if err != nil {
			return nil, fmt.Errorf("mount points: %w", err)
		}
		if strings.Contains(m.MountPoint, "\n") {
			return nil, fmt.Errorf("mount point %q contains a newline, which WALSNAP_MOUNT_POINTS cannot carry", m.MountPoint)
		}
		if !slices.Contains(out, m.MountPoint) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}
