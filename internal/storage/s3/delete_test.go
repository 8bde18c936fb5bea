package s3

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/storagetest"
)

// deleteRequest is what a DeleteObjects request carried.
type deleteRequest struct {
	keys       int
	contentMD5 string
	md5OK      bool
	checksums  []string // x-amz-checksum-* and x-amz-sdk-checksum-algorithm headers
}

// strictProxy stands in front of MinIO like an S3-compatible store that
// knows only Content-MD5: it refuses a DeleteObjects request that carries
// a newer checksum header (as s3proxy and older stores do), and records
// every DeleteObjects request.
type strictProxy struct {
	mu       sync.Mutex
	requests []deleteRequest
}

func (p *strictProxy) start(t *testing.T, endpoint string) string {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // signed by the client
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !r.URL.Query().Has("delete") {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := md5.Sum(body)
		req := deleteRequest{keys: strings.Count(string(body), "<Key>"), contentMD5: r.Header.Get("Content-MD5")}
		req.md5OK = req.contentMD5 == base64.StdEncoding.EncodeToString(sum[:])
		for name := range r.Header {
			if h := strings.ToLower(name); strings.HasPrefix(h, "x-amz-checksum-") || h == "x-amz-sdk-checksum-algorithm" {
				req.checksums = append(req.checksums, h)
			}
		}
		p.mu.Lock()
		p.requests = append(p.requests, req)
		p.mu.Unlock()
		if len(req.checksums) > 0 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><Message>unsupported header %s</Message></Error>`, req.checksums[0])
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDeleteManyChecksums: with checksums "when_required" DeleteMany sends
// Content-MD5 and no newer checksum, so a store that refuses those
// deletes; with "when_supported" the SDK's CRC32 goes, and that store
// refuses it. Batches hold at most storage.MaxDeleteBatch keys.
func TestDeleteManyChecksums(t *testing.T) {
	for _, mode := range []string{ChecksumsWhenRequired, ChecksumsWhenSupported} {
		t.Run(mode, func(t *testing.T) {
			o := minio(t)
			direct := mustNew(t, o)
			var p strictProxy
			o.Endpoint, o.Checksums = p.start(t, o.Endpoint), mode
			s := mustNew(t, o)
			storagetest.Put(t, direct, "wal/a", []byte("a"), nil)
			keys := []string{"wal/a"}
			for i := range storage.MaxDeleteBatch + 500 {
				keys = append(keys, fmt.Sprintf("wal/missing-%d", i))
			}
			err := s.DeleteMany(t.Context(), keys)
			_, headErr := direct.Head(t.Context(), "wal/a")
			p.mu.Lock()
			defer p.mu.Unlock()
			if mode == ChecksumsWhenSupported {
				if err == nil || headErr != nil || len(p.requests) == 0 || len(p.requests[0].checksums) == 0 {
					t.Fatalf("when_supported: DeleteMany = %v, object still there: %v, requests %+v; want the SDK's checksum, refused", err, headErr == nil, p.requests)
				}
				return
			}
			if err != nil || headErr == nil {
				t.Fatalf("when_required: DeleteMany = %v, Head after = %v; want the object deleted", err, headErr)
			}
			if len(p.requests) != 2 || p.requests[0].keys+p.requests[1].keys != len(keys) {
				t.Fatalf("requests %+v: want 2 batches of %d keys in all", p.requests, len(keys))
			}
			for _, r := range p.requests {
				if r.keys > storage.MaxDeleteBatch || !r.md5OK || len(r.checksums) != 0 {
					t.Errorf("request %+v: want at most %d keys, a correct Content-MD5 and no other checksum", r, storage.MaxDeleteBatch)
				}
			}
		})
	}
}
