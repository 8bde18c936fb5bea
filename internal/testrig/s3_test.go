package testrig

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestS3(t *testing.T) {
	outer := S3(t)
	var inner S3Env
	t.Run("fresh bucket", func(t *testing.T) {
		inner = S3(t)
		if !regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`).MatchString(inner.Bucket) {
			t.Errorf("bucket name %q is not a valid S3 bucket name", inner.Bucket)
		}
		c := inner.client()
		list, err := c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &inner.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Contents) != 0 {
			t.Errorf("new bucket holds %d objects", len(list.Contents))
		}
		key := "a/b"
		if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &inner.Bucket, Key: &key, Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	})
	if inner.Bucket == "" {
		t.FailNow() // failed above
	}

	_, err := inner.client().HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: &inner.Bucket})
	if nf := (*types.NotFound)(nil); !errors.As(err, &nf) {
		t.Errorf("bucket %s after its test ended: HeadBucket error = %v, want NotFound", inner.Bucket, err)
	}
	if outer.Bucket == inner.Bucket {
		t.Errorf("two calls returned the same bucket %s", outer.Bucket)
	}
	if outer.Endpoint != inner.Endpoint {
		t.Errorf("endpoint changed between calls: %s, %s", inner.Endpoint, outer.Endpoint)
	}
}

func TestS3EnvEnviron(t *testing.T) {
	e := S3Env{Region: "eu-west-3", AccessKey: "AK", SecretKey: "SK", Bucket: "b", Endpoint: "http://x"}
	want := []string{"AWS_ACCESS_KEY_ID=AK", "AWS_SECRET_ACCESS_KEY=SK", "AWS_REGION=eu-west-3"}
	if got := e.Environ(); !slices.Equal(got, want) {
		t.Errorf("Environ() = %q, want %q", got, want)
	}
}
