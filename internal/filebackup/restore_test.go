package filebackup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/walsnap/walsnap/internal/manifest"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage"
)

// backupSmall stores a small tree in a single part with codec and
// returns the result.
func backupSmall(t *testing.T, s storage.Store, codec string) (Result, string) {
	t.Helper()
	src := newTree(t, filepath.Join(t.TempDir(), "pgdata"))
	src.file("PG_VERSION", []byte("15\n"), 0o600)
	src.file("base/1/1259", relationData(1, 64<<10), 0o600)
	c, err := compress.Parse(codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", Codec: c, Streams: 1}, []Source{{0, src.root}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Parts) != 1 {
		t.Fatalf("%d parts, want 1", len(res.Parts))
	}
	return res, src.root
}

// wantRestoreError restores parts into a fresh directory and checks that
// it fails with an error that names key and every one of words.
func wantRestoreError(t *testing.T, s storage.Store, parts []manifest.Part, key string, words ...string) error {
	t.Helper()
	err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, parts, map[uint32]string{0: filepath.Join(t.TempDir(), "dest")})
	if err == nil {
		t.Fatalf("Restore succeeded, want an error naming %s", key)
	}
	for _, w := range append([]string{key}, words...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Restore error %q does not name %q", err, w)
		}
	}
	t.Log(err)
	return err
}

// TestRestoreDamagedPart flips a byte of a stored part. The restore must
// fail naming the part, unless the decoded tar stream is unchanged (a
// compressed copy's offset into a run of zeros can change harmlessly),
// which its SHA-256 proves, and then the restored tree must be exact.
func TestRestoreDamagedPart(t *testing.T) {
	for _, codec := range []string{"zstd", "none", "gzip", "s2"} {
		for _, where := range []string{"start", "middle", "end"} {
			t.Run(codec+"/"+where, func(t *testing.T) {
				s := newFSStore(t)
				res, src := backupSmall(t, s, codec)
				p := res.Parts[0]
				data, meta := readObject(t, s, p.Key)
				i := map[string]int{"start": 0, "middle": len(data) / 2, "end": len(data) - 5}[where]
				data[i] ^= 0x01
				replaceObject(t, s, p.Key, data, meta)
				dest := filepath.Join(t.TempDir(), "dest")
				err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, res.Parts, map[uint32]string{0: dest})
				switch {
				case err == nil:
					t.Logf("byte %d of %d: decoded stream unchanged", i, len(data))
					diffSnapshots(t, snapshot(t, dest), snapshot(t, src))
				case !strings.Contains(err.Error(), p.Key):
					t.Errorf("Restore error %q does not name %s", err, p.Key)
				default:
					t.Log(err)
				}
			})
		}
	}
}

func TestRestoreWrongSize(t *testing.T) {
	s := newFSStore(t)
	res, _ := backupSmall(t, s, "zstd")
	p := res.Parts[0]
	data, meta := readObject(t, s, p.Key)
	replaceObject(t, s, p.Key, data[:len(data)-1], meta)
	wantRestoreError(t, s, res.Parts, p.Key, "stored size")

	// A wrong record in the manifest is just as fatal.
	s = newFSStore(t)
	res, _ = backupSmall(t, s, "zstd")
	res.Parts[0].RawSize++
	wantRestoreError(t, s, res.Parts, res.Parts[0].Key, "checksum mismatch")
	res.Parts[0].RawSize--
	res.Parts[0].SHA256 = strings.Repeat("0", 64)
	wantRestoreError(t, s, res.Parts, res.Parts[0].Key, "checksum mismatch")
}

func TestRestoreMissingPart(t *testing.T) {
	s := newFSStore(t)
	res, _ := backupSmall(t, s, "zstd")
	if err := s.Delete(t.Context(), res.Parts[0].Key); err != nil {
		t.Fatal(err)
	}
	if err := wantRestoreError(t, s, res.Parts, res.Parts[0].Key); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Restore of a missing part = %v, want ErrNotExist", err)
	}
}

func TestRestoreOptions(t *testing.T) {
	s := newFSStore(t)
	res, _ := backupSmall(t, s, "zstd")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		parts []manifest.Part
		dest  map[uint32]string
	}{
		"no destination":        {res.Parts, map[uint32]string{16390: t.TempDir()}},
		"unknown codec":         {[]manifest.Part{{Key: "b/x", Codec: "lzma"}}, map[uint32]string{0: t.TempDir()}},
		"part twice":            {append(res.Parts, res.Parts...), map[uint32]string{0: t.TempDir()}},
		"destination in a file": {res.Parts, map[uint32]string{0: filepath.Join(file, "dest")}},
	} {
		if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, tc.parts, tc.dest); err == nil {
			t.Errorf("%s: Restore succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// craftEntry is an entry of a crafted part.
type craftEntry struct {
	hdr  tar.Header
	data string
}

// craftPart stores a tar stream of entries as part name of backup "b",
// with correct checksums, and returns its record.
func craftPart(t *testing.T, s storage.Store, name string, entries ...craftEntry) manifest.Part {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o600
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	stored, err := compress.Default.Encode(nil, raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw.Bytes())
	p := manifest.Part{RawSize: int64(raw.Len()), StoredSize: int64(len(stored)), SHA256: hex.EncodeToString(sum[:]), Codec: "zstd"}
	meta := repo.ObjectMeta{SHA256: p.SHA256, RawSize: p.RawSize, Codec: compress.Default}
	p.Key, err = repo.New(s).PutPart(t.Context(), "b", 0, name, bytes.NewReader(stored), p.StoredSize, meta)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reg(name, data string) craftEntry {
	return craftEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, data: data}
}

func symlink(name, target string) craftEntry {
	return craftEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}

func piece(name, data string, off, size int) craftEntry {
	return craftEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Format: tar.FormatPAX,
		PAXRecords: map[string]string{paxOffset: fmt.Sprint(off), paxSize: fmt.Sprint(size)}}, data: data}
}

