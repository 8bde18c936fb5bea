package testrig

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Env locates a fresh, empty bucket on the test S3 server.
type S3Env struct {
	Endpoint  string // e.g. "http://127.0.0.1:9000"; path-style addressing
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string
	// KMSKeyID names a key the server can use for SSE-KMS (and SSE-S3),
	// or is empty when the server has no KMS configured.
	KMSKeyID string
}

// Environ returns the AWS_* variables that point the SDK's default
// credential chain and region at the test server, for child processes.
func (e S3Env) Environ() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + e.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + e.SecretKey,
		"AWS_REGION=" + e.Region,
	}
}

// Setenv sets the variables of Environ in the test process for the
// duration of t (see testing.T.Setenv).
func (e S3Env) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Environment variables naming an already running S3 server (set by .ci/run).
const (
	envS3Endpoint  = "WALSNAP_TEST_S3_ENDPOINT"
	envS3AccessKey = "WALSNAP_TEST_S3_ACCESS_KEY"
	envS3SecretKey = "WALSNAP_TEST_S3_SECRET_KEY"
	envS3Region    = "WALSNAP_TEST_S3_REGION"     // optional, default us-east-1
	envS3KMSKeyID  = "WALSNAP_TEST_S3_KMS_KEY_ID" // optional, see S3Env.KMSKeyID
)

// Settings of the MinIO server that S3 starts itself.
const (
	minioUser     = "walsnaptest"
	minioPassword = "walsnaptest-secret"
	minioKMSKey   = "walsnap-test-key"
)

var minio shared[S3Env] // Bucket unset

// S3 returns a fresh, empty bucket on the test MinIO, removed with its
// objects when t ends. It uses the server named by WALSNAP_TEST_S3_ENDPOINT,
// WALSNAP_TEST_S3_ACCESS_KEY and WALSNAP_TEST_S3_SECRET_KEY when set (as
// .ci/run does); otherwise it starts a `minio` binary found on PATH or in
// $GOPATH/bin, once per test process, on a free 127.0.0.1 port with its data
// in a temporary directory; both go away when the test process exits.
// Without either it calls Unavailable.
func S3(t testing.TB) S3Env {
	t.Helper()
	env := minio.get(t, "test S3 server", findServer)
	env.Bucket = "walsnap-test-" + randomHex(8)
	client := env.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &env.Bucket}); err != nil {
		t.Fatalf("create test bucket %s at %s: %v", env.Bucket, env.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := removeBucket(ctx, client, env.Bucket); err != nil {
			t.Errorf("remove test bucket %s: %v", env.Bucket, err)
		}
	})
	return env
}

// findServer returns the server to use, or why there is none.
func findServer() (env S3Env, unavailable string, err error) {
	if ep := os.Getenv(envS3Endpoint); ep != "" {
		env = S3Env{
			Endpoint:  ep,
			Region:    cmp.Or(os.Getenv(envS3Region), "us-east-1"),
			AccessKey: os.Getenv(envS3AccessKey),
			SecretKey: os.Getenv(envS3SecretKey),
			KMSKeyID:  os.Getenv(envS3KMSKeyID),
		}
		if env.AccessKey == "" || env.SecretKey == "" {
			return env, "", fmt.Errorf("%s is set but %s or %s is not", envS3Endpoint, envS3AccessKey, envS3SecretKey)
		}
		return env, "", nil
	}
	bin, err := exec.LookPath("minio")
	if err != nil {
		bin = filepath.Join(filepath.SplitList(build.Default.GOPATH)[0], "bin", "minio")
		if _, err := os.Stat(bin); err != nil {
			return env, fmt.Sprintf("no S3 server: set %s or put a minio binary on PATH or in %s", envS3Endpoint, filepath.Dir(bin)), nil
		}
	}
	env, err = startMinIO(bin)
	return env, "", err
}

// startMinIO starts bin on free loopback ports and waits until it is live.
func startMinIO(bin string) (S3Env, error) {
	addr, err := freeAddr()
	if err != nil {
		return S3Env{}, fmt.Errorf("minio: %w", err)
	}
	console, err := freeAddr()
	if err != nil {
		return S3Env{}, fmt.Errorf("minio: %w", err)
	}
	env := S3Env{
		Endpoint:  "http://" + addr,
		Region:    "us-east-1",
		AccessKey: minioUser,
		SecretKey: minioPassword,
		KMSKeyID:  minioKMSKey,
	}
	err = startServer("minio", env.Endpoint+"/minio/health/live", 30*time.Second, []string{
		"MINIO_ROOT_USER=" + minioUser,
		"MINIO_ROOT_PASSWORD=" + minioPassword,
		// A static key enables SSE-S3 and SSE-KMS without a KMS server.
		"MINIO_KMS_SECRET_KEY=" + minioKMSKey + ":" + kmsSecret(),
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}, bin, "server", "--quiet", "--address", addr, "--console-address", console, "data")
	if err != nil {
		return S3Env{}, err
	}
	return env, nil
}

// client returns an SDK client with e's static credentials.
func (e S3Env) client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: &e.Endpoint,
		Region:       e.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(e.AccessKey, e.SecretKey, ""),
	})
}

// removeBucket deletes every object in bucket, then the bucket.
func removeBucket(ctx context.Context, client *s3.Client, bucket string) error {
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		objs := make([]types.ObjectIdentifier, len(page.Contents))
		for i, o := range page.Contents {
			objs[i] = types.ObjectIdentifier{Key: o.Key}
		}
		out, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &bucket,
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete objects: %w", err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete %s: %s", aws.ToString(e.Key), aws.ToString(e.Message))
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		return fmt.Errorf("delete bucket: %w", err)
	}
	return nil
}

// kmsSecret returns a random base64 256-bit key for MINIO_KMS_SECRET_KEY.
func kmsSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// randomHex returns n random bytes in lower-case hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
