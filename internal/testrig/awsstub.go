package testrig

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync/atomic"
	"testing"
)

// IMDSStub is an EC2 instance metadata service (IMDSv2) that knows one
// thing: the instance's region, in its identity document. Point the AWS SDK
// at it with AWS_EC2_METADATA_SERVICE_ENDPOINT=Endpoint.
type IMDSStub struct {
	Endpoint string
	hits     atomic.Int32
}

// Hits is how many identity documents the stub served.
func (s *IMDSStub) Hits() int { return int(s.hits.Load()) }

// IMDS starts an IMDSStub that reports region, stopped when t ends.
func IMDS(t testing.TB, region string) *IMDSStub {
	t.Helper()
	const token = "walsnap-test-imds-token"
	s := &IMDSStub{}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		w.Write([]byte(token))
	})
	mux.HandleFunc("GET /latest/dynamic/instance-identity/document", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != token {
			http.Error(w, "missing or bad token", http.StatusUnauthorized)
			return
		}
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"region": %q, "availabilityZone": "%sa", "instanceId": "i-0123456789abcdef0", "accountId": "111122223333"}`, region, region)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.Endpoint = srv.URL
	return s
}

// sigV4Region finds the region in a SigV4 Authorization header's
// credential scope (Credential=AKID/20260101/eu-west-1/s3/aws4_request).
var sigV4Region = regexp.MustCompile(`Credential=[^/,]+/[0-9]{8}/([^/,]+)/s3/aws4_request`)

// RegionGate puts, in front of env's S3 server, a proxy that behaves as
// AWS S3 does for a bucket in region: a request signed for another region
// is refused (301 for HEAD, 400 AuthorizationHeaderMalformed otherwise),
// and every answer names the bucket's region in x-amz-bucket-region. It
// returns env pointed at the proxy, with Region set to region. The proxy
// stops when t ends.
func RegionGate(t testing.TB, env S3Env, region string) S3Env {
	t.Helper()
	target, err := url.Parse(env.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the signature covers the Host header
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("X-Amz-Bucket-Region", region)
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := sigV4Region.FindStringSubmatch(r.Header.Get("Authorization"))
		if m == nil || m[1] != region {
			w.Header().Set("X-Amz-Bucket-Region", region)
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusMovedPermanently)
				return
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code>` +
				`<Message>the region is wrong; expecting '` + region + `'</Message><Region>` + region + `</Region></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env.Endpoint, env.Region = srv.URL, region
	return env
}
