package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

func newRepo(t *testing.T) *Repo {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return New(st)
}

func TestIdentity(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	if _, err := r.Identity(ctx); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("empty repository: %v, want ErrNoIdentity", err)
	}
	want := Identity{SystemID: 7301234567890123456, SegmentSize: 16 << 20, PGMajor: 15}
	got, err := r.InitIdentity(ctx, want)
	if err != nil || got.SystemID != want.SystemID || got.FormatVersion != FormatVersion {
		t.Fatalf("InitIdentity = %+v, %v", got, err)
	}
	// A second cluster does not replace it; it gets the existing identity
	// back, and CheckSame names the difference.
	other := Identity{SystemID: 42, SegmentSize: 16 << 20, PGMajor: 15}
	got, err = r.InitIdentity(ctx, other)
	if err != nil || got.SystemID != want.SystemID {
		t.Fatalf("second InitIdentity = %+v, %v", got, err)
	}
	if err := got.CheckSame(other); err == nil || !strings.Contains(err.Error(), "7301234567890123456") {
		t.Fatalf("CheckSame: %v", err)
	}
	if err := got.CheckSame(Identity{SystemID: want.SystemID, SegmentSize: 64 << 20}); err == nil {
		t.Fatal("CheckSame accepted another segment size")
	}
	// The system id is stored as a JSON string (it exceeds 2^53).
	rc, _, err := r.store.Get(ctx, IdentityKey)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Contains(data, []byte(`"system_identifier": "7301234567890123456"`)) {
		t.Fatalf("walsnap.json: %s", data)
	}
}

func TestParseIdentityRejects(t *testing.T) {
	for _, s := range []string{
		`{`,
		`{"format_version": 2, "system_identifier": "1", "wal_segment_size": 16777216}`,
		`{"format_version": 1, "system_identifier": "0", "wal_segment_size": 16777216}`,
		`{"format_version": 1, "system_identifier": "1", "wal_segment_size": 1000}`,
	} {
		if _, err := ParseIdentity([]byte(s)); err == nil {
			t.Errorf("ParseIdentity(%s) accepted", s)
		}
	}
}

func TestWALKey(t *testing.T) {
	for name, want := range map[string]string{
		"000000010000000A000000FF":                 "wal/00000001/000000010000000A000000FF.zst",
		"00000003.history":                         "wal/00000003.history.zst",
		"000000020000000000000005.partial":         "wal/00000002/000000020000000000000005.partial.zst",
		"000000010000000000000002.00000028.backup": "wal/00000001/000000010000000000000002.00000028.backup.zst",
	} {
		if got := WALKey(name, ".zst"); got != want {
			t.Errorf("WALKey(%s) = %s, want %s", name, got, want)
		}
	}
}

func TestIsKeyOf(t *testing.T) {
	n := "000000010000000A000000FF"
	for key, want := range map[string]bool{
		"wal/00000001/000000010000000A000000FF.zst":         true,
		"wal/00000001/000000010000000A000000FF":             true,
		"wal/00000001/000000010000000A000000FF.s2":          true,
		"wal/00000001/000000010000000A000000FF.partial.zst": false,
		"wal/00000002/000000010000000A000000FF.zst":         false,
		"backups/x/000000010000000A000000FF.zst":            false,
	} {
		if got := IsKeyOf(key, n); got != want {
			t.Errorf("IsKeyOf(%s) = %v", key, got)
		}
	}
}

func TestOpenWALAnyCodec(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	raw := []byte("1\t0/3000000\tno recovery target specified\n")
	s2, _ := compress.Parse("s2")
	enc, _ := s2.Encode(nil, raw)
	if _, err := r.PutWAL(ctx, "00000002.history", s2, enc, "0000000000000000000000000000000000000000000000000000000000000000", len(raw)); err != nil {
		t.Fatal(err)
	}
	// Stored with s2, asked for with zstd preferred: found by listing.
	obj, err := r.OpenWAL(ctx, "00000002.history", compress.Default)
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	if obj.Codec.Name() != "s2" || obj.RawSize != int64(len(raw)) {
		t.Fatalf("OpenWAL found %+v", obj.ObjectMeta)
	}
	if _, err := r.OpenWAL(ctx, "00000003.history", compress.Default); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("absent file: %v", err)
	}
	// An object without walsnap metadata is an error, never served.
	if err := r.store.PutIfAbsent(ctx, WALKey("00000004.history", ".zst"), bytes.NewReader(enc), int64(len(enc)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OpenWAL(ctx, "00000004.history", compress.Default); err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("object without checksum metadata: %v", err)
	}
}

func jsonIndent(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	return append(data, '\n'), err
}
