package s3

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// defaultRegion is the region of last resort, and the one S3 answers
// for from anywhere.
const defaultRegion = "us-east-1"

// imdsTimeout bounds the instance metadata lookup: off EC2 nothing
// answers, and wal-push must not wait long for that.
const imdsTimeout = 2 * time.Second

// DiscoverRegion returns the region for o's bucket. A set o.Region wins;
// else the AWS SDK's chain (AWS_REGION, AWS_DEFAULT_REGION, the shared
// config's profile); else the bucket's own region, which S3 reports in
// HeadBucket's x-amz-bucket-region header to a request signed for this
// instance's region (from IMDS), or for us-east-1 off EC2; else the
// instance's region; else us-east-1. This is the usual case for
// archive_command and restore_command on EC2, which run without the
// operator's environment.
func DiscoverRegion(ctx context.Context, o Options) string {
	if o.Region != "" {
		return o.Region
	}
	if cfg, err := config.LoadDefaultConfig(ctx); err == nil && cfg.Region != "" {
		return cfg.Region
	}
	instance := instanceRegion(ctx)
	probe := o
	probe.Region = cmp.Or(instance, defaultRegion)
	probe.MaxAttempts = 2
	if r := bucketRegion(ctx, probe); r != "" {
		return r
	}
	return probe.Region
}

// instanceRegion is this EC2 instance's region from IMDS, or "" (not on
// EC2, IMDS disabled or unreachable).
func instanceRegion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	client := imds.New(imds.Options{Retryer: retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2 })})
	out, err := client.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return ""
	}
	return out.Region
}

// bucketRegion asks S3 for the region of o's bucket with a HeadBucket
// signed for o.Region: S3 names the bucket's region in the
// x-amz-bucket-region header whether it answers 200 or, for a request
// signed for another region, 301 or 400. "" when no answer names one.
func bucketRegion(ctx context.Context, o Options) string {
	s, err := New(ctx, o)
	if err != nil {
		return ""
	}
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return aws.ToString(out.BucketRegion)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}
