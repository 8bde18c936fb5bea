package repo

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"filippo.io/age"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/wal"
)

// Client-side encryption (issue 15). A repository handle with recipients
// (encryption.recipients) stores every data object — WAL, history and
// backup history files, files-provider parts — compressed, then encrypted
// with age to those recipients; one with an identity
// (encryption.identity_file) reads such objects back. The metadata of an
// encrypted object says so and records the SHA-256 of the stored bytes
// next to that of the raw bytes, so that anyone can check a stored object
// without the key. Reading an object looks at its own metadata, so a
// repository that holds both kinds (encryption turned on later) reads both.
//
// What stays readable without the key, by decision: walsnap.json, the
// manifests (backup-list, delete, verify and status run where the key is
// not; a manifest holds LSNs, times, backup_label and tablespace_map text
// and snapshot ids, not table data), the marks, locks and stored results,
// and, for an encrypted timeline history file, its entries without their
// reason text in the object's metadata (metaHistory), which is what delete,
// verify and status need of it.

// EncryptionAge is the metadata value (and identity field) of age
// encryption.
const EncryptionAge = "age"

// ErrNoKey means an encrypted object cannot be read here: no identity is
// configured, it cannot be loaded, or it is not one the object was
// encrypted to. It never matches ErrNotExist, so that wal-fetch cannot
// take a missing key for a missing file.
var ErrNoKey = errors.New("cannot decrypt")

// ErrPlaintextWriter means a writer without recipients met a repository
// that expects encryption.
var ErrPlaintextWriter = errors.New("the repository expects encryption")

// keys are a handle's age keys.
type keys struct {
	recipients   []age.Recipient
	identityFile string
	load         func() ([]age.Identity, error)

	once sync.Once
	ids  []age.Identity
	err  error
}

// SetEncryption makes the handle encrypt new data objects to
// e.Recipients (none: store them unencrypted) and decrypt with the
// identity in e.IdentityFile, which is read when first needed. Call it
// once, before the handle is used.
func (r *Repo) SetEncryption(e config.Encryption) {
	r.keys = &keys{recipients: e.Recipients.List(), identityFile: e.IdentityFile, load: e.Identities}
}

// Encrypts reports whether the handle encrypts new data objects.
func (r *Repo) Encrypts() bool { return r.keys != nil && len(r.keys.recipients) > 0 }

// hasIdentity reports whether the handle is configured with an identity
// (which may still fail to load).
func (r *Repo) hasIdentity() bool { return r.keys != nil && r.keys.identityFile != "" }

// identities returns the handle's identities, loaded once.
func (r *Repo) identities() ([]age.Identity, error) {
	k := r.keys
	if !r.hasIdentity() {
		return nil, fmt.Errorf("%w: encryption.identity_file is not set; reading the repository's encrypted objects needs the age identity (private key) on this host", ErrNoKey)
	}
	k.once.Do(func() {
		k.ids, k.err = k.load()
		if k.err != nil {
			k.err = fmt.Errorf("%w: %v", ErrNoKey, k.err)
		}
	})
	return k.ids, k.err
}

// CheckIdentity loads the identity and returns why it cannot be used
// (matching ErrNoKey), or nil.
func (r *Repo) CheckIdentity() error {
	_, err := r.identities()
	return err
}

// seal returns a writer that encrypts to dst for the handle's recipients;
// its Close writes the last chunk.
func (r *Repo) seal(dst io.Writer) (io.WriteCloser, error) {
	w, err := age.Encrypt(dst, r.keys.recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %v", err)
	}
	return w, nil
}

// unseal returns a reader of the plaintext of the encrypted object key,
// read from src.
func (r *Repo) unseal(key string, src io.Reader) (io.Reader, error) {
	ids, err := r.identities()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	plain, err := age.Decrypt(src, ids...)
	var nomatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &nomatch):
		return nil, fmt.Errorf("%s: %w: the identity in %s is not one of the recipients the object was encrypted to", key, ErrNoKey, r.keys.identityFile)
	case err != nil:
		return nil, fmt.Errorf("%s: decrypt: %v", key, err)
	}
	return plain, nil
}

// historyMeta is the metadata form of a timeline history file's entries
// (metaHistory): "parent switchpoint" pairs joined by ";", the newest
// entries that fit in maxHistoryMeta bytes (S3 allows 2 KiB of metadata
// in all). The reasons are left out.
func historyMeta(entries []wal.HistoryEntry) string {
	const maxHistoryMeta = 1024
	var parts []string
	size := 0
	for i := len(entries) - 1; i >= 0; i-- {
		p := fmt.Sprintf("%d %s", entries[i].ParentTLI, entries[i].SwitchPoint)
		if size+len(p)+1 > maxHistoryMeta {
			break
		}
		size += len(p) + 1
		parts = append([]string{p}, parts...)
	}
	return strings.Join(parts, ";")
}

// parseHistoryMeta reads what historyMeta wrote.
func parseHistoryMeta(s string) ([]wal.HistoryEntry, error) {
	return wal.ParseHistory([]byte(strings.NewReplacer(";", "\n", " ", "\t").Replace(s)))
}
