package restore

import (
	"context"
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
// WALSNAP_PGDATA afterwards fails the restore.
func (c *Command) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) error {
	p, err := c.payload(m)
	if err != nil {
		return err
	}
	ts, err := tablespaceLines(m, dest)
	if err != nil {
		return err
	}
	env := []string{
		"WALSNAP_BACKUP_ID=" + m.ID,
		"WALSNAP_SNAPSHOTS=" + strings.Join(p.Snapshots, "\n"),
		"WALSNAP_PGDATA=" + dest.PGData,
		"WALSNAP_SOURCE_PGDATA=" + m.PGData,
		"WALSNAP_TABLESPACES=" + strings.Join(ts, "\n"),
	}
	out := c.Output
	if out == nil {
		out = os.Stderr
	}
	c.Log.Info("running command.restore", "command", c.Script, "snapshots", p.Snapshots)
	start := time.Now()
	if err := shellcmd.Run(ctx, c.Script, env, out, out); err != nil {
		return fmt.Errorf("command.restore %q: %w", c.Script, err)
	}
	if _, err := os.Stat(filepath.Join(dest.PGData, "PG_VERSION")); err != nil {
		return fmt.Errorf("command.restore %q succeeded but left no data directory at %s: %w", c.Script, dest.PGData, err)
	}
	for _, t := range m.Tablespaces {
		if ents, err := os.ReadDir(dest.Tablespaces[t.OID]); err != nil || len(ents) == 0 {
			return fmt.Errorf("command.restore %q succeeded but left tablespace %s empty or absent at %s", c.Script, t.Name, dest.Tablespaces[t.OID])
		}
	}
	c.Log.Info("command.restore done", "duration", time.Since(start).Round(time.Millisecond))
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
