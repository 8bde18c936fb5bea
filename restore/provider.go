package restore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/filebackup"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// Provider puts a backup's data in place. The manifest's provider name
// chooses it (see Providers).
type Provider interface {
	// Plan describes, one line per step, what Materialize would do; it
	// changes nothing (--dry-run).
	Plan(ctx context.Context, m *manifest.Manifest, dest Destinations) ([]string, error)
	// Materialize fills dest with the backup's files: the data directory
	// and every tablespace at its (possibly remapped) location. For an
	// in-place provider (manifest.ProviderInfo.InPlace) the data is there
	// already and Materialize only checks it. What it built outside dest
	// (volumes, mounts) is in the *Built it returns (nil: nothing); when
	// it fails, it removes that itself.
	Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) (*Built, error)
}

// Built is what a provider's Materialize built beyond the files in the
// destinations, and how to remove it: the EBS volumes it created,
// attached and mounted, or what command.restore set up (removed by
// command.cleanup). A nil *Built is nothing.
type Built struct {
	// Volumes are the EBS volumes created, attached to Instance, and
	// Mounts where they are mounted (in mounting order).
	Volumes  []string
	Instance string
	Mounts   []string
	// Cleanup is the command that removes what command.restore set up
	// ("": none is configured).
	Cleanup string
	// Steps are how long each kind of step took, in the order they first
	// ran (ebs: create, attach, device, mount).
	Steps []Step
	undo  func(ctx context.Context) error
}

// Step is the time a kind of step took in all.
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Undo removes what was built: for EBS it unmounts the volumes, detaches
// and deletes them (even when ctx has ended); for the command provider it
// runs command.cleanup. Undo on a nil *Built does nothing.
func (b *Built) Undo(ctx context.Context) error {
	if b == nil || b.undo == nil {
		return nil
	}
	return b.undo(ctx)
}

// add counts d to the step name.
func (b *Built) add(name string, d time.Duration) {
	for i := range b.Steps {
		if b.Steps[i].Name == name {
			b.Steps[i].Seconds += d.Seconds()
			return
		}
	}
	b.Steps = append(b.Steps, Step{Name: name, Seconds: d.Seconds()})
}

// ProviderSettings configure the restore providers; only the one that the
// chosen backup names is used (and, for EBS, only then connects to EC2).
type ProviderSettings struct {
	Repo           *repo.Repo
	Concurrency    int                     // files: parts restored at once
	Progress       func(done, total int64) // files: optional
	CommandRestore string                  // command: command.restore
	CommandCleanup string                  // command: command.cleanup
	// EBS is the ebs provider without its client; NewEC2 makes the client
	// when an ebs backup is restored.
	EBS    EBS
	NewEC2 func(ctx context.Context) (*ebs.Client, error)
	Log    *slog.Logger
}

// Providers returns the restore provider of every provider in the
// manifest package's registry.
func Providers(s ProviderSettings) map[manifest.Provider]Provider {
	e := s.EBS
	e.Log = s.Log
	return map[manifest.Provider]Provider{
		manifest.ProviderFiles:    &Files{Repo: s.Repo, Concurrency: s.Concurrency, Log: s.Log, Progress: s.Progress},
		manifest.ProviderCommand:  &Command{Script: s.CommandRestore, Cleanup: s.CommandCleanup, Log: s.Log},
		manifest.ProviderExternal: External{},
		manifest.ProviderEBS:      &lazyEBS{p: e, newClient: s.NewEC2},
	}
}

// lazyEBS creates the EC2 client only when an ebs backup is restored:
// restores of other backups must not depend on the EC2 API or IMDS.
type lazyEBS struct {
	p         EBS
	newClient func(ctx context.Context) (*ebs.Client, error)
}

func (l *lazyEBS) provider(ctx context.Context) (*EBS, error) {
	if l.p.Client == nil {
		if l.newClient == nil {
			return nil, fmt.Errorf("ebs restore: no EC2 client")
		}
		client, err := l.newClient(ctx)
		if err != nil {
			return nil, err
		}
		l.p.Client = client
	}
	return &l.p, nil
}

func (l *lazyEBS) Plan(ctx context.Context, m *manifest.Manifest, dest Destinations) ([]string, error) {
	p, err := l.provider(ctx)
	if err != nil {
		return nil, err
	}
	return p.Plan(ctx, m, dest)
}

func (l *lazyEBS) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) (*Built, error) {
	p, err := l.provider(ctx)
	if err != nil {
		return nil, err
	}
	return p.Materialize(ctx, m, dest)
}

// External prepares backups whose snapshots an external orchestrator took
// (backup-start/backup-stop) and has already restored and mounted at the
// target: walsnap only turns the crash-consistent image into a recovery.
type External struct{}

// Plan implements Provider.
func (External) Plan(_ context.Context, m *manifest.Manifest, dest Destinations) ([]string, error) {
	return []string{fmt.Sprintf("use the data already at %s: restore the backup's snapshots there first (recorded by the orchestrator: %s)", dest.PGData, string(m.Payload))}, nil
}

// Materialize implements Provider: it only checks that the data is there.
func (External) Materialize(_ context.Context, m *manifest.Manifest, dest Destinations) (*Built, error) {
	dirs := append([]string{dest.PGData}, values(dest.Tablespaces)...)
	if _, err := os.Stat(filepath.Join(dest.PGData, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("backup %s: %s holds no PostgreSQL data directory: restore and mount the backup's snapshots there first", m.ID, dirs[0])
	}
	for _, d := range dirs[1:] {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("backup %s: tablespace directory %s is missing: restore its snapshot there first", m.ID, d)
		}
	}
	return nil, nil
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

func (f *Files) payload(m *manifest.Manifest) (*manifest.FilesPayload, error) {
	p, err := manifest.PayloadOf[manifest.FilesPayload](m)
	if err != nil {
		return nil, err
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

// Materialize implements Provider; it builds nothing beyond the files.
func (f *Files) Materialize(ctx context.Context, m *manifest.Manifest, dest Destinations) (*Built, error) {
	p, err := f.payload(m)
	if err != nil {
		return nil, err
	}
	dirs := map[uint32]string{0: dest.PGData}
	for oid, dir := range dest.Tablespaces {
		dirs[oid] = dir
	}
	return nil, filebackup.Restore(ctx, filebackup.RestoreOptions{
		Repo:        f.Repo,
		BackupID:    m.ID,
		Concurrency: f.Concurrency,
		Log:         f.Log,
		Progress:    f.Progress,
	}, p.Parts, dirs)
}
