package repo

import (
	"context"
	"io"
)

// DigestPart reads the part key of backup id whole, as verify --deep
// does: decrypted (when this host has the identity) and decompressed,
// hashing the raw bytes, and for an encrypted object the stored bytes too;
// an encrypted part this host cannot decrypt is read and hashed as
// stored (Content false). It does not judge: the caller compares the
// digest with the manifest and the object's metadata (Digest.Check). An
// error means the part could not be read, decrypted or decompressed at
// all.
func (r *Repo) DigestPart(ctx context.Context, id, key string) (Digest, error) {
	if err := checkPartKey(id, key); err != nil {
		return Digest{}, err
	}
	body, info, err := r.store.Get(ctx, key)
	if err != nil {
		return Digest{}, err
	}
	if info.Key == "" {
		info.Key = key
	}
	return r.digest(ctx, body, info, io.Discard)
}
