// Package storagetest is the conformance suite that every storage.Store
// backend runs from its tests.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/storage"
)

// Run runs the conformance suite. newStore returns an empty store for one
// subtest; it may register cleanups on t.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"NoOverwrite", testNoOverwrite},
		{"ConcurrentPut", testConcurrentPut},
		{"Missing", testMissing},
		{"List", testList},
		{"Delete", testDelete},
		{"DeleteMany", testDeleteMany},
		{"InvalidKeys", testInvalidKeys},
		{"FailedPut", testFailedPut},
		{"Canceled", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// Payload returns n pseudo-random bytes, the same for the same seed.
func Payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	r.Read(b)
	return b
}

// Put stores data under key and fails t on error.
func Put(t testing.TB, s storage.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("PutIfAbsent(%q): %v", key, err)
	}
}

// Check reads key back and fails t unless it holds data and meta.
func Check(t testing.TB, s storage.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	rc, info, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Get(%q) returned %d bytes, want %d (equal prefix: %d bytes)", key, len(got), len(data), commonPrefix(got, data))
	}
	checkInfo(t, "Get", key, info, int64(len(data)), meta)
	info, err = s.Head(t.Context(), key)
	if err != nil {
		t.Fatalf("Head(%q): %v", key, err)
	}
	checkInfo(t, "Head", key, info, int64(len(data)), meta)
}

func checkInfo(t testing.TB, op, key string, info storage.ObjectInfo, size int64, meta map[string]string) {
	t.Helper()
	if info.Key != key {
		t.Errorf("%s(%q).Key = %q", op, key, info.Key)
	}
	if info.Size != size {
		t.Errorf("%s(%q).Size = %d, want %d", op, key, info.Size, size)
	}
	if d := time.Since(info.ModTime).Abs(); d > time.Hour {
		t.Errorf("%s(%q).ModTime = %v, %v away from now", op, key, info.ModTime, d)
	}
	if !maps.Equal(info.Metadata, meta) {
		t.Errorf("%s(%q).Metadata = %v, want %v", op, key, info.Metadata, meta)
	}
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func testRoundTrip(t *testing.T, s storage.Store) {
	if s.String() == "" {
		t.Error("String() is empty")
	}
	every := make([]byte, 512)
	for i := range every {
		every[i] = byte(i)
	}
	meta := map[string]string{"codec": "zst", "raw-size": "16777216", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	cases := []struct {
		key  string
		data []byte
		meta map[string]string
	}{
		{"empty", nil, map[string]string{}},
		{"every-byte.bin", every, meta},
		{"wal/00000001/000000010000000000000001.zst", Payload(1, 20<<20), meta},
	}
	for _, c := range cases {
		Put(t, s, c.key, c.data, c.meta)
		Check(t, s, c.key, c.data, c.meta)
	}

	// Metadata keys come back lower-case.
	Put(t, s, "mixed-case", []byte("x"), map[string]string{"Raw-Size": "1"})
	Check(t, s, "mixed-case", []byte("x"), map[string]string{"raw-size": "1"})
}

func testNoOverwrite(t *testing.T, s storage.Store) {
	const key = "wal/00000001.history"
	orig, meta := []byte("1\t0/3000000\tno recovery target specified\n"), map[string]string{"sha256": "aa"}
	Put(t, s, key, orig, meta)
	other := []byte("different content")
	err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(other), int64(len(other)), map[string]string{"sha256": "bb"})
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second PutIfAbsent(%q) = %v, want ErrExists", key, err)
	}
	Check(t, s, key, orig, meta)
}

