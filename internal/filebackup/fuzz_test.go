package filebackup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	fsstore "github.com/walsnap/walsnap/internal/storage/fs"
)

// FuzzRestorePart: the tar entries of a backup part are outside input (a
// damaged or hostile repository). Restoring any byte stream as a part,
// with matching checksums, never panics and never writes outside the
// destination.
func FuzzRestorePart(f *testing.F) {
	for _, entries := range [][]craftEntry{
		{reg("PG_VERSION", "15\n"), reg("base/1/1259", "x")},
		{symlink("l", "../../etc"), reg("l/passwd", "x")},
		{reg("../escape", "x")},
		{piece("big", "0123", 0, 8), piece("big", "4567", 4, 8)},
		{craftEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/"}}, reg("d/f", "y")},
	} {
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
			tw.WriteHeader(&h)
			tw.Write([]byte(e.data))
		}
		tw.Close()
		f.Add(raw.Bytes())
	}
	none, _ := compress.Parse("none")
	f.Fuzz(func(t *testing.T, raw []byte) {
		top := t.TempDir()
		st, err := fsstore.New(filepath.Join(top, "repo"))
		if err != nil {
			t.Fatal(err)
		}
		r := repo.New(st)
		sum := sha256.Sum256(raw)
		p := manifest.Part{RawSize: int64(len(raw)), StoredSize: int64(len(raw)), SHA256: hex.EncodeToString(sum[:]), Codec: "none"}
		p.Key, err = r.PutPart(t.Context(), "b", 0, "part-00-0000.tar", bytes.NewReader(raw), p.StoredSize,
			repo.ObjectMeta{SHA256: p.SHA256, RawSize: p.RawSize, Codec: none})
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(top, "dest")
		Restore(t.Context(), RestoreOptions{Repo: r, BackupID: "b", Concurrency: 1}, []manifest.Part{p}, map[uint32]string{0: dest})
		ents, err := os.ReadDir(top)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "repo" && e.Name() != "dest" {
				t.Fatalf("restore wrote %s outside its destination", e.Name())
			}
		}
	})
}
