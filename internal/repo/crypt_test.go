package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/wal"
)

// testKeys makes an age key pair: the recipient and the path of an
// identity file.
func testKeys(t testing.TB) (string, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return id.Recipient().String(), path
}

// encryption is the setting for a handle: recipient ("" none) and
// identity file ("" none).
func encryption(t testing.TB, recipient, identityFile string) config.Encryption {
	t.Helper()
	var items []string
	if recipient != "" {
		items = []string{recipient}
	}
	rs, err := config.ParseRecipients(items)
	if err != nil {
		t.Fatal(err)
	}
	return config.Encryption{Recipients: rs, IdentityFile: identityFile}
}

// handles are views of one store with different keys.
func handle(st storage.Store, e config.Encryption) *Repo {
	r := New(st)
	r.SetEncryption(e)
	return r
}

func TestEncryptedWAL(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rcpt, key := testKeys(t)
	_, otherKey := testKeys(t)
	writer := handle(st, encryption(t, rcpt, ""))       // the database host
	reader := handle(st, encryption(t, "", key))        // the restore host
	stranger := handle(st, encryption(t, "", otherKey)) // a key the objects are not for
	blind := New(st)                                    // no keys at all

	raw := bytes.Repeat([]byte("walsnap WAL page "), 4096)
	sum := sha256.Sum256(raw)
	enc, err := compress.Default.Encode(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	name := "000000010000000000000003"
	key3, err := writer.PutWAL(ctx, name, compress.Default, enc, hex.EncodeToString(sum[:]), len(raw))
	if err != nil {
		t.Fatal(err)
	}
	// Stored: age ciphertext, metadata saying so, with both checksums.
	rc, info, err := st.Get(ctx, key3)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	storedSum := sha256.Sum256(stored)
	if !bytes.HasPrefix(stored, []byte("age-encryption.org/v1\n")) || bytes.Contains(stored, enc[:64]) {
		t.Fatalf("stored object is not age ciphertext: %q", stored[:64])
	}
	if info.Metadata[metaEncryption] != "age" || info.Metadata[metaStoredSHA256] != hex.EncodeToString(storedSum[:]) || info.Metadata[metaSHA256] != hex.EncodeToString(sum[:]) {
		t.Fatalf("metadata %v", info.Metadata)
	}

	var got bytes.Buffer
	obj, err := reader.CopyWAL(ctx, name, compress.Default, &got)
	if err != nil || !bytes.Equal(got.Bytes(), raw) || !obj.Encrypted {
		t.Fatalf("CopyWAL with the identity: %v, %d bytes, %+v", err, got.Len(), obj.ObjectMeta)
	}
	for who, r := range map[string]*Repo{"no identity": blind, "the writer": writer, "another identity": stranger} {
		_, err := r.CopyWAL(ctx, name, compress.Default, io.Discard)
		if !errors.Is(err, ErrNoKey) || errors.Is(err, ErrNotExist) {
			t.Errorf("CopyWAL by %s: %v; want ErrNoKey, never ErrNotExist", who, err)
		}
	}
	_, err = stranger.CopyWAL(ctx, name, compress.Default, io.Discard)
	if !strings.Contains(err.Error(), "not one of the recipients") {
		t.Errorf("wrong identity: %v", err)
	}

	// Without the identity, verify checks the stored bytes.
	d, err := blind.DigestWAL(ctx, name, compress.Default, io.Discard)
	if err != nil || d.Content || d.StoredSHA256 != hex.EncodeToString(storedSum[:]) || d.Check() != nil {
		t.Fatalf("DigestWAL without identity: %+v, %v", d, err)
	}
	var head bytes.Buffer
	d, err = reader.DigestWAL(ctx, name, compress.Default, &head)
	if err != nil || !d.Content || d.Check() != nil || !bytes.Equal(head.Bytes(), raw) {
		t.Fatalf("DigestWAL with identity: %+v, %v", d, err)
	}

	// A tampered ciphertext fails every reader: the stored checksum, and
	// age's authentication.
	tampered := bytes.Clone(stored)
	tampered[len(tampered)-100] ^= 1
	if err := st.Delete(ctx, key3); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, key3, bytes.NewReader(tampered), int64(len(tampered)), info.Metadata); err != nil {
		t.Fatal(err)
	}
	if d, err := blind.DigestWAL(ctx, name, compress.Default, io.Discard); err != nil || d.Check() == nil {
		t.Errorf("tampered object, stored check: %+v, %v", d, err)
	}
	if _, err := reader.CopyWAL(ctx, name, compress.Default, io.Discard); err == nil {
		t.Error("tampered object decrypted")
	}

	// A repository that turned encryption on later: plaintext objects
	// read as ever, by every handle.
	plainRaw := []byte("START WAL LOCATION: 0/2000028\n")
	psum := sha256.Sum256(plainRaw)
	penc, _ := compress.Default.Encode(nil, plainRaw)
	if _, err := blind.PutWAL(ctx, "000000010000000000000002.00000028.backup", compress.Default, penc, hex.EncodeToString(psum[:]), len(plainRaw)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Repo{blind, reader, writer} {
		if data, err := r.ReadWAL(ctx, "000000010000000000000002.00000028.backup"); err != nil || !bytes.Equal(data, plainRaw) {
			t.Errorf("plaintext object: %q, %v", data, err)
		}
	}

	// An encrypted history file: its entries are in the metadata, for
	// readers without the identity (delete, verify, status).
	hist := []byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-01-01 00:00:00+00\n")
	hsum := sha256.Sum256(hist)
	henc, _ := compress.Default.Encode(nil, hist)
	if _, err := writer.PutWAL(ctx, "00000003.history", compress.Default, henc, hex.EncodeToString(hsum[:]), len(hist)); err != nil {
		t.Fatal(err)
	}
	want := []wal.HistoryEntry{{ParentTLI: 1, SwitchPoint: 0x3000000}, {ParentTLI: 2, SwitchPoint: 0x5000000}}
	entries, err := blind.ReadHistory(ctx, "00000003.history")
	if err != nil || len(entries) != 2 || entries[0] != want[0] || entries[1] != want[1] {
		t.Errorf("ReadHistory without identity: %+v, %v", entries, err)
	}
	entries, err = reader.ReadHistory(ctx, "00000003.history")
	if err != nil || len(entries) != 2 || entries[1].Reason != "before 2026-01-01 00:00:00+00" {
		t.Errorf("ReadHistory with identity: %+v, %v", entries, err)
	}
	// A configured identity that does not load is an error, not a fallback.
	broken := handle(st, encryption(t, "", filepath.Join(t.TempDir(), "missing.txt")))
	if _, err := broken.ReadHistory(ctx, "00000003.history"); !errors.Is(err, ErrNoKey) || errors.Is(err, ErrNotExist) {
		t.Errorf("ReadHistory with a missing identity file: %v", err)
	}
}

func TestEncryptedParts(t *testing.T) {
	ctx := context.Background()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rcpt, key := testKeys(t)
	writer := handle(st, encryption(t, rcpt, ""))
	reader := handle(st, encryption(t, "", key))

	ow, err := writer.NewObjectWriter(compress.Default)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("ustar file bytes "), 100000) // several age chunks
	var objs [2]bytes.Buffer
	var metas [2]ObjectMeta
	for i := range objs { // the writer is reused, as the file backup does
		if err := ow.Reset(&objs[i]); err != nil {
			t.Fatal(err)
		}
		ow.Write(raw[:len(raw)/2])
		ow.Write(raw[len(raw)/2:])
		meta, n, err := ow.Close()
		if err != nil || n != int64(objs[i].Len()) || !meta.Encrypted || meta.RawSize != int64(len(raw)) {
			t.Fatalf("ObjectWriter.Close = %+v, %d, %v", meta, n, err)
		}
		metas[i] = meta
	}
	if bytes.Equal(objs[0].Bytes(), objs[1].Bytes()) || metas[0].SHA256 != metas[1].SHA256 {
		t.Fatal("two encryptions of the same bytes: same ciphertext, or different raw checksums")
	}
	partKey, err := writer.PutPart(ctx, "b1", 0, "part-00-0000.tar.zst", bytes.NewReader(objs[0].Bytes()), int64(objs[0].Len()), metas[0])
	if err != nil {
		t.Fatal(err)
	}
	plainMeta := ObjectMeta{SHA256: metas[0].SHA256, RawSize: metas[0].RawSize, Codec: compress.Default}
	if _, err := writer.PutPart(ctx, "b1", 0, "part-00-0001.tar.zst", bytes.NewReader(nil), 0, plainMeta); err == nil {
		t.Error("an encrypting handle stored an unencrypted part")
	}

	o, err := reader.OpenPart(ctx, "b1", partKey)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	err = o.Verify()
	o.Close()
	if err != nil || !bytes.Equal(got, raw) || o.Size != int64(objs[0].Len()) {
		t.Fatalf("OpenPart: %d bytes, %v", len(got), err)
	}
	if _, err := New(st).OpenPart(ctx, "b1", partKey); !errors.Is(err, ErrNoKey) {
		t.Errorf("OpenPart without identity: %v", err)
	}
	if err := New(st).ProbePart(ctx, "b1", partKey); !errors.Is(err, ErrNoKey) {
		t.Errorf("ProbePart without identity: %v", err)
	}
	if err := reader.ProbePart(ctx, "b1", partKey); err != nil {
		t.Errorf("ProbePart with identity: %v", err)
	}
	d, err := New(st).DigestPart(ctx, "b1", partKey)
	if err != nil || d.Content || d.StoredSHA256 != metas[0].StoredSHA256 || d.Check() != nil {
		t.Errorf("DigestPart without identity: %+v, %v", d, err)
	}
}

