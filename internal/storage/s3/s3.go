// Package s3 implements storage.Store on Amazon S3 and S3-compatible object
// stores (MinIO), for s3:// repositories.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/walsnap/walsnap/internal/storage"
)

var _ storage.Store = (*Store)(nil)

// Options configures a Store.
type Options struct {
	Bucket string
	// Prefix, without leading or trailing slashes, is prepended to every
	// key as Prefix + "/" + key. Empty means the bucket's root.
	Prefix string
	// Endpoint is the service URL, e.g. "http://127.0.0.1:9000" for MinIO;
	// empty means AWS.
	Endpoint string
	// Region; empty means the SDK's default chain, then "us-east-1".
	Region    string
	PathStyle bool // path-style addressing (bucket in the path, not the host)
	// SSE is the server-side encryption: "", "AES256" or "aws:kms".
	SSE string
	// SSEKMSKeyID is the KMS key for SSE "aws:kms"; empty means the
	// bucket's or account's default key.
	SSEKMSKeyID  string
	StorageClass string // e.g. "STANDARD_IA"; empty means the bucket default
	// Checksums is "when_supported" (CRC checksums on every upload and
	// download that supports them) or "when_required" (only where an API
	// requires one, for S3-compatible stores that reject the newer
	// checksums). Empty leaves the SDK's default and its
	// AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION.
	Checksums string
	// MaxAttempts bounds the attempts per call (SDK standard retryer,
	// backoff at most 2s); 0 means 5.
	MaxAttempts int
	// CAFile names a PEM bundle of extra CA certificates for TLS endpoints.
	CAFile string
}

// Checksum modes for Options.Checksums.
const (
	ChecksumsWhenSupported = "when_supported"
	ChecksumsWhenRequired  = "when_required"
)

const (
	defaultMaxAttempts = 5
	maxBackoff         = 2 * time.Second
	dialTimeout        = 5 * time.Second
	// responseHeaderTimeout bounds the wait for a response once the request
	// is sent: a server that accepts connections but never answers fails
	// the attempt instead of hanging.
	responseHeaderTimeout = time.Minute
	// bodyIdleTimeout bounds the wait for the next bytes of a download's
	// body: a transfer that stalls is cut and resumed (see Get).
	bodyIdleTimeout = time.Minute
)

// Store is a repository in an S3 bucket.
type Store struct {
	client       *s3.Client
	maxAttempts  int           // Options.MaxAttempts, defaulted
	bodyIdle     time.Duration // see bodyIdleTimeout
	bucket       string
	prefix       string // "" or Options.Prefix + "/"
	sse          types.ServerSideEncryption
	kmsKeyID     *string
	storageClass types.StorageClass
	// crcHeader makes uploads carry a CRC32C computed up front in a header,
	// with an unsigned payload (see PutIfAbsent).
	crcHeader bool
}

// New returns a Store for o. Credentials come from the SDK's default chain
// (environment, shared config, web identity, IMDS).
func New(ctx context.Context, o Options) (*Store, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = responseHeaderTimeout })
	if o.CAFile != "" {
		pool, err := loadCAs(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 store: %w", err)
		}
		httpClient = httpClient.WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		})
	}
	attempts := o.MaxAttempts
	if attempts == 0 {
		attempts = defaultMaxAttempts
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = attempts
				so.MaxBackoff = maxBackoff
				so.Retryables = append(slices.Clone(so.Retryables), retry.IsErrorRetryableFunc(retryConflict))
			})
		}),
	}
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	switch o.Checksums {
	case ChecksumsWhenSupported:
		loadOpts = append(loadOpts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenSupported),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenSupported))
	case ChecksumsWhenRequired:
		loadOpts = append(loadOpts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		// Objects written without a checksum (multipart, older tools) are
		// fine; the SDK would log a warning on each download.
		so.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &Store{
		client:       client,
		maxAttempts:  attempts,
		bodyIdle:     bodyIdleTimeout,
		bucket:       o.Bucket,
		sse:          types.ServerSideEncryption(o.SSE),
		storageClass: types.StorageClass(o.StorageClass),
		crcHeader:    cfg.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired,
	}
	if o.Prefix != "" {
		s.prefix = o.Prefix + "/"
	}
	if o.SSEKMSKeyID != "" {
		s.kmsKeyID = aws.String(o.SSEKMSKeyID)
	}
	return s, nil
}

