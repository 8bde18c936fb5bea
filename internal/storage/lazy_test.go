package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/storage/storagetest"
)

func TestLazyConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		dir := filepath.Join(t.TempDir(), "repo")
		return storage.Lazy("file://"+dir, func(context.Context) (storage.Store, error) { return fs.New(dir) })
	})
}

func TestLazyOpensOnceOnUse(t *testing.T) {
	opens := 0
	boom := errors.New("no such endpoint")
	st := storage.Lazy("s3://b/p", func(context.Context) (storage.Store, error) { opens++; return nil, boom })
	if st.String() != "s3://b/p" || opens != 0 {
		t.Fatalf("String opened the store (%d) or is wrong: %s", opens, st.String())
	}
	ctx := context.Background()
	if _, err := st.Head(ctx, "k"); !errors.Is(err, boom) {
		t.Fatalf("Head: %v", err)
	}
	if err := st.PutIfAbsent(ctx, "k", strings.NewReader(""), 0, nil); !errors.Is(err, boom) {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	if opens != 1 {
		t.Fatalf("opened %d times, want once", opens)
	}
}
