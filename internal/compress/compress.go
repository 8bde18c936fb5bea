// Package compress provides the codecs walsnap stores WAL and backup data
// with: zstd (default), s2, gzip and none. The codec of an object is named by
// its key suffix (".zst", ".s2", ".gz", none).
package compress

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec is a compression method with a level.
type Codec struct {
	name  string
	level int
}

// Names of the supported codecs.
const (
	Zstd = "zstd"
	S2   = "s2"
	Gzip = "gzip"
	None = "none"
)

// Default is the codec used when none is configured: zstd at level 1,
// chosen because WAL archiving is latency bound (see scripts/bench).
var Default = Codec{name: Zstd, level: 1}

// Parse reads a codec spec: "zstd", "zstd:<1-22>", "s2", "gzip",
// "gzip:<1-9>" or "none".
func Parse(spec string) (Codec, error) {
	name, lvl, hasLevel := strings.Cut(strings.TrimSpace(spec), ":")
	c := Codec{name: name}
	switch name {
	case Zstd:
		c.level = Default.level
	case Gzip:
		c.level = gzip.DefaultCompression
	case S2, None:
		if hasLevel {
			return Codec{}, fmt.Errorf("compression %q: %s takes no level", spec, name)
		}
		return c, nil
	default:
		return Codec{}, fmt.Errorf("compression %q: unknown codec (want zstd, zstd:<level>, s2, gzip or none)", spec)
	}
	if hasLevel {
		n, err := strconv.Atoi(lvl)
		max := 22
		if name == Gzip {
			max = 9
		}
		if err != nil || n < 1 || n > max {
			return Codec{}, fmt.Errorf("compression %q: level must be 1-%d", spec, max)
		}
		c.level = n
	}
	return c, nil
}

// Name is the codec's name ("zstd", "s2", "gzip" or "none").
func (c Codec) Name() string { return c.name }

// String is the codec spec that Parse accepts.
func (c Codec) String() string {
	if c.name == Zstd || c.name == Gzip {
		return c.name + ":" + strconv.Itoa(c.level)
	}
	return c.name
}

