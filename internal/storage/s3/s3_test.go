package s3

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"log"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/storagetest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// minio returns Options for a fresh bucket on the test MinIO, with its
// credentials in the environment.
func minio(t *testing.T) Options {
	t.Helper()
	env := testrig.S3(t)
	env.Setenv(t)
	return Options{Bucket: env.Bucket, Endpoint: env.Endpoint, Region: env.Region, PathStyle: true}
}

func mustNew(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, mode := range []string{ChecksumsWhenSupported, ChecksumsWhenRequired} {
		t.Run(mode, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Store {
				o := minio(t)
				o.Prefix, o.Checksums = "repo/main", mode
				return mustNew(t, o)
			})
		})
	}
}

// TestConformanceTLS runs the suite over HTTPS (where the SDK streams the
// body with a trailing checksum) through a TLS proxy with a private CA.
func TestConformanceTLS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		o := minio(t)
		o.Endpoint, o.CAFile = tlsProxy(t, o.Endpoint)
		return mustNew(t, o)
	})
}

// tlsProxy serves HTTPS in front of endpoint and returns its URL and the
// PEM file of its self-signed certificate.
func tlsProxy(t testing.TB, endpoint string) (proxyURL, caFile string) {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // signed by the client
		},
		ErrorLog: log.New(t.Output(), "tls proxy: ", 0),
	})
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile
}

