package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/walsnap/walsnap/internal/compress"
)

// cmdCodec measures the CPU work of one segment in memory, no I/O: SHA-256,
// and zstd:1 through walsnap's own compress.Encode one at a time and 4 at
// once (as push-ahead does), against one private encoder per goroutine.
func cmdCodec(args []string) error {
	fs := flag.NewFlagSet("codec", flag.ExitOnError)
	corpus := fs.String("corpus", "", "directory of WAL segments")
	segments := fs.Int("segments", 64, "segments to use")
	var rf rowFlags
	rf.register(fs)
	fs.Parse(args)
	names, err := pickSegments(*corpus, *segments)
	if err != nil {
		return err
	}
	data := make([][]byte, len(names))
	var total int64
	for i, n := range names {
		if data[i], err = os.ReadFile(filepath.Join(*corpus, n)); err != nil {
			return err
		}
		total += int64(len(data[i]))
	}
	codec, err := compress.Parse("zstd:1")
	if err != nil {
		return err
	}
	var private [4]*zstd.Encoder
	for i := range private {
		if private[i], err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(1)), zstd.WithEncoderConcurrency(1)); err != nil {
			return err
		}
	}
	codec.Encode(nil, data[0]) // warm up the encoders
	for _, e := range private {
		e.EncodeAll(data[0], nil)
	}
	runs := []struct {
		id, label, notes string
		conc             int
		fn               func(i, worker int) error
	}{
		{"cpu-sha256", "sha256, one at a time", "crypto/sha256", 1, func(i, _ int) error {
			sha256.Sum256(data[i])
			return nil
		}},
		{"cpu-zstd-walsnap-1", "zstd:1 compress.Encode, one at a time", "walsnap's Encode: splits a segment in GOMAXPROCS frames", 1, func(i, _ int) error {
			_, err := codec.Encode(nil, data[i])
			return err
		}},
		{"cpu-zstd-walsnap-4", "zstd:1 compress.Encode, 4 at once", "as push-ahead (push.concurrency 4) calls it", 4, func(i, _ int) error {
			_, err := codec.Encode(nil, data[i])
			return err
		}},
		{"cpu-zstd-private-1", "zstd:1 private encoder, one at a time", "one zstd.Encoder, whole segment, one core", 1, func(i, _ int) error {
			private[0].EncodeAll(data[i], nil)
			return nil
		}},
		{"cpu-zstd-private-4", "zstd:1 private encoder each, 4 at once", "one zstd.Encoder per goroutine, whole segment", 4, func(i, w int) error {
			private[w].EncodeAll(data[i], nil)
			return nil
		}},
	}
	for _, r := range runs {
		workers := make(chan int, r.conc)
		for w := range r.conc {
			workers <- w
		}
		smp := startSample(0)
		lat, wall, err := parallel(len(names), r.conc, func(i int) error {
			w := <-workers
			defer func() { workers <- w }()
			return r.fn(i, w)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", r.label, err)
		}
		row := rf.row(r.id, r.label)
		row.fill(len(names), total, wall, lat)
		row.Notes = join(r.notes, fmt.Sprintf("GOMAXPROCS %d", runtime.GOMAXPROCS(0)))
		row.addUsage(smp.stop())
		if err := row.append(rf.out); err != nil {
			return err
		}
	}
	return nil
}