func TestEncryptionPolicy(t *testing.T) {
	ctx := context.Background()
	rcpt, key := testKeys(t)
	want := Identity{SystemID: 7301234567890123456, SegmentSize: 16 << 20, PGMajor: 15}

	// Created by a host with recipients: expects encryption from the start.
	st, _ := fs.New(t.TempDir())
	id, err := handle(st, encryption(t, rcpt, "")).InitIdentity(ctx, want)
	if err != nil || id.Encryption != "age" || id.FormatVersion != FormatEncrypted || id.EncryptionSince == nil {
		t.Fatalf("InitIdentity with recipients: %+v, %v", id, err)
	}
	if _, err := New(st).InitIdentity(ctx, want); !errors.Is(err, ErrPlaintextWriter) {
		t.Errorf("a writer without recipients: %v", err)
	}

	// Turned on later: the first writer with recipients records it.
	st, _ = fs.New(t.TempDir())
	plain := New(st)
	id, err = plain.InitIdentity(ctx, want)
	if err != nil || id.Encryption != "" || id.FormatVersion != FormatVersion {
		t.Fatalf("InitIdentity without recipients: %+v, %v", id, err)
	}
	if got, err := plain.CheckEncryption(ctx, id); err != nil || got != id {
		t.Fatalf("plain writer on a plain repository: %+v, %v", got, err)
	}
	enc := handle(st, encryption(t, rcpt, key))
	up, err := enc.CheckEncryption(ctx, id)
	if err != nil || up.Encryption != "age" || up.SystemID != id.SystemID || !up.CreatedAt.Equal(id.CreatedAt) {
		t.Fatalf("upgrade: %+v, %v", up, err)
	}
	stored, err := plain.Identity(ctx)
	if err != nil || stored.Encryption != "age" || stored.FormatVersion != FormatEncrypted {
		t.Fatalf("walsnap.json after the upgrade: %+v, %v", stored, err)
	}
	if _, err := st.Head(ctx, identityNextKey); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("the staging copy is left: %v", err)
	}
	if _, err := plain.CheckEncryption(ctx, stored); !errors.Is(err, ErrPlaintextWriter) || !strings.Contains(err.Error(), "encryption.recipients is not set") {
		t.Errorf("plain writer on an encrypted repository: %v", err)
	}
	if _, err := enc.CheckEncryption(ctx, stored); err != nil {
		t.Errorf("encrypting writer on an encrypted repository: %v", err)
	}

	// While walsnap.json is being replaced, readers find the new one.
	data, _ := marshalIdentity(stored)
	if err := st.Delete(ctx, IdentityKey); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, identityNextKey, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := plain.Identity(ctx); err != nil || got.Encryption != "age" {
		t.Errorf("Identity during the replacement: %+v, %v", got, err)
	}

	// An encrypted identity is refused by format by walsnaps without
	// encryption, and an inconsistent one by this one.
	for _, bad := range []string{
		`{"format_version":2,"system_identifier":"1","wal_segment_size":16777216}`,
		`{"format_version":1,"encryption":"age","system_identifier":"1","wal_segment_size":16777216}`,
		`{"format_version":3,"system_identifier":"1","wal_segment_size":16777216}`,
	} {
		if _, err := ParseIdentity([]byte(bad)); err == nil {
			t.Errorf("ParseIdentity(%s) accepted", bad)
		}
	}
}

// BenchmarkEncryption16MiB is the cost of encryption for one 16 MiB WAL
// segment in the worst case, an object that compression did not shrink:
// seal is age encryption plus the SHA-256 of the ciphertext, as PutWAL
// does them; open is decryption, as wal-fetch reads the object.
func BenchmarkEncryption16MiB(b *testing.B) {
	rcpt, key := testKeys(b)
	r := handle(nil, encryption(b, rcpt, key))
	data := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{}).Read(data) // incompressible, like ciphertext
	sealed, err := r.sealBytes(data)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			body, err := r.sealBytes(data)
			if err != nil {
				b.Fatal(err)
			}
			sha256.Sum256(body)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			plain, err := r.unseal("bench", bytes.NewReader(sealed))
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, plain); err != nil || n != int64(len(data)) {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	})
}
