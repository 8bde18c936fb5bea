package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/walsnap/walsnap/internal/storage"
)

// deleteConcurrency is how many DeleteObjects requests DeleteMany keeps in
// flight: a request of 1,000 keys takes the server a while, and a few at
// once keep it busy.
const deleteConcurrency = 4

// DeleteMany implements storage.Store with DeleteObjects, up to
// storage.MaxDeleteBatch keys a request and deleteConcurrency requests at
// once.
//
// DeleteObjects is the one call S3 requires a checksum of the request for.
// The SDK sends a CRC32 header; with checksums "when_required" (for stores
// that reject the newer checksums) the request carries the classic
// Content-MD5 instead, which every S3-compatible store takes.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("s3 delete %s: %w", key, err)
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, deleteConcurrency)
	)
	for start := 0; start < len(keys); start += storage.MaxDeleteBatch {
		batch := keys[start:min(start+storage.MaxDeleteBatch, len(keys))]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("s3 delete: %w", ctx.Err()))
			mu.Unlock()
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.deleteBatch(ctx, batch); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deleteBatch deletes at most storage.MaxDeleteBatch keys in one request
// and returns the keys the server could not delete.
func (s *Store) deleteBatch(ctx context.Context, keys []string) error {
	objs := make([]types.ObjectIdentifier, len(keys))
	for i, key := range keys {
		objs[i] = types.ObjectIdentifier{Key: aws.String(s.prefix + key)}
	}
	var optFns []func(*s3.Options)
	if !s.crcHeader {
		optFns = append(optFns, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, useContentMD5)
		})
	}
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: &s.bucket,
		Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
	}, optFns...)
	if err != nil {
		return fmt.Errorf("s3 delete %d objects (%s ...): %w", len(keys), keys[0], err)
	}
	var errs []error
	for _, e := range out.Errors {
		if aws.ToString(e.Code) == "NoSuchKey" {
			continue
		}
		errs = append(errs, fmt.Errorf("s3 delete %s: %s: %s", strings.TrimPrefix(aws.ToString(e.Key), s.prefix), aws.ToString(e.Code), aws.ToString(e.Message)))
	}
	return errors.Join(errs...)
}

// useContentMD5 replaces the SDK's flexible checksum of a request by its
// Content-MD5, just before signing (after the SDK computed its own, on
// every attempt).
func useContentMD5(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("walsnap:ContentMD5",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			req, ok := in.Request.(*smithyhttp.Request)
			if !ok {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("content-md5: unexpected request type %T", in.Request)
			}
			for name := range req.Header {
				if h := strings.ToLower(name); strings.HasPrefix(h, "x-amz-checksum-") || h == "x-amz-sdk-checksum-algorithm" {
					req.Header.Del(name)
				}
			}
			sum := md5.New()
			if body := req.GetStream(); body != nil {
				if _, err := io.Copy(sum, body); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("content-md5: %w", err)
				}
				if err := req.RewindStream(); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("content-md5: %w", err)
				}
			}
			req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum.Sum(nil)))
			return next.HandleFinalize(ctx, in)
		}), "Signing", middleware.Before)
}
