// Package spool says where walsnap keeps a cluster's local state: the
// push-ahead records and prefetched WAL of the archive commands, and the
// locks and sockets of backups. By default it is pg_wal/.walsnap, which
// only the cluster's owner (and root) can create anything in (DESIGN.md
// rule 11); spool_dir overrides it. Whatever root creates there is given
// to the owner of the directory it lives in, so that the server's own
// user can always use it afterwards.
package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// DirName is the spool directory created inside pg_wal by default.
const DirName = ".walsnap"

// Dir returns the configured spool directory, or the default one in the
// WAL directory walDir.
func Dir(configured, walDir string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(walDir, DirName)
}

// RunDir is where local locks and sockets of the cluster whose data
// directory is pgdata live: <spool>/run.
func RunDir(configured, pgdata string) string {
	return filepath.Join(Dir(configured, filepath.Join(pgdata, "pg_wal")), "run")
}

// MkdirAll creates dir and its missing parents with mode 0700. Run as
// root, each directory it creates gets the owner of the nearest existing
// parent, so that a root run never leaves the cluster's owner a directory
// it cannot use.
func MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return err
	}
	if err := MkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return Adopt(dir)
}

// Adopt gives path the owner of its parent directory when running as
// root; otherwise it does nothing.
func Adopt(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return os.Lchown(path, int(st.Uid), int(st.Gid))
}
