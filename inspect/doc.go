// Package inspect answers the operator's questions about a repository
// and the cluster that archives into it, without changing either:
//
//   - Verify: is every backup restorable, to which points in time, along
//     which timelines, and is every stored byte what was written
//     (walsnap verify);
//   - Check: is the cluster configured to archive into this repository,
//     and does archiving work right now (walsnap check);
//   - Status: one screen, or Prometheus metrics, of where the archive and
//     the backups stand (walsnap status).
//
// It sits beside archive, basebackup and restore, imports none of them,
// and reads the repository through internal/repo and its model
// internal/catalog only. The only things it writes are its own records:
// the verify result (repo.PutResult) and check's test object, removed at
// once.
package inspect
