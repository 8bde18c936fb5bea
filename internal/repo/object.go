package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/ctxio"
	"github.com/walsnap/walsnap/internal/storage"
)

// Metadata keys carried by every data object (WAL files and backup parts).
const (
	metaSHA256  = "walsnap-sha256"   // hex SHA-256 of the raw (uncompressed) bytes
	metaRawSize = "walsnap-raw-size" // raw size in bytes
	metaCodec   = "walsnap-codec"    // codec name
	// Of an encrypted object (crypt.go): the scheme ("age"), the hex
	// SHA-256 of the stored bytes, and for a timeline history file its
	// entries (historyMeta).
	metaEncryption   = "walsnap-encryption"
	metaStoredSHA256 = "walsnap-stored-sha256"
	metaHistory      = "walsnap-history"
)

// ObjectMeta is what every data object records about its content: the
// SHA-256 and size of the raw bytes, and the codec they are stored with;
// for an encrypted object also the SHA-256 of the stored bytes.
type ObjectMeta struct {
	SHA256  string // hex
	RawSize int64
	Codec   compress.Codec
	// Encrypted objects are compressed, then encrypted with age;
	// StoredSHA256 (hex) is then the SHA-256 of the bytes as stored.
	Encrypted    bool
	StoredSHA256 string
}

func (m ObjectMeta) toMap() map[string]string {
	out := map[string]string{metaSHA256: m.SHA256, metaRawSize: strconv.FormatInt(m.RawSize, 10), metaCodec: m.Codec.Name()}
	if m.Encrypted {
		out[metaEncryption], out[metaStoredSHA256] = EncryptionAge, m.StoredSHA256
	}
	return out
}

// objectMeta reads the metadata of a stored data object; the codec comes
// from the key's suffix, which is what the reader must use.
func objectMeta(info storage.ObjectInfo) (ObjectMeta, error) {
	_, codec := compress.FromKey(info.Key)
	m := ObjectMeta{SHA256: info.Metadata[metaSHA256], Codec: codec}
	n, err := strconv.ParseInt(info.Metadata[metaRawSize], 10, 64)
	if err != nil || len(m.SHA256) != 64 || n < 0 {
		return ObjectMeta{}, fmt.Errorf("%s: object has no valid walsnap checksum metadata", info.Key)
	}
	m.RawSize = n
	switch enc := info.Metadata[metaEncryption]; enc {
	case "":
	case EncryptionAge:
		m.Encrypted, m.StoredSHA256 = true, info.Metadata[metaStoredSHA256]
		if len(m.StoredSHA256) != 64 {
			return ObjectMeta{}, fmt.Errorf("%s: encrypted object has no valid stored checksum metadata", info.Key)
		}
	default:
		return ObjectMeta{}, fmt.Errorf("%s: object is encrypted with %q, which this walsnap cannot read", info.Key, enc)
	}
	return m, nil
}

// ObjectWriter writes data objects in the form the repository stores
// them: the raw bytes written to it are hashed and compressed with its
// codec and, when the repository encrypts, encrypted (age's streaming
// format, so memory stays bounded); the stored bytes are counted, and
// hashed when encrypted, on their way out. It writes one object at a time
// (Reset, Write..., Close) and keeps its compressor for the next.
type ObjectWriter struct {
	r                   *Repo
	codec               compress.Codec
	comp                compress.Writer
	encrypting          bool
	seal                io.WriteCloser
	dst                 io.Writer
	rawHash, storedHash hash.Hash
	raw, stored         int64
}

// NewObjectWriter returns a writer of objects compressed with codec.
func (r *Repo) NewObjectWriter(codec compress.Codec) (*ObjectWriter, error) {
	comp, err := codec.NewWriter()
	if err != nil {
		return nil, err
	}
	return &ObjectWriter{r: r, codec: codec, comp: comp, rawHash: sha256.New(), storedHash: sha256.New()}, nil
}

