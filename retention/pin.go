package retention

import (
	"context"
	"errors"
	"fmt"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// Pin pins (or, with unpin, unpins) backup id, which must have a manifest,
// and returns what it did in one line. A backup being deleted, or failed,
// cannot be pinned.
func Pin(ctx context.Context, r *repo.Repo, id string, unpin bool) (string, error) {
	m, err := r.Manifest(ctx, id)
	if err != nil {
		return "", err
	}
	if unpin {
		if err := r.Unpin(ctx, id); err != nil {
			return "", err
		}
		return fmt.Sprintf("backup %s unpinned", id), nil
	}
	switch m.Status {
	case manifest.StatusDeleting:
		return "", fmt.Errorf("backup %s: %w: it can no longer be pinned", id, repo.ErrDeleting)
	case manifest.StatusFailed:
		return "", fmt.Errorf("backup %s failed: only a complete (or pending) backup can be pinned", id)
	}
	if err := r.Pin(ctx, id); err != nil {
		if errors.Is(err, repo.ErrDeleting) {
			return "", fmt.Errorf("%w: it can no longer be pinned", err)
		}
		return "", err
	}
	return fmt.Sprintf("backup %s pinned: delete never removes it", id), nil
}
