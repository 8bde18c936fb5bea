package filebackup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// emptiedDirs are the data directory's subdirectories stored without their
// contents (see the package documentation).
var emptiedDirs = map[string]bool{
	"pg_wal":       true,
	"pg_dynshmem":  true,
	"pg_notify":    true,
	"pg_replslot":  true,
	"pg_serial":    true,
	"pg_snapshots": true,
	"pg_stat_tmp":  true,
	"pg_subtrans":  true,
	"pg_tblspc":    true,
}

// skippedNames are names never stored, in any source and at any depth.
var skippedNames = map[string]bool{
	"postmaster.pid":           true,
	"postmaster.opts":          true,
	"backup_label":             true,
	"tablespace_map":           true,
	"backup_manifest":          true,
	"postgresql.auto.conf.tmp": true,
	"current_logfiles":         true,
	"current_logfiles.tmp":     true,
}

// skippedName reports whether an entry called name is never stored.
func skippedName(name string) bool {
	return skippedNames[name] ||
		strings.HasPrefix(name, "pg_internal.init") ||
		strings.HasPrefix(name, "pgsql_tmp")
}

// inDatabaseDir reports whether dir (relative to the root of tablespace ts)
// is a database directory: base/<oid> in the data directory,
// PG_<version>_<catversion>/<oid> in a tablespace.
func inDatabaseDir(ts uint32, dir string) bool {
	parent, db, ok := strings.Cut(dir, "/")
	if !ok || db == "" || strings.Trim(db, "0123456789") != "" {
		return false
	}
	if ts == 0 {
		return parent == "base"
	}
	return strings.HasPrefix(parent, "PG_")
}

// tempRelation reports whether name is a temporary relation's file,
// t<backend>_<relfilenode>[_<fork>][.<segment>], as PostgreSQL's
// looks_like_temp_rel_name.
func tempRelation(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	if rest, ok = cutDigits(rest); !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, "_"); !ok {
		return false
	}
	if rest, ok = cutDigits(rest); !ok {
		return false
	}
	for _, fork := range []string{"_fsm", "_vm", "_init"} {
		if r, ok := strings.CutPrefix(rest, fork); ok {
			rest = r
			break
		}
	}
	if rest == "" {
		return true
	}
	if rest, ok = strings.CutPrefix(rest, "."); !ok {
		return false
	}
	rest, ok = cutDigits(rest)
	return ok && rest == ""
}

// cutDigits removes the leading decimal digits of s; ok is false when
// there are none.
func cutDigits(s string) (rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[i:], i > 0
}

// entry is a regular file, directory or symlink found by the scan.
type entry struct {
	rel    string      // slash-separated path below the source root
	abs    string      // path on disk
	typ    byte        // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode   fs.FileMode // permission bits
	size   int64       // size at scan time (regular files)
	mtime  time.Time
	link   string      // symlink target
	stored atomic.Bool // a regular file: a piece of it was stored
}

// scanner walks one source.
type scanner struct {
	ctx   context.Context
	log   *slog.Logger
	src   Source
	other []fs.FileInfo // roots of the other sources, not to be descended into
	out   []*entry
}

// scan lists what to store of src. roots holds every source's root
// directory, src's own included.
func scan(ctx context.Context, log *slog.Logger, src Source, roots map[uint32]fs.FileInfo) ([]*entry, error) {
	s := &scanner{ctx: ctx, log: log, src: src}
	for ts, fi := range roots {
		if ts != src.Tablespace {
			s.other = append(s.other, fi)
		}
	}
	if err := s.walk(src.Root, ""); err != nil {
		return nil, err
	}
	return s.out, nil
}

// walk adds the entries below the directory dirAbs (dirRel in the archive).
func (s *scanner) walk(dirAbs, dirRel string) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	des, err := os.ReadDir(dirAbs)
	if err != nil {
		if dirRel != "" && errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("directory vanished during the scan, skipped", "path", dirAbs)
			return nil
		}
		return fmt.Errorf("read directory %s: %w", dirAbs, err)
	}
	for _, de := range des {
		name := de.Name()
		abs := filepath.Join(dirAbs, name)
		rel := path.Join(dirRel, name)
		if skippedName(name) || (inDatabaseDir(s.src.Tablespace, dirRel) && tempRelation(name)) {
			s.log.Debug("excluded from the backup", "path", abs)
			continue
		}
		fi, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("vanished during the scan, skipped", "path", abs)
			continue
		}
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		isLink := fi.Mode()&fs.ModeSymlink != 0
		if s.src.Tablespace == 0 && dirRel == "" && emptiedDirs[name] && (fi.IsDir() || isLink) {
			s.emptied(abs, rel, fi)
			continue
		}
		switch {
		case fi.Mode().IsRegular():
			s.add(&entry{rel: rel, abs: abs, typ: tar.TypeReg, mode: fi.Mode().Perm(), size: fi.Size(), mtime: fi.ModTime()})
		case fi.IsDir():
			s.add(&entry{rel: rel, abs: abs, typ: tar.TypeDir, mode: fi.Mode().Perm(), mtime: fi.ModTime()})
			if s.isOtherRoot(fi) {
				s.log.Debug("directory is another source's root, stored empty", "path", abs)
				continue
			}
			if err := s.walk(abs, rel); err != nil {
				return err
			}
		case isLink:
			target, err := os.Readlink(abs)
			if errors.Is(err, fs.ErrNotExist) {
				s.log.Debug("vanished during the scan, skipped", "path", abs)
				continue
			}
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			s.add(&entry{rel: rel, abs: abs, typ: tar.TypeSymlink, mode: fi.Mode().Perm(), mtime: fi.ModTime(), link: target})
		default:
			s.log.Debug("special file skipped", "path", abs, "type", fi.Mode().Type().String())
		}
	}
	return nil
}

// emptied adds a directory of the data directory whose contents are not
// stored. A symlink is stored as the directory it points to. pg_wal gains
// its archive_status and, when present, summaries subdirectories.
func (s *scanner) emptied(abs, rel string, fi fs.FileInfo) {
	mode := fs.FileMode(0o700)
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		fi, mode = st, st.Mode().Perm()
	}
	s.log.Debug("contents excluded from the backup", "path", abs)
	s.add(&entry{rel: rel, abs: abs, typ: tar.TypeDir, mode: mode, mtime: fi.ModTime()})
	if rel != "pg_wal" {
		return
	}
	s.add(&entry{rel: rel + "/archive_status", abs: filepath.Join(abs, "archive_status"), typ: tar.TypeDir, mode: mode, mtime: fi.ModTime()})
	if st, err := os.Stat(filepath.Join(abs, "summaries")); err == nil && st.IsDir() {
		s.add(&entry{rel: rel + "/summaries", abs: filepath.Join(abs, "summaries"), typ: tar.TypeDir, mode: mode, mtime: fi.ModTime()})
	}
}

func (s *scanner) add(e *entry) { s.out = append(s.out, e) }

func (s *scanner) isOtherRoot(fi fs.FileInfo) bool {
	for _, o := range s.other {
		if os.SameFile(fi, o) {
			return true
		}
	}
	return false
}
