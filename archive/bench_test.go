package archive

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/s3"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// BenchmarkPushS3 measures one wal-push of a 16 MiB segment into MinIO,
// in process (no process start): read, validate, hash, compress, upload.
func BenchmarkPushS3(b *testing.B) {
	env := testrig.S3(b)
	env.Setenv(b)
	st, err := s3.New(context.Background(), s3.Options{Bucket: env.Bucket, Prefix: "bench", Endpoint: env.Endpoint, Region: env.Region, PathStyle: true})
	if err != nil {
		b.Fatal(err)
	}
	r := repo.New(st)
	walDir := filepath.Join(b.TempDir(), "pg_wal")
	os.MkdirAll(filepath.Join(walDir, "archive_status"), 0o700)
	const size = 16 << 20
	p := &Pusher{Repo: r, Codec: compress.Default, Concurrency: 4, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.SetBytes(size)
	no := uint64(1)
	for b.Loop() {
		b.StopTimer()
		seg := wal.Segment{TLI: 1, No: no}
		no++
		hdr := wal.LongPageHeader{Magic: 0xD110, Info: 2, TLI: 1, PageAddr: seg.StartLSN(size), SystemID: 42, SegSize: size, BlockSize: 8192}
		data := make([]byte, size)
		copy(data, hdr.Bytes())
		for i := 64; i < size; i += 97 {
			data[i] = byte(i / 4096)
		}
		path := filepath.Join(walDir, seg.Name(size))
		os.WriteFile(path, data, 0o600)
		b.StartTimer()
		if err := p.Push(context.Background(), path); err != nil {
			b.Fatal(err)
		}
	}
}
