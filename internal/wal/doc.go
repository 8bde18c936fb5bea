// Package wal holds the pure logic walsnap needs about PostgreSQL's
// write-ahead log: log sequence numbers, segment names and arithmetic, the
// names of the files PostgreSQL hands to archive_command, timeline history
// files, and the long page header at the start of every WAL segment.
//
// Nothing here does I/O. The layouts follow PostgreSQL's
// src/include/access/xlog_internal.h (PostgreSQL 12 to 18).
package wal