func TestPrefix(t *testing.T) {
	o := minio(t)
	o.Prefix = "a/b"
	storagetest.Put(t, mustNew(t, o), "wal/k", []byte("x"), nil)
	for prefix, want := range map[string]string{"": "a/b/wal/k", "a": "b/wal/k", "a/b/wal": "k"} {
		o.Prefix = prefix
		objs, err := mustNew(t, o).List(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || objs[0].Key != want {
			t.Errorf("List under prefix %q = %v, want %s", prefix, objs, want)
		}
	}
}

func TestString(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{{"", "s3://bkt"}, {"a/b", "s3://bkt/a/b"}} {
		s, err := New(t.Context(), Options{Bucket: "bkt", Prefix: c.prefix, Endpoint: "http://u:secret@127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != c.want || Name("bkt", c.prefix) != got {
			t.Errorf("String() = %q, Name = %q, want %q", got, Name("bkt", c.prefix), c.want)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Bucket: "a/b"},
		{Bucket: "b", Prefix: "/p"},
		{Bucket: "b", Prefix: "p/"},
		{Bucket: "b", Prefix: "p//q"},
		{Bucket: "b", Prefix: "p/../q"},
		{Bucket: "b", SSE: "aes256"},
		{Bucket: "b", SSE: "AES256", SSEKMSKeyID: "k"},
		{Bucket: "b", Checksums: "always"},
		{Bucket: "b", MaxAttempts: -1},
		{Bucket: "b", CAFile: "/nonexistent/ca.pem"},
		{Bucket: "b", CAFile: "/etc/hostname"}, // no PEM
	} {
		if _, err := New(t.Context(), o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestRetryConflict(t *testing.T) {
	for code, want := range map[string]aws.Ternary{
		"ConditionalRequestConflict": aws.TrueTernary,
		"PreconditionFailed":         aws.UnknownTernary,
	} {
		if got := retryConflict(&smithy.GenericAPIError{Code: code}); got != want {
			t.Errorf("retryConflict(%s) = %v, want %v", code, got, want)
		}
	}
}

// TestEndpointDown checks that calls to an endpoint that refuses
// connections fail after bounded retries, in seconds.
func TestEndpointDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	s := mustNew(t, Options{Bucket: "b", Endpoint: "http://" + addr, PathStyle: true})
	start := time.Now()
	_, err = s.Head(t.Context(), "wal/x")
	if err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Head with the endpoint down = %v, want a connection error", err)
	}
	if err := s.PutIfAbsent(t.Context(), "wal/x", bytes.NewReader([]byte("x")), 1, nil); err == nil {
		t.Error("PutIfAbsent with the endpoint down succeeded")
	}
	// Each call makes 5 attempts with at most 2s between two.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("two calls took %v with the endpoint down", d)
	}
	t.Logf("two calls failed in %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestMissingBucket checks that a missing bucket is not a missing object to
// Get, so that wal-fetch does not report "no such WAL file" for it.
func TestMissingBucket(t *testing.T) {
	o := minio(t)
	o.Bucket += "-missing"
	s := mustNew(t, o)
	rc, _, err := s.Get(t.Context(), "wal/x")
	if err == nil {
		rc.Close()
	}
	if err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Get from a missing bucket = %v, want an error other than ErrNotExist", err)
	}
}

func TestSSE(t *testing.T) {
	o := minio(t)
	kmsKey := testrig.S3(t).KMSKeyID
	if kmsKey == "" {
		testrig.Unavailable(t, "the test S3 server has no KMS key (set WALSNAP_TEST_S3_KMS_KEY_ID)")
	}
	for _, c := range []struct{ sse, keyID string }{{"AES256", ""}, {"aws:kms", kmsKey}} {
		o.SSE, o.SSEKMSKeyID = c.sse, c.keyID
		s := mustNew(t, o)
		key := "sse/" + c.sse
		storagetest.Put(t, s, key, []byte("secret WAL"), nil)
		storagetest.Check(t, s, key, []byte("secret WAL"), map[string]string{})
		head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &o.Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		if head.ServerSideEncryption != types.ServerSideEncryption(c.sse) {
			t.Errorf("%s: object has server-side encryption %q", key, head.ServerSideEncryption)
		}
		if c.keyID != "" && !bytes.HasSuffix([]byte(aws.ToString(head.SSEKMSKeyId)), []byte(c.keyID)) {
			t.Errorf("%s: object has KMS key %q, want %q", key, aws.ToString(head.SSEKMSKeyId), c.keyID)
		}
	}
}

func TestStorageClass(t *testing.T) {
	o := minio(t)
	o.StorageClass = "REDUCED_REDUNDANCY"
	s := mustNew(t, o)
	storagetest.Put(t, s, "k", []byte("x"), nil)
	head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &o.Bucket, Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	if head.StorageClass != types.StorageClassReducedRedundancy {
		t.Errorf("object has storage class %q", head.StorageClass)
	}
}

// TestUploadChecksum checks that in when_supported mode uploads carry a
// CRC32C that the server stored, and that when_required mode sends none.
func TestUploadChecksum(t *testing.T) {
	data := storagetest.Payload(3, 3<<20)
	sum := binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	for mode, want := range map[string]string{
		ChecksumsWhenSupported: base64.StdEncoding.EncodeToString(sum),
		ChecksumsWhenRequired:  "",
	} {
		o := minio(t)
		o.Checksums = mode
		s := mustNew(t, o)
		storagetest.Put(t, s, "k", data, nil)
		head, err := s.client.HeadObject(t.Context(), &s3.HeadObjectInput{
			Bucket: &o.Bucket, Key: aws.String("k"), ChecksumMode: types.ChecksumModeEnabled,
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(head.ChecksumCRC32C); got != want {
			t.Errorf("%s: stored CRC32C = %q, want %q", mode, got, want)
		}
	}
}

// TestChecksumVerified checks that the server rejects a body that does not
// match its CRC32C header: with an unsigned payload, that header is what
// protects the body.
func TestChecksumVerified(t *testing.T) {
	s := mustNew(t, minio(t))
	bad := "AAAAAA=="
	_, err := s.client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String("k"), Body: bytes.NewReader([]byte("payload")), ChecksumCRC32C: &bad,
	}, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, addUnsignedPayloadOverHTTP) })
	if err == nil {
		t.Fatal("upload with a wrong CRC32C succeeded")
	}
	t.Logf("upload with a wrong CRC32C: %v", err)
	if _, err := s.Head(t.Context(), "k"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Head after the rejected upload = %v, want ErrNotExist", err)
	}
}

// BenchmarkPut measures 16 MiB uploads to the test MinIO, over HTTP and
// HTTPS, as PutIfAbsent does them and as the SDK does by default.
func BenchmarkPut(b *testing.B) {
	env := testrig.S3(b)
	env.Setenv(b)
	data := storagetest.Payload(9, 16<<20)
	for _, c := range []struct {
		name      string
		checksums string
		crcHeader bool
	}{
		{"crc32c-header", ChecksumsWhenSupported, true},
		{"sdk-default", ChecksumsWhenSupported, false},
		{"when_required", ChecksumsWhenRequired, false},
	} {
		for _, tls := range []bool{false, true} {
			o := Options{Bucket: env.Bucket, Endpoint: env.Endpoint, PathStyle: true, Checksums: c.checksums}
			name := c.name + "/http"
			if tls {
				o.Endpoint, o.CAFile = tlsProxy(b, env.Endpoint)
				name = c.name + "/https"
			}
			b.Run(name, func(b *testing.B) {
				s, err := New(b.Context(), o)
				if err != nil {
					b.Fatal(err)
				}
				s.crcHeader = c.crcHeader
				b.SetBytes(int64(len(data)))
				run := time.Now().UnixNano() // b.Run may call us more than once
				for i := 0; b.Loop(); i++ {
					key := fmt.Sprintf("%s/%d/%d", name, run, i)
					if err := s.PutIfAbsent(b.Context(), key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestListSorted(t *testing.T) {
	// S3 lists in UTF-8 byte order; the conformance suite checks ASCII keys.
	s := mustNew(t, minio(t))
	keys := []string{"x/é", "x/z", "x/~"}
	for _, k := range keys {
		storagetest.Put(t, s, k, nil, nil)
	}
	objs, err := s.List(t.Context(), "x/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Key)
	}
	if slices.Sort(keys); !slices.Equal(got, keys) {
		t.Errorf("List = %q, want %q", got, keys)
	}
}
