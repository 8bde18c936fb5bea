package repo

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"

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
		// spool never needs the SDK client, the CA pool or the region.
		return New(storage.Lazy(s3.Name(loc.Bucket, loc.Prefix), func(ctx context.Context) (storage.Store, error) {
			opts.Region = s3.DiscoverRegion(ctx, opts)
			s, err := s3.New(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("open repository: %w", err)
			}
			return s, nil
		})), nil
	}
	return nil, fmt.Errorf("open repository: %w %q", config.ErrBadRepo, loc.String())
}

// OpenExisting opens the repository at loc and checks that there is one:
// a file:// directory that exists (Open would create it) holding a
// walsnap.json, or a bucket prefix holding one. Commands that read a
// repository use it, so that a mistyped URL says so instead of showing an
// empty one.
func OpenExisting(ctx context.Context, loc config.Location, s3opts config.S3) (*Repo, error) {
	if loc.Scheme == "file" {
		if _, err := os.Stat(loc.Dir); errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("no repository at %s: directory %s does not exist (check repo, --repo or WALSNAP_REPO)", loc, loc.Dir)
		}
	}
	r, err := Open(ctx, loc, s3opts)
	if err != nil {
		return nil, err
	}
	if _, err := r.Identity(ctx); errors.Is(err, ErrNoIdentity) {
		return nil, fmt.Errorf("no repository at %s: there is no walsnap.json, which the first wal-push or backup writes (check repo, --repo or WALSNAP_REPO)", loc)
	} else if err != nil {
		return nil, err
	}
	return r, nil
}