func (o Options) validate() error {
	switch {
	case o.Bucket == "" || strings.ContainsAny(o.Bucket, "/ "):
		return fmt.Errorf("invalid bucket name %q", o.Bucket)
	case o.Prefix != "" && checkPrefixPath(o.Prefix) != nil:
		return fmt.Errorf("invalid prefix %q: want slash-separated names without leading or trailing slash", o.Prefix)
	case o.SSE != "" && o.SSE != string(types.ServerSideEncryptionAes256) && o.SSE != string(types.ServerSideEncryptionAwsKms):
		return fmt.Errorf("invalid SSE %q: want AES256 or aws:kms", o.SSE)
	case o.SSEKMSKeyID != "" && o.SSE != string(types.ServerSideEncryptionAwsKms):
		return errors.New("an SSE KMS key id needs SSE aws:kms")
	case o.Checksums != "" && o.Checksums != ChecksumsWhenSupported && o.Checksums != ChecksumsWhenRequired:
		return fmt.Errorf("invalid checksums mode %q: want %s or %s", o.Checksums, ChecksumsWhenSupported, ChecksumsWhenRequired)
	case o.MaxAttempts < 0:
		return fmt.Errorf("invalid max attempts %d", o.MaxAttempts)
	}
	return nil
}

// loadCAs returns the system roots plus the certificates in a PEM file.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates", file)
	}
	return pool, nil
}

// retryConflict retries 409 ConditionalRequestConflict: another conditional
// write of the same key was in flight. The retry learns who won.
func retryConflict(err error) aws.Ternary {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ConditionalRequestConflict" {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// String returns the repository URL, s3://bucket/prefix.
func (s *Store) String() string { return Name(s.bucket, strings.TrimSuffix(s.prefix, "/")) }

// Name is the String of the store for bucket and prefix (Options form),
// known without connecting.
func Name(bucket, prefix string) string {
	if prefix == "" {
		return "s3://" + bucket
	}
	return "s3://" + bucket + "/" + prefix
}

// PutIfAbsent implements storage.Store with a conditional write
// (If-None-Match: *).
//
// Unless checksums are "when_required", the body's CRC32C is computed first
// and sent as the x-amz-checksum-crc32c header, which the server verifies
// and stores, and the payload is not signed (UNSIGNED-PAYLOAD). This saves
// the SigV4 SHA-256 pass over plain HTTP, and over HTTPS it avoids the SDK's
// default aws-chunked body with a trailing checksum, which MinIO rejects
// for bodies over 16 MiB ("chunk too big").
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	// The SDK rewinds the body to where it starts for each retry.
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("s3 put %s: rewind source: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:               &s.bucket,
		Key:                  aws.String(s.prefix + key),
		Body:                 r,
		ContentLength:        aws.Int64(size),
		Metadata:             meta,
		IfNoneMatch:          aws.String("*"),
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
		StorageClass:         s.storageClass,
	}
	var optFns []func(*s3.Options)
	if s.crcHeader {
		sum, err := crc32c(r, size)
		if err != nil {
			return fmt.Errorf("s3 put %s: %w", key, err)
		}
		in.ChecksumCRC32C = &sum
		optFns = append(optFns, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, addUnsignedPayloadOverHTTP)
		})
	}
	_, err := s.client.PutObject(ctx, in, optFns...)
	switch {
	case err == nil:
		return nil
	case httpStatus(err) == http.StatusPreconditionFailed:
		return fmt.Errorf("s3 put %s: %w: %w", key, storage.ErrExists, err)
	default:
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
}

