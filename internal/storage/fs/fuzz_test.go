package fs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzEnvelope: an object file of a file:// repository may be damaged or
// planted. Head, Get and List never panic on it; what they accept has the
// size its header claims, and Get returns exactly that many bytes.
func FuzzEnvelope(f *testing.F) {
	dir := f.TempDir()
	s, err := New(dir)
	if err != nil {
		f.Fatal(err)
	}
	good := filepath.Join(dir, "seed")
	if err := s.PutIfAbsent(context.Background(), "seed", strings.NewReader("hello"), 5, map[string]string{"walsnap-codec": "none"}); err != nil {
		f.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	f.Add(data)
	f.Add([]byte("WSNPOBJ1"))
	f.Add(append([]byte("WSNPOBJ1\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01{}"), 'x'))
	f.Add([]byte("WSNPOBJ1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		root := t.TempDir()
		st, err := New(root)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "wal"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "wal", "obj"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if info, err := st.Head(ctx, "wal/obj"); err == nil && info.Size > int64(len(raw)) {
			t.Fatalf("Head: size %d of a %d-byte file", info.Size, len(raw))
		}
		rc, info, err := st.Get(ctx, "wal/obj")
		if err == nil {
			body, rerr := io.ReadAll(rc)
			rc.Close()
			if rerr == nil && int64(len(body)) != info.Size {
				t.Fatalf("Get: %d bytes read, header says %d", len(body), info.Size)
			}
		}
		st.List(ctx, "wal/")
	})
}
