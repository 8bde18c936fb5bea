package repo

import (
	"context"
	"fmt"
	"strings"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/storage/s3"
)

// Open connects to the repository that cfg names.
func Open(ctx context.Context, cfg config.Config) (*Repo, error) {
	scheme, loc, err := config.ParseRepo(cfg.Repo)
	if err != nil {
		return nil, err
	}
	var st storage.Store
	switch scheme {
	case "file":
		st, err = fs.New(loc)
	case "s3":
		bucket, prefix, _ := strings.Cut(loc, "/")
		opts := s3.Options{
			Bucket:       bucket,
			Prefix:       prefix,
			Endpoint:     cfg.S3.Endpoint,
			Region:       cfg.S3.Region,
			PathStyle:    cfg.S3.PathStyle,
			SSE:          cfg.S3.SSE,
			SSEKMSKeyID:  cfg.S3.SSEKMSKeyID,
			StorageClass: cfg.S3.StorageClass,
			Checksums:    cfg.S3.Checksums,
			MaxAttempts:  cfg.S3.MaxAttempts,
			CAFile:       cfg.S3.CAFile,
		}
		// Connected on first use: a wal-fetch served from the prefetch
		// spool never needs the SDK client or the CA pool.
		st = storage.Lazy(s3.Name(bucket, prefix), func(ctx context.Context) (storage.Store, error) {
			s, err := s3.New(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("open repository: %w", err)
			}
			return s, nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	return New(st), nil
}