// Reset begins a new object, whose stored bytes go to dst.
func (w *ObjectWriter) Reset(dst io.Writer) error {
	w.dst, w.raw, w.stored, w.seal, w.encrypting = dst, 0, 0, nil, w.r.Encrypts()
	w.rawHash.Reset()
	w.storedHash.Reset()
	out := io.Writer(storedSink{w})
	if w.encrypting { // the age header is written here, and hashed
		s, err := w.r.seal(out)
		if err != nil {
			return err
		}
		w.seal, out = s, s
	}
	w.comp.Reset(out)
	return nil
}

// Write takes raw bytes of the current object.
func (w *ObjectWriter) Write(p []byte) (int, error) {
	w.rawHash.Write(p)
	w.raw += int64(len(p))
	return w.comp.Write(p)
}

// Raw is the raw bytes written to the current object so far.
func (w *ObjectWriter) Raw() int64 { return w.raw }

// Close ends the current object and returns its metadata, for PutPart,
// and its stored size.
func (w *ObjectWriter) Close() (ObjectMeta, int64, error) {
	if err := w.comp.Close(); err != nil {
		return ObjectMeta{}, 0, err
	}
	m := ObjectMeta{SHA256: hex.EncodeToString(w.rawHash.Sum(nil)), RawSize: w.raw, Codec: w.codec}
	if w.encrypting {
		if err := w.seal.Close(); err != nil {
			return ObjectMeta{}, 0, fmt.Errorf("encrypt: %v", err)
		}
		m.Encrypted, m.StoredSHA256 = true, hex.EncodeToString(w.storedHash.Sum(nil))
	}
	return m, w.stored, nil
}

// storedSink counts (and, when encrypting, hashes) the stored bytes on
// their way to the destination.
type storedSink struct{ w *ObjectWriter }

func (s storedSink) Write(p []byte) (int, error) {
	if s.w.encrypting {
		s.w.storedHash.Write(p)
	}
	n, err := s.w.dst.Write(p)
	s.w.stored += int64(n)
	return n, err
}

// Digest is what reading a stored data object whole found.
type Digest struct {
	Key  string
	Size int64 // stored bytes, as the store lists the object
	Meta ObjectMeta
	// Stored is the stored bytes read; StoredSHA256 their SHA-256 (hex),
	// computed for encrypted objects.
	Stored       int64
	StoredSHA256 string
	// Content reports whether the raw bytes were read (an encrypted
	// object that this host has no identity for is checked by its stored
	// bytes only); Raw and SHA256 describe them.
	Content bool
	Raw     int64
	SHA256  string
}

// Check compares the digest with the object's own metadata and returns
// the first difference, or nil.
func (d Digest) Check() error {
	switch {
	case d.Stored != d.Size:
		return fmt.Errorf("%s: read %d stored bytes, the store lists %d", d.Key, d.Stored, d.Size)
	case d.Meta.Encrypted && d.StoredSHA256 != d.Meta.StoredSHA256:
		return fmt.Errorf("%s: stored bytes checksum mismatch: sha256 %s, metadata says %s", d.Key, d.StoredSHA256, d.Meta.StoredSHA256)
	case !d.Content:
		return nil
	case d.Raw != d.Meta.RawSize:
		return fmt.Errorf("%s: %d bytes after decompression, metadata says %d", d.Key, d.Raw, d.Meta.RawSize)
	case d.SHA256 != d.Meta.SHA256:
		return fmt.Errorf("%s: checksum mismatch: sha256 %s, metadata says %s", d.Key, d.SHA256, d.Meta.SHA256)
	}
	return nil
}

// ObjectReader reads a stored data object back as its raw bytes:
// decrypted when it is encrypted, decompressed, and counted and hashed on
// the way; Finish completes the digest. Size and ObjectMeta describe the
// object as stored.
type ObjectReader struct {
	Key  string
	Size int64 // stored bytes, as the store reports them
	ObjectMeta

	body    io.ReadCloser
	stored  *hashCounter // the stored bytes
	plain   io.Reader    // after decryption
	dec     io.ReadCloser
	rawHash hash.Hash
	raw     int64
}