// addUnsignedPayloadOverHTTP signs a plain-HTTP upload as UNSIGNED-PAYLOAD,
// as the SDK already does over HTTPS: the CRC32C header protects the body,
// and a SHA-256 pass over it is saved.
func addUnsignedPayloadOverHTTP(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("walsnap:UnsignedPayloadOverHTTP",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok && !req.IsHTTPS() {
				ctx = v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD")
			}
			return next.HandleFinalize(ctx, in)
		}), "AWSChecksum:ComputeInputPayloadChecksum", middleware.Before)
}

// Get implements storage.Store.
//
// The body it returns survives a transfer cut short (connection reset,
// early end, a stall of bodyIdleTimeout): it asks for the rest with a
// ranged GET conditional on the first response's ETag, so that a replaced
// object is never spliced, and goes on where it stopped, within
// MaxAttempts transfers in all. A full-object checksum in the first
// response (checksums "when_supported") is verified over the whole body,
// resumed or not. See resumingBody.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, storage.ObjectInfo{}, fmt.Errorf("s3 get %s: %w", key, err)
	}
	b := newResumingBody(ctx, s, key)
	out, err := b.open(nil)
	if err != nil {
		b.Close()
		return nil, storage.ObjectInfo{}, wrapNotExist("get", key, err)
	}
	return b, storage.ObjectInfo{
		Key:      key,
		Size:     aws.ToInt64(out.ContentLength),
		ModTime:  aws.ToTime(out.LastModified),
		Metadata: lowerKeys(out.Metadata),
	}, nil
}

// Head implements storage.Store.
func (s *Store) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("s3 head %s: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return storage.ObjectInfo{}, wrapNotExist("head", key, err)
	}
	return storage.ObjectInfo{
		Key:      key,
		Size:     aws.ToInt64(out.ContentLength),
		ModTime:  aws.ToTime(out.LastModified),
		Metadata: lowerKeys(out.Metadata),
	}, nil
}

// wrapNotExist wraps err, adding storage.ErrNotExist when it says the key
// is missing. A missing bucket is not a missing object, except to HEAD,
// whose 404 carries no error code.
func wrapNotExist(op, key string, err error) error {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return fmt.Errorf("s3 %s %s: %w: %w", op, key, storage.ErrNotExist, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, key, err)
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3 list %q: %w", prefix, err)
	}
	var objs []storage.ObjectInfo
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.prefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			objs = append(objs, storage.ObjectInfo{
				Key:     strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
				Size:    aws.ToInt64(o.Size),
				ModTime: aws.ToTime(o.LastModified),
			})
		}
	}
	return objs, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}); err != nil {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the base64 CRC32C of the first size bytes of r and rewinds r.
func crc32c(r io.ReadSeeker, size int64) (string, error) {
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(h, r, size); err != nil {
		return "", fmt.Errorf("checksum source: %w", err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind source: %w", err)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// httpStatus returns the HTTP status code of an SDK error, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// lowerKeys returns m with lower-case keys (never nil).
func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// checkKey rejects keys that are not clean relative slash-separated paths.
func checkKey(key string) error {
	if key == "" || strings.HasSuffix(key, "/") {
		return fmt.Errorf("invalid key %q", key)
	}
	return checkPrefix(key)
}

// checkPrefix rejects a list prefix (or key) that is not in clean form. Its
// last element may be empty or partial.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "\\\x00") {
		return fmt.Errorf("invalid key %q: absolute, or contains a backslash or NUL", prefix)
	}
	i := strings.LastIndexByte(prefix, '/')
	if last := prefix[i+1:]; last == "." || last == ".." {
		return fmt.Errorf("invalid key %q: contains a %q element", prefix, last)
	}
	if i < 0 {
		return nil
	}
	return checkPrefixPath(prefix[:i])
}

// checkPrefixPath rejects an empty, "." or ".." element in a slash-separated path.
func checkPrefixPath(p string) error {
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "", ".", "..":
			return fmt.Errorf("invalid key %q: contains a %q element", p, elem)
		}
	}
	return nil
}
