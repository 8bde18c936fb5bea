package fs

import (
	"bytes"
	"context"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/storagetest"
)

func newStore(t *testing.T) *Store {
	s, err := New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s := newStore(t)
		t.Cleanup(func() { checkNoTemp(t, s.root) })
		return s
	})
}

// checkNoTemp fails t if a temporary file is left under root (the work
// directory itself stays, empty).
func checkNoTemp(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
		} else if strings.HasPrefix(d.Name(), tmpPrefix) && path != filepath.Join(root, workDir) {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}

func TestNew(t *testing.T) {
	if _, err := New("relative/dir"); err == nil {
		t.Error("New with a relative root succeeded")
	}
	root := filepath.Join(t.TempDir(), "a", "b")
	s, err := New(root + "/")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "file://"+root; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if st, err := os.Stat(root); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("root: %v, %v; want a directory with mode 0700", st, err)
	}
}

func TestPermissions(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "wal/00000001/x", []byte("x"), nil)
	for path, want := range map[string]iofs.FileMode{
		"wal":            iofs.ModeDir | 0o700,
		"wal/00000001":   iofs.ModeDir | 0o700,
		"wal/00000001/x": 0o600,
	} {
		st, err := os.Stat(filepath.Join(s.root, path))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, st.Mode(), want)
		}
	}
}

func TestFailedPutLeavesNoTemp(t *testing.T) {
	s := newStore(t)
	data := storagetest.Payload(1, 1<<20)
	short := bytes.NewReader(data[:10])
	if err := s.PutIfAbsent(t.Context(), "a/b/c", short, int64(len(data)), nil); err == nil {
		t.Fatal("PutIfAbsent from a short reader succeeded")
	}
	storagetest.Put(t, s, "a/b/c", data, nil)
	if err := s.PutIfAbsent(t.Context(), "a/b/c", bytes.NewReader(data), int64(len(data)), nil); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second put: %v, want ErrExists", err)
	}
	checkNoTemp(t, s.root)
	entries, err := os.ReadDir(filepath.Join(s.root, "a/b"))
	if err != nil || len(entries) != 1 {
		t.Errorf("a/b holds %v (%v), want c only", entries, err)
	}
}

func TestReservedTempNames(t *testing.T) {
	s := newStore(t)
	for _, key := range []string{".tmp-x", "a/.tmp-x", ".tmp-/x"} {
		if err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(nil), 0, nil); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded", key)
		}
	}
	// A stray temporary file (from a crash) is not an object.
	if err := os.WriteFile(filepath.Join(s.root, ".tmp-123"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if objs, err := s.List(t.Context(), ""); err != nil || len(objs) != 0 {
		t.Errorf("List = %v, %v; want nothing", objs, err)
	}
}

func TestKeyOverDirectory(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "a/b", []byte("x"), nil)
	err := s.PutIfAbsent(t.Context(), "a", bytes.NewReader(nil), 0, nil)
	if err == nil || errors.Is(err, storage.ErrExists) {
		t.Errorf("PutIfAbsent(a) over directory a/ = %v, want an error other than ErrExists", err)
	}
	if err := s.Delete(t.Context(), "a"); err != nil {
		t.Errorf("Delete(a) = %v, want nil", err)
	}
	storagetest.Check(t, s, "a/b", []byte("x"), map[string]string{})
}

func TestDeletePrunesEmptyDirs(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "backups/1/x/y", []byte("y"), nil)
	storagetest.Put(t, s, "backups/2", []byte("2"), nil)
	if err := s.Delete(t.Context(), "backups/1/x/y"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "backups"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "2" {
		t.Errorf("backups/ holds %v (%v), want 2 only", entries, err)
	}
}

func TestCorruption(t *testing.T) {
	data := []byte("payload bytes")
	meta := map[string]string{"sha256": "00"}
	cases := []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"empty file", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:headerLen-1] }},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"truncated payload", func(b []byte) []byte { return b[:len(b)-1] }},
		{"extra bytes", func(b []byte) []byte { return append(b, 0) }},
		{"huge metadata length", func(b []byte) []byte { b[8] = 0xff; return b }},
		{"metadata not JSON", func(b []byte) []byte { b[headerLen] = '['; return b }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			storagetest.Put(t, s, "obj", data, meta)
			path := filepath.Join(s.root, "obj")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, c.corrupt(b), 0o600); err != nil {
				t.Fatal(err)
			}
			if rc, _, err := s.Get(t.Context(), "obj"); err == nil {
				rc.Close()
				t.Error("Get of a corrupt object succeeded")
			} else if errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("Get of a corrupt object = %v, want a corruption error", err)
			}
			if _, err := s.Head(t.Context(), "obj"); err == nil || errors.Is(err, storage.ErrNotExist) {
				t.Errorf("Head of a corrupt object = %v, want a corruption error", err)
			}
		})
	}
}

func TestEnvelopeFormat(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "obj", []byte("PAYLOAD"), map[string]string{"Codec": "zst"})
	b, err := os.ReadFile(filepath.Join(s.root, "obj"))
	if err != nil {
		t.Fatal(err)
	}
	want := "WSNPOBJ1" + "\x00\x00\x00\x0f" + "\x00\x00\x00\x00\x00\x00\x00\x07" + `{"codec":"zst"}` + "PAYLOAD"
	if string(b) != want {
		t.Errorf("object file = %q, want %q", b, want)
	}
}

// TestOwnerAdopted: run as root on a repository owned by another user (the
// postgres user), new files and directories belong to that user.
func TestOwnerAdopted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 4242, 4343
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(context.Background(), "wal/00000001/x", strings.NewReader("data"), 4, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"wal", "wal/00000001", "wal/00000001/x"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
}