// openObject wraps a stored object's body, as returned by the store, in
// an ObjectReader; it closes body on error. With hashStored, the stored
// bytes of an encrypted object are hashed too (verify).
func (r *Repo) openObject(ctx context.Context, body io.ReadCloser, info storage.ObjectInfo, hashStored bool) (*ObjectReader, error) {
	meta, err := objectMeta(info)
	if err != nil {
		body.Close()
		return nil, err
	}
	o := &ObjectReader{Key: info.Key, Size: info.Size, ObjectMeta: meta, body: body, rawHash: sha256.New()}
	o.stored = &hashCounter{r: ctxio.Reader(ctx, body)}
	if meta.Encrypted && hashStored {
		o.stored.h = sha256.New()
	}
	o.plain = o.stored
	if meta.Encrypted {
		if o.plain, err = r.unseal(info.Key, o.stored); err != nil {
			body.Close()
			return nil, err
		}
	}
	if o.dec, err = meta.Codec.NewReader(o.plain); err != nil {
		body.Close()
		return nil, fmt.Errorf("%s: %w", info.Key, err)
	}
	return o, nil
}

// Read reads raw bytes.
func (o *ObjectReader) Read(p []byte) (int, error) {
	n, err := o.dec.Read(p)
	o.rawHash.Write(p[:n])
	o.raw += int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: read/decompress: %w", o.Key, err)
	}
	return n, err
}

// Close releases the object.
func (o *ObjectReader) Close() error {
	o.dec.Close()
	return o.body.Close()
}

// Finish reads the rest of the object (raw bytes, then whatever follows
// the compressed stream and the encrypted one) and returns its digest.
func (o *ObjectReader) Finish() (Digest, error) {
	d := Digest{Key: o.Key, Size: o.Size, Meta: o.ObjectMeta, Content: true}
	if _, err := io.Copy(io.Discard, o); err != nil {
		return d, err
	}
	for _, rest := range []io.Reader{o.plain, o.stored} {
		if _, err := io.Copy(io.Discard, rest); err != nil {
			return d, fmt.Errorf("%s: read: %w", o.Key, err)
		}
	}
	d.Raw, d.SHA256 = o.raw, hex.EncodeToString(o.rawHash.Sum(nil))
	d.Stored = o.stored.n
	if o.stored.h != nil {
		d.StoredSHA256 = hex.EncodeToString(o.stored.h.Sum(nil))
	}
	return d, nil
}

// Verify finishes reading and checks the raw bytes against the object's
// metadata: their size and SHA-256.
func (o *ObjectReader) Verify() error {
	d, err := o.Finish()
	if err != nil {
		return err
	}
	// The raw bytes' SHA-256 proves the content; the stored bytes are
	// verify's business (Digest).
	d.Size, d.StoredSHA256 = d.Stored, d.Meta.StoredSHA256
	return d.Check()
}

// digest reads a stored object whole: its raw bytes (which go to w) when
// it is not encrypted or this handle has an identity, else only its
// stored bytes. It closes body.
func (r *Repo) digest(ctx context.Context, body io.ReadCloser, info storage.ObjectInfo, w io.Writer) (Digest, error) {
	meta, err := objectMeta(info)
	if err != nil {
		body.Close()
		return Digest{}, err
	}
	if meta.Encrypted && !r.hasIdentity() {
		defer body.Close()
		hc := &hashCounter{r: ctxio.Reader(ctx, body), h: sha256.New()}
		if _, err := io.Copy(io.Discard, hc); err != nil {
			return Digest{}, fmt.Errorf("%s: read: %w", info.Key, err)
		}
		return Digest{Key: info.Key, Size: info.Size, Meta: meta, Stored: hc.n, StoredSHA256: hex.EncodeToString(hc.h.Sum(nil))}, nil
	}
	o, err := r.openObject(ctx, body, info, true)
	if err != nil {
		return Digest{}, err
	}
	defer o.Close()
	if _, err := io.Copy(w, o); err != nil {
		return Digest{}, err
	}
	return o.Finish()
}

// hashCounter counts, and with h hashes, what is read through it.
type hashCounter struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *hashCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	return n, err
}
