package restore

import (
	"fmt"
	"strings"

	"github.com/walsnap/walsnap/internal/manifest"
)

// Latest selects the newest usable backup.
const Latest = "LATEST"

// Choose picks the backup to restore for the target from backups (oldest
// first, as repo.Backups returns them): the named one, or the newest
// complete backup of this cluster whose consistency point (its stop) is at
// or before the target. A target earlier than every backup's stop is
// refused with the earliest reachable point in the message. A backup
// being deleted (its payload may be going) is never chosen.
func Choose(backups []*manifest.Manifest, id string, sysID uint64, t Target) (*manifest.Manifest, error) {
	var usable []*manifest.Manifest
	for _, m := range backups {
		if m.Status == manifest.StatusComplete && (sysID == 0 || m.SystemID == sysID) {
			usable = append(usable, m)
		}
	}
	if id != "" && !strings.EqualFold(id, Latest) {
		for _, m := range backups {
			if m.ID != id {
				continue
			}
			if m.Status == manifest.StatusDeleting {
				return nil, fmt.Errorf("backup %s is being deleted (walsnap delete) and cannot be restored", id)
			}
			if m.Status != manifest.StatusComplete {
				return nil, fmt.Errorf("backup %s is %s and cannot be restored", id, m.Status)
			}
			if sysID != 0 && m.SystemID != sysID {
				return nil, fmt.Errorf("backup %s is of database system %d, not this repository's %d", id, m.SystemID, sysID)
			}
			if !reachable(m, t) {
				return nil, fmt.Errorf("backup %s is consistent only from %s (LSN %s): it cannot reach the target %s", id, m.StopTime.Format("2006-01-02 15:04:05.999999Z07:00"), m.StopLSN, t)
			}
			return m, nil
		}
		return nil, fmt.Errorf("backup %s: %w", id, manifest.ErrNotFound)
	}
	if len(usable) == 0 {
		return nil, fmt.Errorf("the repository has no complete backup: %w", manifest.ErrNotFound)
	}
	for i := len(usable) - 1; i >= 0; i-- {
		if reachable(usable[i], t) {
			return usable[i], nil
		}
	}
	first := usable[0]
	return nil, fmt.Errorf("target %s is earlier than every backup: the earliest reachable point is %s (LSN %s, backup %s)",
		t, first.StopTime.Format("2006-01-02 15:04:05.999999Z07:00"), first.StopLSN, first.ID)
}

// reachable reports whether recovery from m can stop at the target: the
// backup must be consistent (past its stop) before the target.
func reachable(m *manifest.Manifest, t Target) bool {
	switch t.Kind {
	case TargetTime:
		return !m.StopTime.After(t.Time)
	case TargetLSN:
		return m.StopLSN <= t.LSN
	}
	return true
}
