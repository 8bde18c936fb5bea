package repo

import (
	"context"
	"fmt"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/storage/s3"
)

// Open connects to the repository at loc; s3 configures the S3 backend
// (unused for a file:// repository).
func Open(ctx context.Context, loc config.Location, s3opts config.S3) (*Repo, error) {
	switch loc.Scheme {
	case "file":
		st, err := fs.New(loc.Dir)
		if err != nil {
			return nil, fmt.Errorf("open repository: %w", err)
		}
		return New(st), nil
	case "s3":
		// The SDK's own errors would quote a bad endpoint whole.
		if err := config.CheckEndpoint("s3.endpoint", s3opts.Endpoint); err != nil {
			return nil, err
		}
		opts := s3.Options{
			Bucket:       loc.Bucket,
			Prefix:       loc.Prefix,
			Endpoint:     s3opts.Endpoint,
			Region:       s3opts.Region,
			PathStyle:    s3opts.PathStyle,
			SSE:          string(s3opts.SSE),
			SSEKMSKeyID:  s3opts.SSEKMSKeyID,
			StorageClass: s3opts.StorageClass,
			Checksums:    string(s3opts.Checksums),
			MaxAttempts:  s3opts.MaxAttempts,
			CAFile:       s3opts.CAFile,
		}
		// Connected on first use: a wal-fetch served from the prefetch
		// spool never needs the SDK client or the CA pool.
		return New(storage.Lazy(s3.Name(loc.Bucket, loc.Prefix), func(ctx context.Context) (storage.Store, error) {
			s, err := s3.New(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("open repository: %w", err)
			}
			return s, nil
		})), nil
	}
	return nil, fmt.Errorf("open repository: %w %q", config.ErrBadRepo, loc.String())
}
