// Package storage defines the narrow object-store interface that every
// walsnap repository backend (S3, local filesystem) implements.
//
// Contract shared by all backends and checked by the conformance suite in
// storage/storagetest:
//   - Keys are slash-separated relative paths ("wal/00000001/...zst"); a key
//     never starts with "/" and never contains "." or ".." elements.
//   - A missing object yields an error that matches ErrNotExist with
//     errors.Is (it wraps fs.ErrNotExist).
//   - PutIfAbsent never overwrites: when the key already exists it returns an
//     error matching ErrExists and leaves the stored object untouched.
//   - An object becomes visible to Get/Head/List only once it is complete.
package storage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// ErrNotExist is returned (wrapped) when an object does not exist.
var ErrNotExist = fs.ErrNotExist

// ErrExists is returned (wrapped) by PutIfAbsent when the key is taken.
var ErrExists = errors.New("object already exists")

// MaxDeleteBatch is the most keys one S3 DeleteObjects request takes.
const MaxDeleteBatch = 1000

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64             // stored (possibly compressed) size in bytes
	ModTime  time.Time         // last modification time as reported by the backend
	Metadata map[string]string // user metadata; keys are lower-case; nil from List
}

// Store is a flat key/value object store.
type Store interface {
	// PutIfAbsent stores size bytes read from r under key with the given
	// metadata, unless key already exists (then ErrExists). r may be read
	// more than once: implementations seek it back to the start before a
	// retry.
	PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error
	// Get opens an object for reading. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	// Head returns an object's size and metadata without its content.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes an object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// DeleteMany removes the objects keys, in batches where the backend
	// has them (S3 DeleteObjects, up to MaxDeleteBatch keys a request).
	// Missing objects are not an error. An invalid key fails the call
	// before anything is deleted; otherwise it goes on past failures and
	// returns them all, and the objects it did not report are gone.
	DeleteMany(ctx context.Context, keys []string) error
	// String describes the store for logs, without credentials.
	String() string
}
