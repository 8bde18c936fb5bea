// Package filebackup copies the files of a PostgreSQL cluster into a
// repository as compressed tar streams, and back. It is the engine of the
// built-in "files" backup provider and runs while the cluster is in
// (non-exclusive) backup mode, so files change under it: what it stores is
// each file as read at some moment, which WAL replay then repairs. Nothing
// is silently lost: a file that vanishes between scan and read is skipped (it
// was deleted, which WAL replay also does), a file that shrinks is padded
// with zeros to its scanned size, one that grows is read up to that size,
// and any other error fails the backup.
//
// # What is copied
//
// Every Source is walked without following symbolic links (a symlink is
// stored as a symlink; only a source's root is followed). Sockets, FIFOs and
// devices are skipped. Following PostgreSQL's own base backup
// (src/backend/backup/basebackup.c, the same lists in 13 to 18) and the
// "Making a Base Backup Using the Low Level API" documentation:
//
//   - In the data directory (Tablespace 0), the directories pg_wal,
//     pg_dynshmem, pg_notify, pg_replslot, pg_serial, pg_snapshots,
//     pg_stat_tmp, pg_subtrans and pg_tblspc are stored as empty directories,
//     also when they are symlinks. pg_wal gains an empty archive_status, and
//     an empty summaries when the cluster has one (PostgreSQL 17+).
//     PostgreSQL recreates the pg_tblspc links from tablespace_map at
//     recovery; the tablespaces themselves are Sources of their own.
//   - In every source, these files are skipped: postmaster.pid,
//     postmaster.opts, backup_label, tablespace_map, backup_manifest,
//     postgresql.auto.conf.tmp, current_logfiles.tmp and current_logfiles
//     (which the logging collector rewrites at startup), pg_internal.init*
//     (relation cache init files, rebuilt at startup), any file or
//     directory whose name starts with pgsql_tmp, and temporary relations
//     (t<backend>_<relfilenode>... in database directories), which
//     PostgreSQL removes at startup.
//   - A directory that is another Source's root (a tablespace inside the
//     data directory) is stored empty, so that nothing is copied twice.
//   - Unlogged relations are copied whole: that is simplest, and recovery
//     resets them from their init forks anyway.
//
// # Format
//
// Each part is a tar stream (USTAR, PAX where needed) compressed with the
// backup's codec, stored as a payload part of the backup named
// part-<worker>-<seq>.tar<suffix> (the repository decides where) and never
// overwritten. Entry names are relative slash paths. A file
// larger than PartSize is split into pieces of at most PartSize bytes, each a
// tar entry of its own with the PAX records WALSNAP.offset (where the piece
// starts) and WALSNAP.size (the file's size); Restore reassembles them.
// Every part object carries the repository's checksum metadata (SHA-256 and
// size of the raw tar bytes, codec), which the manifest.Part record repeats.
//
// Restore resolves every path with openat2(2) confined below its
// destination, so it needs Linux 5.6 or later.
package filebackup

import (
	"errors"
	"log/slog"
	"sync"
)

// Source is one directory tree to copy: the data directory (Tablespace 0)
// or a user tablespace's directory (its OID).
type Source struct {
	Tablespace uint32
	Root       string
}

// PAX records of a piece of a split file.
const (
	paxOffset = "WALSNAP.offset" // offset of the piece in the file
	paxSize   = "WALSNAP.size"   // size of the whole file
)

// Defaults of BackupOptions and RestoreOptions.
const (
	DefaultStreams     = 2
	DefaultPartSize    = 256 << 20
	DefaultConcurrency = 2
)

// ioBufSize is the size of the buffers files are read and written with.
const ioBufSize = 1 << 20

// logger returns l, or a logger that discards everything.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// progress serializes calls to a progress callback from several workers.
type progress struct {
	mu    sync.Mutex
	fn    func(done, total int64)
	done  int64
	total int64
}

func (p *progress) add(n int64) {
	if p.fn == nil || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.fn(p.done, p.total)
}

// errBadEntry marks an archive entry that Restore refuses.
var errBadEntry = errors.New("invalid entry")
