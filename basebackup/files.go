package basebackup

import (
	"context"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/filebackup"
	"github.com/walsnap/walsnap/internal/manifest"
)

// Files is the built-in provider: a file-level copy of the data directory
// and every tablespace into the repository, as compressed tar parts.
type Files struct {
	Codec    compress.Codec
	Streams  int   // concurrent tar streams
	PartSize int64 // raw bytes per part; 0 = the engine's default
}

// Name implements Provider.
func (*Files) Name() manifest.Provider { return manifest.ProviderFiles }

// Capture implements Provider.
func (f *Files) Capture(ctx context.Context, job *Job) (*Captured, error) {
	sources := []filebackup.Source{{Tablespace: 0, Root: job.PGData}}
	for _, ts := range job.Tablespaces {
		sources = append(sources, filebackup.Source{Tablespace: ts.OID, Root: ts.Location})
	}
	res, err := filebackup.Backup(ctx, filebackup.BackupOptions{
		Repo:     job.Repo,
		BackupID: job.ID,
		Codec:    f.Codec,
		Streams:  f.Streams,
		PartSize: f.PartSize,
		Log:      job.Log,
		Progress: job.Progress,
	}, sources)
	if err != nil {
		return nil, err
	}
	return &Captured{
		Payload:  manifest.FilesPayload{Parts: res.Parts, Files: res.Files},
		BytesIn:  res.BytesIn,
		BytesOut: res.BytesOut,
	}, nil
}
