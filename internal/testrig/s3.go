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
	"sync"
	"syscall"
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

// MinIOServer is a MinIO server of one test's own, which the test can
// SIGKILL and restart on the same port and data directory (StartMinIO).
type MinIOServer struct {
	// Env reaches the server; its Bucket was created by StartMinIO.
	Env S3Env

	bin, addr, console, dataDir, logFile string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// StartMinIO starts a private MinIO (the binary on PATH or in
// $GOPATH/bin) on a free 127.0.0.1 port with its data in a temporary
// directory, creates a bucket and returns once the server answers. The
// server is killed when t ends (and, through the parent-death signal, if
// the test process dies). Without a minio binary it calls Unavailable.
func StartMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	bin, err := exec.LookPath("minio")
	if err != nil {
		bin = filepath.Join(filepath.SplitList(build.Default.GOPATH)[0], "bin", "minio")
		if _, err := os.Stat(bin); err != nil {
			Unavailable(t, "no minio binary on PATH or in %s", filepath.Dir(bin))
		}
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatalf("minio: %v", err)
	}
	console, err := freeAddr()
	if err != nil {
		t.Fatalf("minio: %v", err)
	}
	dir := t.TempDir()
	m := &MinIOServer{
		Env: S3Env{
			Endpoint:  "http://" + addr,
			Region:    "us-east-1",
			AccessKey: minioUser,
			SecretKey: minioPassword,
			Bucket:    "walsnap-test-" + randomHex(8),
		},
		bin:     bin,
		addr:    addr,
		console: console,
		dataDir: filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "minio.log"),
	}
	t.Cleanup(func() { m.kill() })
	m.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Env.client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &m.Env.Bucket}); err != nil {
		t.Fatalf("minio: create bucket %s: %v", m.Env.Bucket, err)
	}
	return m
}

// Addr is the server's host:port, the same across restarts.
func (m *MinIOServer) Addr() string { return m.addr }

// Kill sends SIGKILL to the server and waits until it has exited.
func (m *MinIOServer) Kill(t testing.TB) {
	t.Helper()
	if !m.kill() {
		t.Fatal("minio: Kill: the server is not running")
	}
}

func (m *MinIOServer) kill() bool {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return false
	}
	cmd.Process.Kill()
	<-exited
	return true
}

// Restart starts the server (again, after Kill) on the same address and
// data directory and waits until its cluster health check answers (the
// live check answers before the server accepts requests).
func (m *MinIOServer) Restart(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		t.Fatal("minio: Restart: the server is running")
	}
	log, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("minio: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, "--console-address", m.console, m.dataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+minioUser,
		"MINIO_ROOT_PASSWORD="+minioPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("minio: start %s: %v", m.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	if err := waitOK(m.Env.Endpoint+"/minio/health/cluster", exited, 60*time.Second); err != nil {
		cmd.Process.Kill()
		<-exited
		m.cmd = nil
		out, _ := os.ReadFile(m.logFile)
		t.Fatalf("minio on %s: %v; log:\n%s", m.addr, err, tail(string(out), 30))
	}
}
