package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/walsnap/walsnap/internal/compress"
)

// cmdCodec measures the CPU work of one segment in memory, no I/O: SHA-256,
// zstd:1 through walsnap's own compress.Encode one at a time and 4 at
// once (as push-ahead does), age encryption and decryption of the
// compressed object (the cost of encryption.recipients per segment), and
// one private zstd encoder per goroutine.
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
	// The zstd:1 objects, encrypted as walsnap stores them with
	// encryption.recipients set (age, X25519), and the key to read them.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	compressed := make([][]byte, len(data))
	sealed := make([][]byte, len(data))
	for i := range data {
		if compressed[i], err = codec.Encode(nil, data[i]); err != nil {
			return err
		}
		if sealed[i], err = ageEncrypt(compressed[i], id.Recipient()); err != nil {
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
		{"cpu-age-encrypt", "age encrypt of the zstd:1 object, one at a time", "X25519 recipient, ChaCha20-Poly1305 stream, + SHA-256 of the ciphertext (as wal-push with encryption.recipients)", 1, func(i, _ int) error {
			out, err := ageEncrypt(compressed[i], id.Recipient())
			sha256.Sum256(out)
			return err
		}},
		{"cpu-age-decrypt", "age decrypt of the encrypted object, one at a time", "X25519 identity (as wal-fetch with encryption.identity_file)", 1, func(i, _ int) error {
			r, err := age.Decrypt(bytes.NewReader(sealed[i]), id)
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
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

// ageEncrypt encrypts data whole to recipient.
func ageEncrypt(data []byte, recipient age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipient)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cmdKeygen writes a new age identity to a file (0600) and prints its
// recipient, for the encrypted runs (no age-keygen needed).
func cmdKeygen(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("keygen takes the identity file to write")
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	if err := os.WriteFile(args[0], []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Println(id.Recipient())
	return nil
}
