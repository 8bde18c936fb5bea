package filebackup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/storage"
	fsstore "github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/storage/s3"
	"github.com/walsnap/walsnap/internal/testrig"
)

// newFSStore returns an empty store in a temporary directory.
func newFSStore(t testing.TB) storage.Store {
	t.Helper()
	s, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newS3Store returns a store on a fresh bucket of the test MinIO.
func newS3Store(t testing.TB) storage.Store {
	t.Helper()
	env := testrig.S3(t)
	env.Setenv(t)
	s, err := s3.New(t.Context(), s3.Options{Bucket: env.Bucket, Endpoint: env.Endpoint, PathStyle: true, Region: env.Region})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tree builds a directory tree for a test.
type tree struct {
	t    testing.TB
	root string
}

func newTree(t testing.TB, root string) tree {
	t.Helper()
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return tree{t, root}
}

func (tr tree) path(rel string) string { return filepath.Join(tr.root, filepath.FromSlash(rel)) }

// file writes a file (and its missing parents, 0700) with the given mode.
func (tr tree) file(rel string, data []byte, mode os.FileMode) {
	tr.t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		tr.t.Fatal(err)
	}
}

func (tr tree) dir(rel string, mode os.FileMode) {
	tr.t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(p, 0o700); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) symlink(rel, target string) {
	tr.t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
}

// snapshot describes every entry below root, without following symlinks:
// "dir", "file <mode> <size> <sha256>", "symlink -> <target>", or
// "special <type>".
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			m[rel] = "dir"
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			m[rel] = fmt.Sprintf("file %#o %d %s", fi.Mode().Perm(), len(data), hex.EncodeToString(sum[:8]))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "symlink -> " + target
		default:
			m[rel] = "special " + fi.Mode().Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// dropBelow removes from a snapshot every entry strictly below dir.
func dropBelow(m map[string]string, dir string) {
	for k := range m {
		if strings.HasPrefix(k, dir+"/") {
			delete(m, k)
		}
	}
}

// diffSnapshots reports the differences between two snapshots.
func diffSnapshots(t testing.TB, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing after restore: %s (%s)", k, w)
		} else if g != w {
			t.Errorf("%s: restored as %q, want %q", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected after restore: %s (%s)", k, g)
		}
	}
}

// relationData returns size bytes that compress like PostgreSQL heap
// pages: 8 KiB pages with a header, line pointers, zeroed free space and
// tuples of sequential ids, timestamps and words from a small vocabulary.
func relationData(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	words := strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima
		mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu
		pending shipped delivered returned cancelled invoice customer order`)
	buf := make([]byte, size)
	id := uint32(r.Uint32N(1 << 20))
	var tuple []byte
	for p := 0; p < size; p += 8192 {
		page := buf[p:min(p+8192, size)]
		if len(page) < 8192 {
			for i := range page {
				page[i] = words[r.IntN(len(words))][0]
			}
			break
		}
		binary.LittleEndian.PutUint64(page[0:], r.Uint64()>>20) // LSN
		lower, upper := 24, 8192
		fill := 8192 * (2 + r.IntN(3)) / 10 // leave 20-40% free
		for upper-lower > fill {
			tuple = tuple[:0]
			tuple = binary.LittleEndian.AppendUint32(tuple, 700+r.Uint32N(50)) // xmin
			tuple = append(tuple, make([]byte, 19)...)                         // rest of the tuple header
			tuple = binary.LittleEndian.AppendUint32(tuple, id)
			tuple = binary.LittleEndian.AppendUint64(tuple, 1<<40+uint64(id)*1000+r.Uint64N(1000))
			for range 2 + r.IntN(5) {
				tuple = append(tuple, words[r.IntN(len(words))]...)
				tuple = append(tuple, ' ')
			}
			id++
			n := (len(tuple) + 7) &^ 7
			if upper-n < lower+4 {
				break
			}
			upper -= n
			copy(page[upper:], tuple)
			binary.LittleEndian.PutUint32(page[lower:], uint32(upper)|uint32(len(tuple))<<17)
			lower += 4
		}
		binary.LittleEndian.PutUint16(page[12:], uint16(lower))
		binary.LittleEndian.PutUint16(page[14:], uint16(upper))
	}
	return buf
}

// readObject returns a stored object's payload and metadata.
func readObject(t testing.TB, s storage.Store, key string) ([]byte, map[string]string) {
	t.Helper()
	rc, info, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data, info.Metadata
}

// replaceObject deletes key and stores data under it instead.
func replaceObject(t testing.TB, s storage.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatal(err)
	}
}