// TestRestoreRefusesEntries: entries that would escape the destination,
// go through a symlink, overwrite, or are not files, directories or
// symlinks fail the restore with the part and the entry named, and nothing
// is written outside the destination.
func TestRestoreRefusesEntries(t *testing.T) {
	for name, tc := range map[string]struct {
		entries []craftEntry
		bad     string // the refused entry
	}{
		"dotdot":             {[]craftEntry{reg("ok", "x"), reg("../escape", "pwned")}, "../escape"},
		"dotdot inside":      {[]craftEntry{reg("a/../../escape", "pwned")}, "a/../../escape"},
		"absolute":           {[]craftEntry{reg("/tmp/walsnap-escape-test", "pwned")}, "/tmp/walsnap-escape-test"},
		"dot":                {[]craftEntry{reg("./x", "x")}, "./x"},
		"empty element":      {[]craftEntry{reg("a//x", "x")}, "a//x"},
		"symlink out":        {[]craftEntry{symlink("lnk", "OUTSIDE"), reg("lnk/escape", "pwned")}, "lnk/escape"},
		"symlink up":         {[]craftEntry{symlink("up", ".."), reg("up/escape", "pwned")}, "up/escape"},
		"symlink dir":        {[]craftEntry{symlink("d", "OUTSIDE"), {hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/sub/"}}}, "d/sub/"},
		"through symlink":    {[]craftEntry{symlink("s", "OUTSIDE"), symlink("s/escape", "/etc")}, "s/escape"},
		"overwrite":          {[]craftEntry{reg("dup", "one"), reg("dup", "two")}, "dup"},
		"overwrite symlink":  {[]craftEntry{symlink("l", "OUTSIDE/escape"), reg("l", "pwned")}, "l"},
		"hard link":          {[]craftEntry{reg("a", "x"), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "a"}}}, "b"},
		"device":             {[]craftEntry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}, "null"},
		"piece past the end": {[]craftEntry{piece("big", "xxxx", 8, 10)}, "big"},
		"pieces disagree":    {[]craftEntry{piece("big", "xx", 0, 4), piece("big", "xx", 2, 6)}, "big"},
		"piece and file":     {[]craftEntry{reg("big", "x"), piece("big", "xx", 0, 4)}, "big"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			outside := filepath.Join(dir, "outside")
			if err := os.Mkdir(outside, 0o700); err != nil {
				t.Fatal(err)
			}
			s := newFSStore(t)
			var entries []craftEntry
			for _, e := range tc.entries {
				e.hdr.Linkname = strings.ReplaceAll(e.hdr.Linkname, "OUTSIDE", outside)
				entries = append(entries, e)
			}
			p := craftPart(t, s, "part-00-0000.tar.zst", entries...)
			dest := filepath.Join(dir, "dest")
			err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, []manifest.Part{p}, map[uint32]string{0: dest})
			if err == nil {
				t.Fatal("Restore succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), p.Key) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.bad)) {
				t.Errorf("error %q does not name the part and entry %q", err, tc.bad)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("restore wrote %v outside its destination", ents[0].Name())
			}
			for _, p := range []string{filepath.Join(dir, "escape"), "/tmp/walsnap-escape-test"} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("restore wrote %s", p)
				}
			}
		})
	}
}

// TestRestoreCrafted: a hand-made part with pieces arriving out of order
// and entries below directories that have no entry of their own.
func TestRestoreCrafted(t *testing.T) {
	s := newFSStore(t)
	p1 := craftPart(t, s, "1.tar.zst", piece("a/b/big", "6789", 6, 10), reg("a/c/small", "hello"), symlink("a/l", "../x"))
	p2 := craftPart(t, s, "2.tar.zst", piece("a/b/big", "012345", 0, 10), craftEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "a/b/"}})
	dest := filepath.Join(t.TempDir(), "dest")
	if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, []manifest.Part{p1, p2}, map[uint32]string{0: dest}); err != nil {
		t.Fatal(err)
	}
	diffSnapshots(t, snapshot(t, dest), map[string]string{
		"a":         "dir",
		"a/b":       "dir",
		"a/c":       "dir",
		"a/b/big":   snapshotOf(t, "0123456789", 0o600),
		"a/c/small": snapshotOf(t, "hello", 0o600),
		"a/l":       "symlink -> ../x",
	})
}

// snapshotOf is snapshot's description of a file with data and mode.
func snapshotOf(t *testing.T, data string, mode os.FileMode) string {
	tr := newTree(t, t.TempDir())
	tr.file("f", []byte(data), mode)
	return snapshot(t, tr.root)["f"]
}
