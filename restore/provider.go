package restore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/walsnap/walsnap/internal/filebackup"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// Provider puts a backup's data in place. It is chosen by the manifest's
// provider name.
type Provider interface {
	// Plan describes, one line per step, what Materialize would do; it
	// changes nothing (--dry-run).
	Plan(ctx context.Context, m *manifest.Manifest, dest Destinations) ([]string, error)
	// Materialize fills dest with the backup's files: the data directory
	// and every tablespace at its (possibly remapped) location.
	Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) error
}

// Destinations are where a restore puts the data directory and each
// tablespace (by OID).
type Destinations struct {
	PGData      string
	Tablespaces map[uint32]string
}

// Files restores backups taken by the files provider.
type Files struct {
	Repo        *repo.Repo
	Concurrency int
	Log         *slog.Logger
	Progress    func(done, total int64)
}

func (f *Files) payload(m *manifest.Manifest) (filebackup.Payload, error) {
	var p filebackup.Payload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return p, fmt.Errorf("backup %s: files payload: %w", m.ID, err)
	}
	if len(p.Parts) == 0 {
		return p, fmt.Errorf("backup %s: files payload lists no parts", m.ID)
	}
	return p, nil
}

// Plan implements Provider.
func (f *Files) Plan(_ context.Context, m *manifest.Manifest, dest Destinations) ([]string, error) {
	p, err := f.payload(m)
	if err != nil {
		return nil, err
	}
	var stored, raw int64
	count := map[uint32]int{}
	for _, part := range p.Parts {
		stored += part.StoredSize
		raw += part.RawSize
		count[part.Tablespace]++
	}
	lines := []string{fmt.Sprintf("download %d parts (%s stored, %s of files) and unpack %d files", len(p.Parts), manifest.Human(stored), manifest.Human(raw), p.Files)}
	lines = append(lines, fmt.Sprintf("  data directory → %s (%d parts)", dest.PGData, count[0]))
	for _, ts := range m.Tablespaces {
		lines = append(lines, fmt.Sprintf("  tablespace %s (oid %d, was %s) → %s (%d parts)", ts.Name, ts.OID, ts.Location, dest.Tablespaces[ts.OID], count[ts.OID]))
	}
	return lines, nil
}

// Materialize implements Provider.
func (f *Files) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) error {
	p, err := f.payload(m)
	if err != nil {
		return err
	}
	dirs := map[uint32]string{0: dest.PGData}
	for oid, dir := range dest.Tablespaces {
		dirs[oid] = dir
	}
	return filebackup.Restore(ctx, filebackup.RestoreOptions{
		Store:       f.Repo.Store(),
		Concurrency: f.Concurrency,
		Log:         f.Log,
		Progress:    f.Progress,
	}, p.Parts, dirs)
}
