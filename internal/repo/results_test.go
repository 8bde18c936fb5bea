package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/storage"
)

func TestResults(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	if _, err := r.LatestResult(ctx, ResultVerify); !errors.Is(err, ErrNoResult) {
		t.Fatalf("no result yet: %v, want ErrNoResult", err)
	}
	for i := 1; i <= 3; i++ {
		gen, err := r.PutResult(ctx, ResultVerify, fmt.Appendf(nil, `{"n":%d}`, i))
		if err != nil || gen != uint64(i) {
			t.Fatalf("PutResult %d = %d, %v", i, gen, err)
		}
	}
	got, err := r.LatestResult(ctx, ResultVerify)
	if err != nil || got.Generation != 3 || string(got.Data) != `{"n":3}` || got.Stored.IsZero() {
		t.Fatalf("LatestResult = %+v (%s), %v", got, got.Data, err)
	}

	// Writers racing for the same generation each get their own; none is
	// overwritten, and only the newest results are kept.
	var wg sync.WaitGroup
	gens := make([]uint64, 8)
	for i := range gens {
		wg.Go(func() {
			g, err := r.PutResult(ctx, ResultVerify, fmt.Appendf(nil, `{"writer":%d}`, i))
			if err != nil {
				t.Error(err)
			}
			gens[i] = g
		})
	}
	wg.Wait()
	slices.Sort(gens)
	if want := []uint64{4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(gens, want) {
		t.Fatalf("racing writers got generations %v, want %v", gens, want)
	}
	for range 10 {
		if _, err := r.PutResult(ctx, ResultVerify, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := r.store.List(ctx, "status/verify/")
	if err != nil || len(objs) != resultsKept || objs[len(objs)-1].Key != "status/verify/00000000000000000021.json" {
		t.Fatalf("after 21 results the repository keeps %d: %v %v", len(objs), objs, err)
	}
	// A kind's results are its own.
	if _, err := r.LatestResult(ctx, "drill"); !errors.Is(err, ErrNoResult) {
		t.Fatalf("another kind: %v", err)
	}
}

// failingStore refuses writes.
type failingStore struct{ storage.Store }

func (failingStore) PutIfAbsent(context.Context, string, io.ReadSeeker, int64, map[string]string) error {
	return errors.New("access denied")
}

func TestProbeWrite(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	if err := r.ProbeWrite(ctx); err != nil {
		t.Fatal(err)
	}
	if objs, err := r.store.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("the probe left %v (%v)", objs, err)
	}
	if err := New(failingStore{r.store}).ProbeWrite(ctx); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("ProbeWrite on a store that refuses writes: %v", err)
	}
}

func TestDigestPart(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	raw := bytes.Repeat([]byte("walsnap part "), 10000)
	codec, _ := compress.Parse("zstd")
	encoded, err := codec.Encode(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	enc := bytes.NewBuffer(encoded)
	sum := sha256.Sum256(raw)
	meta := ObjectMeta{SHA256: hex.EncodeToString(sum[:]), RawSize: int64(len(raw)), Codec: codec}
	key, err := r.PutPart(ctx, "b1", 0, "part-0001.tar"+codec.Suffix(), bytes.NewReader(enc.Bytes()), int64(enc.Len()), meta)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.DigestPart(ctx, "b1", key)
	if err != nil || d.Stored != int64(enc.Len()) || !d.Content || d.Raw != int64(len(raw)) || d.SHA256 != meta.SHA256 || d.Meta != meta || d.Check() != nil {
		t.Fatalf("DigestPart = %+v, %v; want %d stored, %d raw, %s", d, err, enc.Len(), len(raw), meta.SHA256)
	}
	if _, err := r.DigestPart(ctx, "b1", "backups/b2/data/base/x"); err == nil {
		t.Fatal("a key outside the backup was read")
	}
	if _, err := r.DigestPart(ctx, "b1", key+"-gone"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("a missing part: %v", err)
	}
}
