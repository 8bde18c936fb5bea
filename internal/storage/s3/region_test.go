package s3

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"

	"github.com/walsnap/walsnap/internal/testrig"
)

// unsetRegionEnv leaves the AWS SDK no region of its own for the rest of
// the test: no AWS_REGION or AWS_DEFAULT_REGION, no shared config.
func unsetRegionEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_EC2_METADATA_DISABLED"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/walsnap-test/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/walsnap-test/credentials")
}

// TestDiscoverRegion: with no region set, walsnap finds the bucket's, so
// a bucket outside us-east-1 works from an EC2 instance in any region; the
// SDK's own chain comes first. The bucket is on MinIO behind a proxy that
// answers as AWS S3 does for a bucket in eu-north-1; the instance metadata
// service is a stub.
func TestDiscoverRegion(t *testing.T) {
	env := testrig.S3(t)
	env.Setenv(t)
	gated := testrig.RegionGate(t, env, "eu-north-1")
	o := Options{Bucket: env.Bucket, Endpoint: gated.Endpoint, PathStyle: true}
	ctx := context.Background()

	t.Run("a set region wins", func(t *testing.T) {
		o := o
		o.Region = "ap-south-1"
		if got := DiscoverRegion(ctx, o); got != "ap-south-1" {
			t.Fatalf("DiscoverRegion = %s", got)
		}
	})
	t.Run("the SDK chain comes next", func(t *testing.T) {
		imds := testrig.IMDS(t, "eu-west-3")
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.Endpoint)
		t.Setenv("AWS_REGION", "sa-east-1")
		if got := DiscoverRegion(ctx, o); got != "sa-east-1" || imds.Hits() != 0 {
			t.Fatalf("DiscoverRegion = %s, IMDS asked %d times; want the SDK's sa-east-1 without asking", got, imds.Hits())
		}
	})
	t.Run("the bucket's own region, asked from the instance's", func(t *testing.T) {
		unsetRegionEnv(t)
		imds := testrig.IMDS(t, "eu-west-3")
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.Endpoint)
		got := DiscoverRegion(ctx, o)
		if got != "eu-north-1" || imds.Hits() != 1 {
			t.Fatalf("DiscoverRegion = %s, IMDS asked %d times; want eu-north-1 after one IMDS lookup", got, imds.Hits())
		}
		// The region found is the one that works; the fallback does not.
		o := o
		o.Region = got
		if err := mustNew(t, o).PutIfAbsent(ctx, "k", bytes.NewReader([]byte("v")), 1, nil); err != nil {
			t.Fatalf("put with the discovered region: %v", err)
		}
		o.Region = defaultRegion
		if err := mustNew(t, o).PutIfAbsent(ctx, "k2", bytes.NewReader([]byte("v")), 1, nil); err == nil {
			t.Fatal("the gate accepted a request signed for us-east-1: the test proves nothing")
		}
	})
	t.Run("the instance's region when it is the bucket's", func(t *testing.T) {
		unsetRegionEnv(t)
		imds := testrig.IMDS(t, "eu-north-1")
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.Endpoint)
		if got := DiscoverRegion(ctx, o); got != "eu-north-1" {
			t.Fatalf("DiscoverRegion = %s", got)
		}
	})
	t.Run("off EC2, the bucket's region", func(t *testing.T) {
		unsetRegionEnv(t)
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		if got := DiscoverRegion(ctx, o); got != "eu-north-1" {
			t.Fatalf("DiscoverRegion = %s", got)
		}
	})
	t.Run("the instance's region when the bucket does not answer", func(t *testing.T) {
		unsetRegionEnv(t)
		imds := testrig.IMDS(t, "eu-west-3")
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.Endpoint)
		down := o
		down.Endpoint = deadEndpoint(t)
		if got := DiscoverRegion(ctx, down); got != "eu-west-3" {
			t.Fatalf("DiscoverRegion = %s", got)
		}
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		if got := DiscoverRegion(ctx, down); got != defaultRegion {
			t.Fatalf("DiscoverRegion with nothing to ask = %s", got)
		}
	})
}

// deadEndpoint is the URL of a local port nothing listens on.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