func testConcurrentPut(t *testing.T, s storage.Store) {
	const key, n = "wal/00000001/000000010000000000000002.zst", 8
	payloads := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		payloads[i] = Payload(uint64(100+i), 256<<10)
		wg.Go(func() {
			<-start
			errs[i] = s.PutIfAbsent(t.Context(), key, bytes.NewReader(payloads[i]), int64(len(payloads[i])),
				map[string]string{"writer": fmt.Sprint(i)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Errorf("writer %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	Check(t, s, key, payloads[winner], map[string]string{"writer": fmt.Sprint(winner)})
}

func testMissing(t *testing.T, s storage.Store) {
	Put(t, s, "dir/object", []byte("x"), nil)
	for _, key := range []string{"nope", "dir", "dir/nope", "dir/object/below", "dir/obj"} {
		if rc, _, err := s.Get(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q) = %v, want ErrNotExist", key, err)
		}
		if _, err := s.Head(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Head(%q) = %v, want ErrNotExist", key, err)
		}
	}
}

func testList(t *testing.T, s storage.Store) {
	keys := []string{
		"a-b",
		"a/b",
		"a/b-c/d",
		"backups/20260101T000000Z/manifest.json",
		"wal/00000001.history",
		"wal/00000001/000000010000000000000001.zst",
		"wal/00000001/000000010000000000000002.zst",
		"wal/00000001/00000001000000000000000A.zst",
		"wal/00000001/000000010000000100000000.zst",
		"wal/00000002.history",
		"walsnap.json",
	}
	sizes := map[string]int{}
	for i, k := range slices.Backward(keys) { // not in order
		sizes[k] = i * 7
		Put(t, s, k, Payload(uint64(i), sizes[k]), map[string]string{"i": fmt.Sprint(i)})
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"a", keys[:3]},
		{"a/", keys[1:3]},
		{"a/b", keys[1:3]},
		{"a/b-", keys[2:3]},
		{"wal", keys[4:]},
		{"wal/", keys[4:10]},
		{"wal/0000000", keys[4:10]},
		{"wal/00000001", keys[4:9]},
		{"wal/00000001/", keys[5:9]},
		{"wal/00000001/0000000100000000000000", keys[5:8]},
		{"wal/00000001/000000010000000000000002.zst", keys[6:7]},
		{"wal/00000003", nil},
		{"nope/", nil},
		{"b", keys[3:4]},
	}
	for _, c := range cases {
		objs, err := s.List(t.Context(), c.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", c.prefix, err)
			continue
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.Key)
			if o.Size != int64(sizes[o.Key]) {
				t.Errorf("List(%q): %s has size %d, want %d", c.prefix, o.Key, o.Size, sizes[o.Key])
			}
			if o.Metadata != nil {
				t.Errorf("List(%q): %s has metadata %v, want nil", c.prefix, o.Key, o.Metadata)
			}
			if d := time.Since(o.ModTime).Abs(); d > time.Hour {
				t.Errorf("List(%q): %s has ModTime %v, %v away from now", c.prefix, o.Key, o.ModTime, d)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
}

func testDelete(t *testing.T, s storage.Store) {
	Put(t, s, "backups/x/manifest.json", []byte("{}"), nil)
	Put(t, s, "backups/x/data", []byte("data"), nil)
	for range 2 { // deleting a missing key is not an error
		if err := s.Delete(t.Context(), "backups/x/manifest.json"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := s.Head(t.Context(), "backups/x/manifest.json"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Head after Delete = %v, want ErrNotExist", err)
	}
	if err := s.Delete(t.Context(), "never/existed"); err != nil {
		t.Errorf("Delete(never/existed) = %v", err)
	}
	Check(t, s, "backups/x/data", []byte("data"), map[string]string{})
	if err := s.Delete(t.Context(), "backups/x/data"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if objs, err := s.List(t.Context(), ""); err != nil || len(objs) != 0 {
		t.Errorf("List after deleting everything = %v, %v; want nothing", objs, err)
	}
	// The key can be written again.
	Put(t, s, "backups/x/manifest.json", []byte("again"), nil)
	Check(t, s, "backups/x/manifest.json", []byte("again"), map[string]string{})
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, key := range []string{"", "/abs", "a/", "a//b", ".", "..", "./a", "a/.", "a/./b", "../a", "a/../b", "a/..", `a\b`} {
		if err := s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("x")), 1, nil); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded", key)
		}
		if rc, _, err := s.Get(ctx, key); err == nil {
			rc.Close()
			t.Errorf("Get(%q) succeeded", key)
		} else if errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Get(%q) = %v; an invalid key is not a missing object", key, err)
		}
		if _, err := s.Head(ctx, key); err == nil || errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Head(%q) = %v, want an error other than ErrNotExist", key, err)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded", key)
		}
	}
	for _, prefix := range []string{"/abs", "../", "a/../", `a\`} {
		if _, err := s.List(ctx, prefix); err == nil {
			t.Errorf("List(%q) succeeded", prefix)
		}
	}
	if objs, err := s.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("List after invalid puts = %v, %v; want nothing", objs, err)
	}
}

// failingReader fails after n bytes, every time it is read from the start.
// It has no WriteTo that would bypass Read.
type failingReader struct {
	r *bytes.Reader
	n int64
}

var errSource = errors.New("source read error")

func (f *failingReader) Read(p []byte) (int, error) {
	pos := f.r.Size() - int64(f.r.Len())
	if pos >= f.n {
		return 0, errSource
	}
	return f.r.Read(p[:min(int64(len(p)), f.n-pos)])
}

func (f *failingReader) Seek(offset int64, whence int) (int64, error) {
	return f.r.Seek(offset, whence)
}

func testFailedPut(t *testing.T, s storage.Store) {
	ctx := t.Context()
	data := Payload(7, 4<<20)
	const key = "wal/00000001/000000010000000000000003.zst"
	err := s.PutIfAbsent(ctx, key, &failingReader{bytes.NewReader(data), 1 << 20}, int64(len(data)), nil)
	if err == nil {
		t.Error("PutIfAbsent from a failing reader succeeded")
	}
	short := data[:1000]
	if err := s.PutIfAbsent(ctx, key, bytes.NewReader(short), int64(len(data)), nil); err == nil {
		t.Error("PutIfAbsent from a reader shorter than size succeeded")
	}
	if _, err := s.Head(ctx, key); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Head after failed puts = %v, want ErrNotExist", err)
	}
	if objs, err := s.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("List after failed puts = %v, %v; want nothing", objs, err)
	}
	// The key is still free.
	Put(t, s, key, data, nil)
	Check(t, s, key, data, map[string]string{})
}

func testCanceled(t *testing.T, s storage.Store) {
	Put(t, s, "present", []byte("x"), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context = %v, want context.Canceled", op, err)
		}
	}
	check("PutIfAbsent", s.PutIfAbsent(ctx, "new", bytes.NewReader([]byte("y")), 1, nil))
	rc, _, err := s.Get(ctx, "present")
	if err == nil {
		rc.Close()
	}
	check("Get", err)
	_, err = s.Head(ctx, "present")
	check("Head", err)
	_, err = s.List(ctx, "")
	check("List", err)
	check("Delete", s.Delete(ctx, "present"))
	if _, err := s.Head(t.Context(), "new"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Head(new) after canceled put = %v, want ErrNotExist", err)
	}
	Check(t, s, "present", []byte("x"), map[string]string{})
}

// testDeleteMany deletes more keys than one S3 request takes (most of them
// missing, the stored ones spread over every batch) and checks that
// exactly those went; then that an invalid key fails the call before
// anything is deleted, and that a canceled call reports it.
func testDeleteMany(t *testing.T, s storage.Store) {
	ctx := t.Context()
	key := func(i int) string { return fmt.Sprintf("wal/00000001/%024X", i) }
	n := storage.MaxDeleteBatch*2 + 100
	var stored, keys, want []string
	for i := range n {
		if i%70 == 0 {
			stored = append(stored, key(i))
		}
		if i%140 == 0 {
			want = append(want, key(i))
		} else {
			keys = append(keys, key(i))
		}
	}
	putAll(t, s, stored)
	Put(t, s, "backups/b/manifest.json", []byte("{}"), nil)
	want = append([]string{"backups/b/manifest.json"}, want...)
	if err := s.DeleteMany(ctx, append(keys, "backups/a/missing")); err != nil {
		t.Fatalf("DeleteMany: %v", err)
	}
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after DeleteMany: %q, want %q", got, want)
	}
	if err := s.DeleteMany(ctx, nil); err != nil {
		t.Errorf("DeleteMany(nil) = %v", err)
	}
	if err := s.DeleteMany(ctx, []string{want[1], "../escape", want[2]}); err == nil {
		t.Error("DeleteMany with an invalid key succeeded")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.DeleteMany(canceled, want[1:3]); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteMany with a canceled context = %v, want context.Canceled", err)
	}
	for _, k := range want[:3] {
		if _, err := s.Head(ctx, k); err != nil {
			t.Errorf("Head(%s) after refused deletes: %v", k, err)
		}
	}
	// An object deleted in a batch can be written again.
	Put(t, s, key(70), []byte("again"), nil)
	Check(t, s, key(70), []byte("again"), map[string]string{})
}

// putAll stores a small object under each key, 8 at a time.
func putAll(t *testing.T, s storage.Store, keys []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	sem := make(chan struct{}, 8)
	for _, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.PutIfAbsent(t.Context(), k, bytes.NewReader([]byte(k)), int64(len(k)), nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
}
