package compress

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec, want string
		bad        bool
	}{
		{spec: "zstd", want: "zstd:1"},
		{spec: "zstd:19", want: "zstd:19"},
		{spec: "zstd:0", bad: true},
		{spec: "zstd:23", bad: true},
		{spec: "zstd:x", bad: true},
		{spec: "s2", want: "s2"},
		{spec: "s2:3", bad: true},
		{spec: "gzip", want: "gzip:-1"},
		{spec: "gzip:9", want: "gzip:9"},
		{spec: "gzip:10", bad: true},
		{spec: "none", want: "none"},
		{spec: "lz4", bad: true},
		{spec: "", bad: true},
	} {
		c, err := Parse(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want error", tc.spec, c)
			}
			continue
		}
		if err != nil || c.String() != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tc.spec, c, err, tc.want)
		}
	}
}

func TestFromKey(t *testing.T) {
	for key, want := range map[string]string{
		"wal/00000001/000000010000000000000001.zst": "zstd",
		"wal/00000001/000000010000000000000001.s2":  "s2",
		"wal/00000002.history.gz":                   "gzip",
		"wal/00000002.history":                      "none",
	} {
		base, c := FromKey(key)
		if c.Name() != want || base+c.Suffix() != key {
			t.Errorf("FromKey(%q) = %q, %s", key, base, c.Name())
		}
	}
}

// walLike returns compressible data resembling WAL: repeated records with
// varying fields and some zero padding.
func walLike(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 0, n)
	for len(b) < n {
		rec := make([]byte, 64+r.IntN(200))
		for i := range rec {
			if i%7 == 0 {
				rec[i] = byte(r.IntN(256))
			} else {
				rec[i] = byte(i)
			}
		}
		b = append(b, rec...)
		b = append(b, make([]byte, r.IntN(64))...)
	}
	return b[:n]
}

func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{
		"empty": {},
		"small": []byte("hello, wal"),
		"16MiB": walLike(16 << 20), // large enough for parallel frames
		"9MiB":  walLike(9<<20 + 123),
	}
	for _, spec := range []string{"zstd", "zstd:3", "s2", "gzip", "gzip:1", "none"} {
		c, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		for name, in := range inputs {
			enc, err := c.Encode(nil, in)
			if err != nil {
				t.Fatalf("%s/%s encode: %v", spec, name, err)
			}
			if spec != "none" && len(in) > 1<<20 && len(enc) >= len(in)/2 {
				t.Errorf("%s/%s: compressed %d → %d, expected at least 2x", spec, name, len(in), len(enc))
			}
			r, err := c.NewReader(bytes.NewReader(enc))
			if err != nil {
				t.Fatalf("%s/%s reader: %v", spec, name, err)
			}
			out, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatalf("%s/%s decode: %v", spec, name, err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("%s/%s: round trip mismatch (%d vs %d bytes)", spec, name, len(out), len(in))
			}
		}
	}
}

// TestEncodeFramesWithoutChecksum: Encode's zstd frames leave out the
// frame checksum (the repository's SHA-256 covers the bytes), and still
// decode.
func TestEncodeFramesWithoutChecksum(t *testing.T) {
	c, _ := Parse("zstd")
	enc, err := c.Encode(nil, walLike(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if h.HasCheckSum {
		t.Fatal("Encode wrote a zstd frame checksum")
	}
}

func TestCorruptInputFails(t *testing.T) {
	in := walLike(1 << 20)
	for _, spec := range []string{"zstd", "s2", "gzip"} {
		c, _ := Parse(spec)
		enc, _ := c.Encode(nil, in)
		enc[len(enc)/2] ^= 0xff
		enc = enc[:len(enc)-3]
		r, err := c.NewReader(bytes.NewReader(enc))
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if err == nil {
			t.Errorf("%s: corrupted, truncated stream decoded without error", spec)
		}
	}
}

func BenchmarkEncode16MiB(b *testing.B) {
	in := walLike(16 << 20)
	for _, spec := range []string{"zstd:1", "zstd:3", "s2", "gzip:1"} {
		c, _ := Parse(spec)
		b.Run(spec, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			var out []byte
			for b.Loop() {
				out, _ = c.Encode(out[:0], in)
			}
			b.ReportMetric(float64(len(in))/float64(len(out)), "ratio")
		})
	}
}

func BenchmarkDecode16MiB(b *testing.B) {
	in := walLike(16 << 20)
	for _, spec := range []string{"zstd:1", "s2", "gzip:1"} {
		c, _ := Parse(spec)
		enc, _ := c.Encode(nil, in)
		b.Run(spec, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r, _ := c.NewReader(bytes.NewReader(enc))
				io.Copy(io.Discard, r)
				r.Close()
			}
		})
	}
}

func TestNewWriterReuse(t *testing.T) {
	in := walLike(3 << 20)
	for _, spec := range []string{"zstd", "s2", "gzip", "none"} {
		c, _ := Parse(spec)
		w, err := c.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		// Two streams through one writer: Reset must start a fresh one.
		for round := range 2 {
			var buf bytes.Buffer
			w.Reset(&buf)
			if _, err := w.Write(in[round:]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := c.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(out, in[round:]) {
				t.Fatalf("%s round %d: stream mismatch (%v)", spec, round, err)
			}
		}
	}
}

// TestDecoderReuse: zstd decoders go back to a pool after a stream read to
// its end, and a reused decoder decodes the next stream exactly, whatever
// the stream before it did: ended cleanly, failed (a corrupt frame), or
// was left half read. A reader refuses reads after Close.
func TestDecoderReuse(t *testing.T) {
	c := Codec{name: Zstd, level: 1}
	rng := rand.New(rand.NewPCG(3, 4))
	stream := func(n int) ([]byte, []byte) {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(rng.IntN(16))
		}
		enc, err := c.Encode(nil, raw)
		if err != nil {
			t.Fatal(err)
		}
		return raw, enc
	}
	decode := func(enc []byte) ([]byte, error) {
		r, err := c.NewReader(bytes.NewReader(enc))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	for round := range 6 {
		raw, enc := stream(1<<20 + round*4099)
		switch round % 3 {
		case 1: // a corrupt stream first: its decoder must not come back broken
			bad := bytes.Clone(enc)
			bad[len(bad)/2] ^= 0xff
			if got, err := decode(bad); err == nil && bytes.Equal(got, raw) {
				t.Fatal("a corrupt stream decoded to the original")
			}
		case 2: // a stream read half, then closed
			r, err := c.NewReader(bytes.NewReader(enc))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			r.Close()
			if _, err := r.Read(make([]byte, 10)); err == nil {
				t.Fatal("read after Close succeeded")
			}
		}
		got, err := decode(enc)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("round %d: a reused decoder decoded other bytes", round)
		}
	}
	// A clean end returns the decoder for the next reader: decoding a
	// small stream then allocates a fraction of a new decoder's buffers.
	// (The least of ten: sync.Pool may drop an item now and then.)
	_, enc := stream(4096)
	least := uint64(math.MaxUint64)
	var ms runtime.MemStats
	for range 10 {
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		if _, err := decode(enc); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		least = min(least, ms.TotalAlloc-before)
	}
	fresh, err := zstd.NewReader(bytes.NewReader(enc), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	if _, err := io.ReadAll(fresh); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	fresh.Close()
	if least*4 > ms.TotalAlloc-before {
		t.Fatalf("a decode allocates %d bytes, a new decoder's reading %d: decoders are not reused", least, ms.TotalAlloc-before)
	}
}
