package s3

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
)

// errObjectChanged means the object was replaced or deleted while its body
// was being read: the rest cannot be fetched without splicing two objects.
var errObjectChanged = errors.New("the object changed while it was being read")

// resumingBody is the body of an object that Get opened. A Read that fails
// other than at the end (connection reset, unexpected EOF, a stall of
// bodyIdle, a server error) closes the response and the next Read goes on
// from the first byte not yet returned, with a GET of
//
//	Range: bytes=<offset>-    If-Match: <ETag of the first response>
//
// after a jittered back-off, so that the caller sees one uninterrupted
// stream. Each response is one attempt; after maxAttempts, or when the
// object changed (412, 404), or when ctx ends, Read fails for good.
//
// The SDK's response checksum validation covers one response, and a ranged
// response carries no checksum of the object; so the SDK's is removed from
// these GETs and resumingBody verifies the full-object checksum of the
// first response (present with checksums "when_supported") over every byte
// it returns, at the end of the body.
type resumingBody struct {
	ctx  context.Context
	s    *Store
	key  string // storage key, for messages
	etag string // of the first response
	size int64  // object size; -1 if unknown

	off      int64 // bytes returned so far
	attempts int   // responses opened for the body
	lastErr  error // why the last response ended early
	err      error // sticky: io.EOF or the final error

	mu     sync.Mutex // guards body and cancel against the idle timer
	body   io.ReadCloser
	cancel context.CancelFunc // of body's request

	idle    *time.Timer // cuts a stalled response
	stalled atomic.Bool

	sum     hash.Hash // nil: no full-object checksum to verify
	sumAlg  string
	sumWant string // base64
	closed  atomic.Bool
}

func newResumingBody(ctx context.Context, s *Store, key string) *resumingBody {
	b := &resumingBody{ctx: ctx, s: s, key: key, size: -1}
	b.idle = time.AfterFunc(time.Hour, func() {
		b.stalled.Store(true)
		b.mu.Lock()
		if b.cancel != nil {
			b.cancel()
		}
		b.mu.Unlock()
	})
	b.idle.Stop()
	return b
}

// open sends a GET (ranged when rng is set) and makes its body current.
// The first GET has the SDK's retries; later ones are single attempts,
// counted by Read.
func (b *resumingBody) open(rng *string) (*s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &b.s.bucket, Key: aws.String(b.s.prefix + b.key)}
	optFns := []func(*s3.Options){withoutSDKResponseValidation}
	if rng != nil {
		in.Range, in.IfMatch = rng, &b.etag
		optFns = append(optFns, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	}
	ctx, cancel := context.WithCancel(b.ctx)
	out, err := b.s.client.GetObject(ctx, in, optFns...)
	if err != nil {
		cancel()
		return nil, err
	}
	if rng == nil {
		b.etag = aws.ToString(out.ETag)
		if out.ContentLength != nil {
			b.size = *out.ContentLength
		}
		b.sumAlg, b.sumWant, b.sum = fullObjectChecksum(out)
	} else if err := b.checkRange(out); err != nil {
		out.Body.Close()
		cancel()
		return nil, err
	}
	b.attempts++
	b.mu.Lock()
	b.body, b.cancel = out.Body, cancel
	b.mu.Unlock()
	return out, nil
}

// checkRange verifies that a resumed response starts at the offset and
// belongs to an object of the same size.
func (b *resumingBody) checkRange(out *s3.GetObjectOutput) error {
	want := fmt.Sprintf("bytes %d-%d/%d", b.off, b.size-1, b.size)
	if got := aws.ToString(out.ContentRange); got != want {
		return fmt.Errorf("resumed response has Content-Range %q, want %q", got, want)
	}
	return nil
}

