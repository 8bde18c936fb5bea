package fs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// DeleteMany implements storage.Store. It unlinks every object first, then
// fsyncs each directory that lost one, once, and prunes it (and its
// parents) when empty: a directory of 100,000 WAL segments costs one
// fsync, where as many Delete calls would cost one each.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("fs delete %s: %w", key, err)
		}
	}
	var errs []error
	dirs := map[string]bool{}
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("fs delete: %w", err))
			break
		}
		path := s.path(key)
		removed, err := unlinkObject(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("fs delete %s: %w", key, err))
		}
		if removed {
			dirs[filepath.Dir(path)] = true
		}
	}
	// Deepest first, so that a parent is pruned after its children.
	for _, dir := range slices.SortedFunc(maps.Keys(dirs), func(a, b string) int { return cmp.Compare(len(b), len(a)) }) {
		if err := syncDir(dir); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("fs delete: sync %s: %w", dir, err))
			continue
		}
		// As in Delete: a concurrent put either keeps the directory
		// non-empty or re-creates it.
		for ; dir != s.root; dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// unlinkObject removes the object file at path and reports whether it did;
// a missing object, or a directory (a key prefix, not an object), is left
// alone.
func unlinkObject(path string) (bool, error) {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return false, nil
	case err != nil:
		return false, err
	case st.IsDir():
		return false, nil
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
