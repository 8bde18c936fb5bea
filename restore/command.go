package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/shellcmd"
)

// Command restores backups taken by the command provider: a shell command
// (command.restore) puts the data of the recorded snapshots in place, for
// example by mounting a volume made from them at the data directory.
type Command struct {
	// Script is run with /bin/sh -c; see Materialize.
	Script string
	// Cleanup (command.cleanup), when set, removes what Script set up
	// (unmounts, detaches, destroys a clone); it is Built.Undo. It runs
	// with the same environment, after the server has stopped.
	Cleanup string
	// Output receives the script's stdout and stderr; nil means os.Stderr.
	Output io.Writer
	Log    *slog.Logger
}

func (c *Command) payload(m *manifest.Manifest) (*manifest.CommandPayload, error) {
	p, err := manifest.PayloadOf[manifest.CommandPayload](m)
	if err != nil {
		return nil, err
	}
	if len(p.Snapshots) == 0 {
		return p, fmt.Errorf("backup %s: command payload lists no snapshots", m.ID)
	}
	if c.Script == "" {
		return p, fmt.Errorf("backup %s was taken by command.snapshot %q: set command.restore to restore it", m.ID, p.Command)
	}
	return p, nil
}

// Plan implements Provider.
func (c *Command) Plan(_ context.Context, m *manifest.Manifest, dest Destinations) ([]string, error) {
	p, err := c.payload(m)
	if err != nil {
		return nil, err
	}
	if _, err := tablespaceLines(m, dest); err != nil {
		return nil, err
	}
	lines := []string{fmt.Sprintf("run command.restore %q on the snapshots that %q printed:", c.Script, p.Command)}
	for _, s := range p.Snapshots {
		lines = append(lines, "  snapshot "+s)
	}
	lines = append(lines, fmt.Sprintf("  data directory → %s (was %s)", dest.PGData, m.PGData))
	for _, ts := range m.Tablespaces {
		lines = append(lines, fmt.Sprintf("  tablespace %s (oid %d, was %s) → %s", ts.Name, ts.OID, ts.Location, dest.Tablespaces[ts.OID]))
	}
	return lines, nil
}

// Materialize implements Provider. The script's environment adds
// WALSNAP_BACKUP_ID, WALSNAP_SNAPSHOTS (the references as the snapshot
// command printed them, one per line), WALSNAP_PGDATA (where the data
// directory must be once the script exits), WALSNAP_SOURCE_PGDATA (the data
// directory at backup time) and WALSNAP_TABLESPACES ("OID OLDPATH NEWPATH"
// lines). A non-zero exit, the end of ctx, or no data directory at
// WALSNAP_PGDATA afterwards fails the restore; then command.cleanup, when
// set, runs. The Built it returns names command.cleanup, which its Undo
// runs.
func (c *Command) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) (_ *Built, err error) {
	p, err := c.payload(m)
	if err != nil {
		return nil, err
	}
	env, err := c.env(m, p, dest)
	if err != nil {
		return nil, err
	}
	built := &Built{Cleanup: c.Cleanup}
	if c.Cleanup != "" {
		built.undo = func(ctx context.Context) error { return c.run(ctx, "command.cleanup", c.Cleanup, env) }
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, built.Undo(context.WithoutCancel(ctx)))
		}
	}()
	c.Log.Info("running command.restore", "command", c.Script, "snapshots", p.Snapshots)
	start := time.Now()
	if err := c.run(ctx, "command.restore", c.Script, env); err != nil {
		return nil, err
	}
	built.add("command.restore", time.Since(start))
	if _, err := os.Stat(filepath.Join(dest.PGData, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("command.restore %q succeeded but left no data directory at %s: %w", c.Script, dest.PGData, err)
	}
	for _, t := range m.Tablespaces {
		if ents, err := os.ReadDir(dest.Tablespaces[t.OID]); err != nil || len(ents) == 0 {
			return nil, fmt.Errorf("command.restore %q succeeded but left tablespace %s empty or absent at %s", c.Script, t.Name, dest.Tablespaces[t.OID])
		}
	}
	c.Log.Info("command.restore done", "duration", time.Since(start).Round(time.Millisecond))
	return built, nil
}

// env is the environment of command.restore and command.cleanup.
func (c *Command) env(m *manifest.Manifest, p *manifest.CommandPayload, dest Destinations) ([]string, error) {
	ts, err := tablespaceLines(m, dest)
	if err != nil {
		return nil, err
	}
	return []string{
		"WALSNAP_BACKUP_ID=" + m.ID,
		"WALSNAP_SNAPSHOTS=" + strings.Join(p.Snapshots, "\n"),
		"WALSNAP_PGDATA=" + dest.PGData,
		"WALSNAP_SOURCE_PGDATA=" + m.PGData,
		"WALSNAP_TABLESPACES=" + strings.Join(ts, "\n"),
	}, nil
}

// run runs one of the provider's commands (what names its setting), its
// output on Output.
func (c *Command) run(ctx context.Context, what, script string, env []string) error {
	out := c.Output
	if out == nil {
		out = os.Stderr
	}
	if err := shellcmd.Run(ctx, script, env, out, out); err != nil {
		return fmt.Errorf("%s %q: %w", what, script, err)
	}
	return nil
}

// tablespaceLines are the "OID OLDPATH NEWPATH" lines of WALSNAP_TABLESPACES.
func tablespaceLines(m *manifest.Manifest, dest Destinations) ([]string, error) {
	var lines []string
	for _, t := range m.Tablespaces {
		nw := dest.Tablespaces[t.OID]
		if strings.ContainsAny(t.Location+nw, " \t\n") {
			return nil, fmt.Errorf("tablespace %s: %q → %q: paths with whitespace cannot be passed in WALSNAP_TABLESPACES", t.Name, t.Location, nw)
		}
		lines = append(lines, fmt.Sprintf("%d %s %s", t.OID, t.Location, nw))
	}
	return lines, nil
}
