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
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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
func fileError(name string, err error) error {
	if strings.HasPrefix(err.Error(), name+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}
