// Package archive implements wal-push (PostgreSQL's archive_command) and
// wal-fetch (restore_command) on a walsnap repository, with push-ahead of
// the archiver's backlog and prefetch during recovery.
//
// Bookkeeping lives in a walsnap-owned spool directory (default
// pg_wal/.walsnap) and is bounded: push-ahead records are removed when used
// or when their segment is gone, prefetched files when recovery has passed
// them or they grow old. PostgreSQL's archive_status is never touched.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/repo"
)

// SpoolDirName is the spool directory created inside pg_wal by default.
const SpoolDirName = ".walsnap"

// spoolDir returns the configured spool directory or the default one next
// to the WAL file being handled.
func spoolDir(configured, walDir string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(walDir, SpoolDirName)
}

type cachedIdentity struct {
	Repo     string        `json:"repo"`
	Identity repo.Identity `json:"identity"`
}

// loadIdentity returns the repository identity, from the spool's cache when
// it was recorded for the same repository, else from the repository (and
// then caches it). The identity never changes once written, so the cache
// cannot go stale for its repository. It returns repo.ErrNoIdentity when the
// repository has none yet.
func loadIdentity(ctx context.Context, r *repo.Repo, spool string) (repo.Identity, error) {
	path := filepath.Join(spool, "identity.json")
	if data, err := os.ReadFile(path); err == nil {
		var c cachedIdentity
		if json.Unmarshal(data, &c) == nil && c.Repo == r.String() {
			if _, err := repo.ParseIdentity(mustJSON(c.Identity)); err == nil {
				return c.Identity, nil
			}
		}
	}
	id, err := r.Identity(ctx)
	if err != nil {
		return repo.Identity{}, err
	}
	cacheIdentity(r, spool, id)
	return id, nil
}

// cacheIdentity records id for r in the spool; failures only cost a GET
// next time, so they are ignored.
func cacheIdentity(r *repo.Repo, spool string, id repo.Identity) {
	if os.MkdirAll(spool, 0o700) != nil {
		return
	}
	_ = fsutil.WriteFileAtomic(filepath.Join(spool, "identity.json"), mustJSON(cachedIdentity{Repo: r.String(), Identity: id}), 0o600)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sweep removes files in dir for which drop returns true. Errors are
// ignored: sweeping is housekeeping and never fails a command.
func sweep(dir string, drop func(name string, fi os.FileInfo) bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.IsDir() {
			continue
		}
		if drop(e.Name(), fi) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func olderThan(fi os.FileInfo, d time.Duration) bool { return time.Since(fi.ModTime()) > d }

// errorsIsNotExist is errors.Is(err, os.ErrNotExist), named for brevity.
func errorsIsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// fileError prefixes an error with the WAL file name, once.
func fileError(name string, err error) error { return fmt.Errorf("%s: %w", name, err) }
