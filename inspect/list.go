package inspect

import (
	"context"
	"fmt"
	"io"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// WriteBackupList prints backup-list's table of ms and, under it, the
// oldest recovery point: the earliest time a restore can reach.
func WriteBackupList(ctx context.Context, r *repo.Repo, w io.Writer, ms []*manifest.Manifest) error {
	if err := manifest.WriteTable(w, ms); err != nil {
		return err
	}
	cat, err := catalog.Load(ctx, r)
	if err != nil {
		return err
	}
	t, m, ok := cat.OldestRecoveryPoint()
	if !ok {
		_, err = fmt.Fprintln(w, "\noldest recovery point: none (no complete backup has all its WAL)")
		return err
	}
	_, err = fmt.Fprintf(w, "\noldest recovery point: %s (backup %s, LSN %s)\n", t.UTC().Format("2006-01-02 15:04:05Z"), m.ID, m.StopLSN)
	return err
}
