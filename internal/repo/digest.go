package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/walsnap/walsnap/internal/ctxio"
)

// PartDigest is what reading a stored payload part whole found.
type PartDigest struct {
	Stored int64  // bytes read from the store
	Raw    int64  // bytes after decompression
	SHA256 string // hex SHA-256 of the raw bytes
	Meta   ObjectMeta
}

// DigestPart reads the part key of backup id whole, decompresses it with
// the codec of its key and hashes the result. It does not judge: the
// caller compares the digest with what the manifest and the object's
// metadata record. An error means the part could not be read or
// decompressed at all.
func (r *Repo) DigestPart(ctx context.Context, id, key string) (PartDigest, error) {
	rc, info, err := r.OpenPart(ctx, id, key)
	if err != nil {
		return PartDigest{}, err
	}
	defer rc.Close()
	d := PartDigest{Meta: info.ObjectMeta}
	var n storedBytes
	stored := io.TeeReader(ctxio.Reader(ctx, rc), &n)
	dec, err := info.Codec.NewReader(stored)
	if err != nil {
		return d, fmt.Errorf("%s: %w", key, err)
	}
	defer dec.Close()
	h := sha256.New()
	if d.Raw, err = io.Copy(h, dec); err != nil {
		return d, fmt.Errorf("%s: read/decompress: %w", key, err)
	}
	// Whatever follows the compressed stream is stored bytes too.
	if _, err := io.Copy(io.Discard, stored); err != nil {
		return d, fmt.Errorf("%s: read: %w", key, err)
	}
	d.Stored, d.SHA256 = int64(n), hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// storedBytes counts the bytes written to it.
type storedBytes int64

func (n *storedBytes) Write(p []byte) (int, error) {
	*n += storedBytes(len(p))
	return len(p), nil
}
