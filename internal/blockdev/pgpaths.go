package blockdev

import (
	"fmt"
	"os"
	"path/filepath"
)

// PostgreSQLPaths returns the directories a snapshot must cover, each made
// absolute and symlink-resolved: pgdata, the target of pg_wal when pg_wal is
// a symlink (initdb --waldir), and each tablespace location. Empty locations
// (pg_default and pg_global report "") are skipped; duplicates are dropped.
func PostgreSQLPaths(pgdata string, tablespaces []string) ([]string, error) {
	data, err := resolvePath(pgdata)
	if err != nil {
		return nil, fmt.Errorf("pgdata: %w", err)
	}
	paths := []string{data}
	wal := filepath.Join(data, "pg_wal")
	fi, err := os.Lstat(wal)
	if err != nil {
		return nil, fmt.Errorf("pgdata %s: %w", data, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := resolvePath(wal)
		if err != nil {
			return nil, fmt.Errorf("pg_wal: %w", err)
		}
		paths = append(paths, target)
	}
	for _, ts := range tablespaces {
		if ts == "" {
			continue
		}
		loc, err := resolvePath(ts)
		if err != nil {
			return nil, fmt.Errorf("tablespace: %w", err)
		}
		paths = append(paths, loc)
	}
	return dedupe(paths), nil
}

// resolvePath makes p absolute and resolves its symlinks; it must be a directory.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", resolved)
	}
	return resolved, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
