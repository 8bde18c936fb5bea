package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// s3Flags locate a bucket (and prefix) on an S3-compatible server.
type s3Flags struct {
	endpoint, ca, region, bucket, prefix string
}

func (s *s3Flags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.endpoint, "endpoint", "", "S3 endpoint URL (path-style)")
	fs.StringVar(&s.ca, "ca", "", "PEM CA file for a TLS endpoint")
	fs.StringVar(&s.region, "region", "us-east-1", "S3 region")
	fs.StringVar(&s.bucket, "bucket", "", "bucket")
	fs.StringVar(&s.prefix, "prefix", "", "key prefix (no leading or trailing slash)")
}

// client returns an SDK client for the endpoint. Request checksums are only
// sent where required and payloads are not signed: the raw ceiling should
// cost the client as little as the server accepts.
func (s *s3Flags) client(ctx context.Context) (*s3.Client, error) {
	if s.endpoint == "" {
		return nil, errors.New("-endpoint is required")
	}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 16
	})
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", s.ca)
		}
		hc = hc.WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		})
	}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(s.region),
		config.WithHTTPClient(hc),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s.endpoint)
		o.UsePathStyle = true
	}), nil
}

func (s *s3Flags) key(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "/" + name
}

// storedBytes sums the sizes of the objects under the prefix.
func (s *s3Flags) storedBytes(ctx context.Context) (int64, int, error) {
	c, err := s.client(ctx)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	var n int
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.key(""))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("list s3://%s/%s: %w", s.bucket, s.prefix, err)
		}
		for _, o := range page.Contents {
			total += aws.ToInt64(o.Size)
			n++
		}
	}
	return total, n, nil
}

func cmdMkbucket(args []string) error {
	fs := flag.NewFlagSet("mkbucket", flag.ExitOnError)
	var s s3Flags
	s.register(fs)
	fs.Parse(args)
	ctx := context.Background()
	c, err := s.client(ctx)
	if err != nil {
		return err
	}
	for _, b := range fs.Args() {
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return nil
}

// cmdRaw PUTs the corpus segments as they are (uncompressed) into a fresh
// prefix, then GETs them back, -conc requests at a time, and records one
// row for each direction.
func cmdRaw(args []string) error {
	fs := flag.NewFlagSet("raw", flag.ExitOnError)
	var s s3Flags
	s.register(fs)
	corpus := fs.String("corpus", "", "directory of WAL segments")
	segments := fs.Int("segments", 64, "segments to use")
	conc := fs.Int("conc", 1, "requests at once")
	var rf rowFlags
	rf.register(fs)
	fs.Parse(args)
	ctx := context.Background()
	c, err := s.client(ctx)
	if err != nil {
		return err
	}
	names, err := pickSegments(*corpus, *segments)
	if err != nil {
		return err
	}
	data := make([][]byte, len(names))
	var total int64
	for i, n := range names {
		if data[i], err = os.ReadFile(*corpus + "/" + n); err != nil {
			return err
		}
		total += int64(len(data[i]))
	}
	unsigned := func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	}
	put := func(i int) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: aws.String(s.key(names[i])),
			Body: bytes.NewReader(data[i]), ContentLength: aws.Int64(int64(len(data[i]))),
		}, unsigned)
		return err
	}
	get := func(i int) error {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(names[i]))})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		n, err := io.Copy(io.Discard, out.Body)
		if err == nil && n != int64(len(data[i])) {
			err = fmt.Errorf("%s: got %d bytes, want %d", names[i], n, len(data[i]))
		}
		return err
	}
	for _, op := range []struct {
		name string
		fn   func(int) error
	}{{"put", put}, {"get", get}} {
		smp := startSample(rf.minioPID)
		lat, wall, err := parallel(len(names), *conc, op.fn)
		if err != nil {
			return fmt.Errorf("raw %s: %w", op.name, err)
		}
		row := rf.row(strings.ReplaceAll(rf.id, "{op}", op.name), strings.ReplaceAll(rf.label, "{op}", strings.ToUpper(op.name)))
		row.fill(len(names), total, wall, lat)
		row.addUsage(smp.stop())
		if err := row.append(rf.out); err != nil {
			return err
		}
	}
	// Keep the server small for the runs that follow.
	_, _, err = parallel(len(names), 4, func(i int) error {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(names[i]))})
		return err
	})
	return err
}

// parallel runs fn(0..n-1), conc at a time, and returns each call's latency
// and the wall time.
func parallel(n, conc int, fn func(int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	sem := make(chan struct{}, max(1, conc))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t := time.Now()
			errs[i] = fn(i)
			lat[i] = time.Since(t)
		})
	}
	wg.Wait()
	return lat, time.Since(start), errors.Join(errs...)
}