// Read implements io.Reader.
func (b *resumingBody) Read(p []byte) (int, error) {
	for b.err == nil {
		if b.closed.Load() {
			return 0, errClosed
		}
		b.mu.Lock()
		body := b.body
		b.mu.Unlock()
		if body == nil {
			if err := b.resume(); err != nil {
				b.err = fmt.Errorf("s3 get %s: %w", b.key, err)
			}
			continue
		}
		b.idle.Reset(b.s.bodyIdle)
		n, err := body.Read(p)
		b.idle.Stop()
		b.off += int64(n)
		if b.sum != nil {
			b.sum.Write(p[:n])
		}
		switch {
		case err == nil:
			return n, nil
		case b.size >= 0 && b.off == b.size || err == io.EOF && b.size < 0:
			// The whole body; an error after its last byte does not matter.
			b.closeBody()
			b.err = io.EOF
			if verr := b.verify(); verr != nil {
				b.err = fmt.Errorf("s3 get %s: %w", b.key, verr)
			}
			return n, b.err
		case b.closed.Load():
			return n, errClosed
		case b.ctx.Err() != nil:
			b.closeBody()
			b.err = fmt.Errorf("s3 get %s: %w", b.key, context.Cause(b.ctx))
			return n, b.err
		case b.stalled.Swap(false):
			err = fmt.Errorf("no data for %v", b.s.bodyIdle)
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
		// Cut short: the next Read resumes.
		b.lastErr = fmt.Errorf("transfer cut at byte %d of %d: %w", b.off, b.size, err)
		b.closeBody()
		if n > 0 {
			return n, nil
		}
	}
	return 0, b.err
}

// resume opens the rest of the object, retrying within the attempts left.
func (b *resumingBody) resume() error {
	if b.etag == "" || b.size < 0 {
		return fmt.Errorf("cannot resume a response without ETag or length: %w", b.lastErr)
	}
	rng := fmt.Sprintf("bytes=%d-", b.off)
	for {
		if b.attempts >= b.s.maxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", b.attempts, b.lastErr)
		}
		if err := sleepCtx(b.ctx, backoff(b.attempts)); err != nil {
			return fmt.Errorf("%w (after: %w)", err, b.lastErr)
		}
		_, err := b.open(&rng)
		switch status := httpStatus(err); {
		case err == nil:
			return nil
		case b.ctx.Err() != nil:
			return fmt.Errorf("%w (after: %w)", context.Cause(b.ctx), b.lastErr)
		case status == http.StatusPreconditionFailed || status == http.StatusNotFound || status == http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("%w (ETag no longer %s; refusing to join the bytes of two objects): %w", errObjectChanged, b.etag, err)
		case !isRetryable(b.s.client, err):
			return fmt.Errorf("resume at byte %d: %w", b.off, err)
		}
		b.attempts++ // a response that never came is an attempt too
		b.lastErr = fmt.Errorf("resume at byte %d: %w", b.off, err)
	}
}

// isRetryable classifies an error as the client's retryer does.
func isRetryable(c *s3.Client, err error) bool {
	return c.Options().Retryer.IsErrorRetryable(err)
}

// backoff is the wait before attempt n+1: full jitter on 100ms·2^(n-1),
// at most maxBackoff.
func backoff(n int) time.Duration {
	ceil := min(maxBackoff, 100*time.Millisecond<<min(n-1, 10))
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// verify checks the full-object checksum, if there is one, once the whole
// body was read.
func (b *resumingBody) verify() error {
	if b.sum == nil {
		return nil
	}
	if got := base64.StdEncoding.EncodeToString(b.sum.Sum(nil)); got != b.sumWant {
		return fmt.Errorf("checksum mismatch: %s of the %d bytes read is %s, the object's is %s", b.sumAlg, b.off, got, b.sumWant)
	}
	return nil
}

func (b *resumingBody) closeBody() {
	b.mu.Lock()
	body, cancel := b.body, b.cancel
	b.body, b.cancel = nil, nil
	b.mu.Unlock()
	if body != nil {
		body.Close()
		cancel()
	}
}

// Close implements io.Closer. It may be called while a Read is blocked,
// which then fails.
func (b *resumingBody) Close() error {
	if !b.closed.Swap(true) {
		b.idle.Stop()
		b.closeBody()
	}
	return nil
}

var errClosed = errors.New("s3 get: read on a closed body")

// withoutSDKResponseValidation removes the SDK's response checksum
// validation from a GetObject (resumingBody does it over the whole body).
// The request still asks for the checksum when the mode says so.
func withoutSDKResponseValidation(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		// Absent in some SDK version: then the SDK checks a body that is
		// not resumed as well, which does no harm.
		st.Deserialize.Remove(sdkResponseValidation)
		return nil
	})
}

// sdkResponseValidation is the ID of the SDK's middleware that validates
// response checksums (service/internal/checksum).
const sdkResponseValidation = "AWSChecksum:ValidateOutputPayloadChecksum"

// crc64NVME is the CRC-64/NVME polynomial, reversed, for crc64.MakeTable.
const crc64NVME = 0x9a6c9329ac4bc9b5

var crc64NVMETable = sync.OnceValue(func() *crc64.Table { return crc64.MakeTable(crc64NVME) })

// fullObjectChecksum returns the algorithm, expected base64 value and a
// fresh hash for the cheapest full-object checksum in a GetObject
// response, or a nil hash when it has none (checksums "when_required", an
// object stored without one, a composite checksum of a multipart upload).
func fullObjectChecksum(out *s3.GetObjectOutput) (string, string, hash.Hash) {
	if out.ChecksumType == types.ChecksumTypeComposite {
		return "", "", nil
	}
	for _, c := range []struct {
		alg  string
		val  *string
		hash func() hash.Hash
	}{
		{"CRC32C", out.ChecksumCRC32C, func() hash.Hash { return crc32.New(castagnoli) }},
		{"CRC32", out.ChecksumCRC32, func() hash.Hash { return crc32.NewIEEE() }},
		{"SHA256", out.ChecksumSHA256, sha256.New},
		{"SHA1", out.ChecksumSHA1, sha1.New},
		{"SHA512", out.ChecksumSHA512, sha512.New},
		{"CRC64NVME", out.ChecksumCRC64NVME, func() hash.Hash { return crc64.New(crc64NVMETable()) }},
	} {
		v := aws.ToString(c.val)
		if v == "" || strings.Contains(v, "-") { // "-<parts>": composite
			continue
		}
		return c.alg, v, c.hash()
	}
	return "", "", nil
}
