// Package ebs is walsnap's use of the EC2 API for EBS: describing the
// volumes that hold PostgreSQL, snapshotting them (crash-consistently
// across volumes), waiting for the snapshots, and building, attaching and
// removing volumes at restore time.
package ebs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
)

// Options configure a Client.
type Options struct {
	// Region of the instance and volumes; when empty, the SDK's usual
	// sources (AWS_REGION, shared config) and then the instance metadata
	// service decide.
	Region string
	// Endpoint replaces the EC2 endpoint (an EC2-compatible API).
	Endpoint string
	// MaxAttempts bounds the SDK's attempts per API call (default 8); its
	// standard retryer backs off exponentially (up to 20 s) on throttling
	// and transient errors.
	MaxAttempts int
	// SnapshotBackoff is the wait before each retry of a snapshot call
	// refused with SnapshotCreationPerVolumeRateExceeded, which the SDK
	// does not retry; its length is the number of retries. nil means 15 s,
	// 30 s, 60 s, 120 s (AWS asks for at least 10 s between snapshots of a
	// volume).
	SnapshotBackoff []time.Duration
}

const (
	defaultMaxAttempts    = 8
	dialTimeout           = 10 * time.Second
	responseHeaderTimeout = time.Minute
	// volumeWaitTimeout bounds each wait for a volume state (available,
	// attached), on top of the caller's context.
	volumeWaitTimeout = 10 * time.Minute
	// cleanupTimeout bounds the removal of what a failed call created.
	cleanupTimeout = 2 * time.Minute
	// detachGrace is how long a detach may take before it is forced.
	detachGrace = 2 * time.Minute
	// defaultSnapshotPoll is WaitSnapshots' interval when given none.
	defaultSnapshotPoll = 15 * time.Second
)

// defaultSnapshotBackoff is Options.SnapshotBackoff's default.
var defaultSnapshotBackoff = []time.Duration{15 * time.Second, 30 * time.Second, 60 * time.Second, 120 * time.Second}

// Client performs walsnap's EC2/EBS operations.
type Client struct {
	ec2 *ec2.Client
	// snapshotBackoff is the wait before each retry of a snapshot call
	// refused with SnapshotCreationPerVolumeRateExceeded.
	snapshotBackoff []time.Duration
	// waitMinDelay and waitMaxDelay bound the polling interval of the
	// volume waiters.
	waitMinDelay, waitMaxDelay time.Duration
}

// New returns a Client using the SDK's default credential chain
// (environment, shared config, web identity, instance role).
func New(ctx context.Context, o Options) (*Client, error) {
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = defaultMaxAttempts
	}
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = responseHeaderTimeout })
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryMaxAttempts(attempts),
		config.WithRetryMode(aws.RetryModeStandard),
		config.WithEC2IMDSRegion(),
	}
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("load the AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set ebs.region, or run on EC2")
	}
	client := ec2.NewFromConfig(cfg, func(eo *ec2.Options) {
		if o.Endpoint != "" {
			eo.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	backoff := defaultSnapshotBackoff
	if o.SnapshotBackoff != nil {
		backoff = slices.Clone(o.SnapshotBackoff)
	}
	return &Client{
		ec2:             client,
		snapshotBackoff: backoff,
		waitMinDelay:    2 * time.Second,
		waitMaxDelay:    15 * time.Second,
	}, nil
}

// apiErrorCode is the API error code in err's chain, or "".
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