// MarshalText writes the codec spec (for config files and JSON).
func (c Codec) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a codec spec (see Parse).
func (c *Codec) UnmarshalText(b []byte) error {
	parsed, err := Parse(string(b))
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// Suffix is the key suffix objects written with this codec carry.
func (c Codec) Suffix() string { return suffixOf(c.name) }

func suffixOf(name string) string {
	switch name {
	case Zstd:
		return ".zst"
	case S2:
		return ".s2"
	case Gzip:
		return ".gz"
	}
	return ""
}

// Suffixes lists the key suffixes of every codec, "" (none) last.
func Suffixes() []string { return []string{".zst", ".s2", ".gz", ""} }

// FromKey splits an object key into its base and codec by the suffix.
// A key without a known suffix uses the none codec.
func FromKey(key string) (base string, c Codec) {
	for _, n := range []string{Zstd, S2, Gzip} {
		if s := suffixOf(n); strings.HasSuffix(key, s) {
			cc, _ := Parse(n)
			return strings.TrimSuffix(key, s), cc
		}
	}
	return key, Codec{name: None}
}

var zstdEncoders sync.Map // level → *zstd.Encoder

func zstdEncoder(level int) (*zstd.Encoder, error) {
	if e, ok := zstdEncoders.Load(level); ok {
		return e.(*zstd.Encoder), nil
	}
	// EncodeAll runs each call on its own goroutine, but at most
	// "concurrency" calls at once: allow one per CPU, or the parallel
	// chunks of Encode would queue behind each other. No frame checksum
	// (XXH64): the repository keeps the SHA-256 of the raw bytes of every
	// WAL object and checks it on every read, so it would check the same
	// bytes twice (a tenth of the CPU of a segment's compression).
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	actual, _ := zstdEncoders.LoadOrStore(level, e)
	return actual.(*zstd.Encoder), nil
}

// parallelChunk is the size above which Encode splits its input into
// independently compressed frames, one per CPU, to cut latency. Every codec
// here decodes concatenated frames (members) as one stream.
const parallelChunk = 4 << 20

// Encode compresses src and appends the result to dst. Its zstd frames
// carry no checksum of their own (see zstdEncoder): the caller keeps one.
func (c Codec) Encode(dst, src []byte) ([]byte, error) {
	n := runtime.GOMAXPROCS(0)
	if c.name == None || n < 2 || len(src) < 2*parallelChunk {
		return c.encodeOne(dst, src)
	}
	if max := len(src) / parallelChunk; n > max {
		n = max
	}
	parts := make([][]byte, n)
	errs := make([]error, n)
	size := (len(src) + n - 1) / n
	var wg sync.WaitGroup
	for i := range n {
		lo, hi := i*size, min((i+1)*size, len(src))
		wg.Go(func() { parts[i], errs[i] = c.encodeOne(nil, src[lo:hi]) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			return nil, errs[i]
		}
		dst = append(dst, parts[i]...)
	}
	return dst, nil
}

func (c Codec) encodeOne(dst, src []byte) ([]byte, error) {
	switch c.name {
	case Zstd:
		e, err := zstdEncoder(c.level)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		return e.EncodeAll(src, dst), nil
	case S2:
		// The s2 stream format (not the block format) so that concatenated
		// parts decode as one stream.
		return streamEncode(dst, src, func(w io.Writer) (io.WriteCloser, error) {
			return s2.NewWriter(w, s2.WriterConcurrency(1)), nil
		})
	case Gzip:
		return streamEncode(dst, src, func(w io.Writer) (io.WriteCloser, error) {
			return gzip.NewWriterLevel(w, c.level)
		})
	case None:
		return append(dst, src...), nil
	}
	return nil, fmt.Errorf("unknown codec %q", c.name)
}

// Writer is a streaming compressor that can be reused with Reset.
type Writer interface {
	io.WriteCloser
	// Reset discards any state and makes the writer write to w.
	Reset(w io.Writer)
}

// NewWriter returns a streaming compressor for c, single-threaded so that
// callers can run one per worker. Call Reset(w) before writing.
func (c Codec) NewWriter() (Writer, error) {
	switch c.name {
	case Zstd:
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(c.level)), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		return e, nil
	case S2:
		return s2.NewWriter(nil, s2.WriterConcurrency(1)), nil
	case Gzip:
		e, err := gzip.NewWriterLevel(nil, c.level)
		if err != nil {
			return nil, fmt.Errorf("gzip encoder: %w", err)
		}
		return e, nil
	case None:
		return &plainWriter{}, nil
	}
	return nil, fmt.Errorf("unknown codec %q", c.name)
}

// plainWriter is the Writer of the none codec.
type plainWriter struct{ w io.Writer }

func (p *plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *plainWriter) Close() error                { return nil }
func (p *plainWriter) Reset(w io.Writer)           { p.w = w }

// streamEncode appends to dst the output of a streaming compressor.
func streamEncode(dst, src []byte, newWriter func(io.Writer) (io.WriteCloser, error)) ([]byte, error) {
	b := bytes.NewBuffer(dst)
	w, err := newWriter(b)
	if err == nil {
		_, err = w.Write(src)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	return b.Bytes(), nil
}

// zstdDecoders holds idle zstd decoders. A new one allocates several MiB
// of buffers; a standing prefetcher or a restore reads thousands of WAL
// files one after another.
var zstdDecoders sync.Pool

// zstdReader reads a zstd stream with a decoder that goes back to
// zstdDecoders when the stream has ended cleanly and the reader is closed.
// One that failed is closed instead: a decoder is not reused after an
// error.
type zstdReader struct {
	d     *zstd.Decoder
	ended bool
}

func (z *zstdReader) Read(p []byte) (int, error) {
	if z.d == nil {
		return 0, errors.New("zstd: read after close")
	}
	n, err := z.d.Read(p)
	z.ended = err == io.EOF
	return n, err
}

func (z *zstdReader) Close() error {
	if z.d == nil {
		return nil
	}
	d := z.d
	z.d = nil
	if z.ended && d.Reset(nil) == nil {
		zstdDecoders.Put(d)
	} else {
		d.Close()
	}
	return nil
}

// NewReader returns a reader that decompresses r. Close it when done:
// that returns its resources for the next reader.
func (c Codec) NewReader(r io.Reader) (io.ReadCloser, error) {
	switch c.name {
	case Zstd:
		if d, ok := zstdDecoders.Get().(*zstd.Decoder); ok {
			if err := d.Reset(r); err != nil {
				d.Close()
				return nil, fmt.Errorf("zstd decoder: %w", err)
			}
			return &zstdReader{d: d}, nil
		}
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
		return &zstdReader{d: d}, nil
	case S2:
		return io.NopCloser(s2.NewReader(r)), nil
	case Gzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return z, nil
	case None:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown codec %q", c.name)
}
