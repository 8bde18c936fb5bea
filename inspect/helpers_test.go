package inspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/wal"
)

// The tests build repositories by hand: 1 MiB segments with real page
// headers, history files, manifests and parts, in a local (fs) store whose
// files they can damage.
const (
	segSize = 1 << 20
	sysID   = 7301234567890123456
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

type testRepo struct {
	t   *testing.T
	dir string
	st  *fs.Store
	r   *repo.Repo
	zst compress.Codec
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRepo{t: t, dir: dir, st: st, r: repo.New(st)}
	tr.zst, _ = compress.Parse("zstd")
	if _, err := tr.r.InitIdentity(context.Background(), repo.Identity{SystemID: sysID, SegmentSize: segSize, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	return tr
}

func segName(tli uint32, no uint64) string { return wal.Segment{TLI: tli, No: no}.Name(segSize) }

// segment is a segment's raw bytes: a long page header for system sys,
// then bytes that differ from segment to segment.
func segment(tli uint32, no uint64, sys uint64) []byte {
	b := make([]byte, segSize)
	hdr := wal.LongPageHeader{Magic: 0xD110, Info: wal.FlagLongHeader, TLI: tli, PageAddr: wal.LSN(no * segSize),
		SystemID: sys, SegSize: segSize, BlockSize: 8192}
	copy(b, hdr.Bytes())
	for i := wal.LongHeaderSize; i < len(b); i += 4096 {
		b[i] = byte(no + uint64(i))
	}
	return b
}

// put stores a WAL file's raw bytes as wal-push does.
func (tr *testRepo) put(name string, raw []byte) {
	tr.t.Helper()
	enc, err := tr.zst.Encode(nil, raw)
	if err != nil {
		tr.t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if _, err := tr.r.PutWAL(context.Background(), name, tr.zst, enc, hex.EncodeToString(sum[:]), len(raw)); err != nil {
		tr.t.Fatal(err)
	}
}

// segments stores segments first..last of timeline tli.
func (tr *testRepo) segments(tli uint32, first, last uint64) {
	for no := first; no <= last; no++ {
		tr.put(segName(tli, no), segment(tli, no, sysID))
	}
}

// history stores timeline tli's history file: it branched off parent at
// segment no (plus 0x100 bytes).
func (tr *testRepo) history(tli, parent uint32, no uint64) {
	tr.put(wal.HistoryFileName(tli), fmt.Appendf(nil, "%d\t%s\tno recovery target specified\n", parent, wal.LSN(no*segSize+0x100)))
}

// path is the file of a stored object.
func (tr *testRepo) path(key string) string { return filepath.Join(tr.dir, filepath.FromSlash(key)) }

// walPath is the file of a stored WAL file.
func (tr *testRepo) walPath(name string) string { return tr.path(repo.WALKey(name, tr.zst.Suffix())) }

// corrupt flips the last byte of a stored object's file (its payload):
// same size, other content.
func (tr *testRepo) corrupt(path string) {
	tr.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatal(err)
	}
	b[len(b)-1] ^= 0xFF
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tr.t.Fatal(err)
	}
}

// backup writes the manifest of a complete backup of timeline tli from
// segment start to stop, stopped at minute stop of t0.
func (tr *testRepo) backup(id string, p manifest.Provider, tli uint32, start, stop uint64, payload any) *manifest.Manifest {
	tr.t.Helper()
	m := &manifest.Manifest{ID: id, Provider: p, Status: manifest.StatusComplete, Timeline: tli,
		StartLSN: wal.LSN(start*segSize + 0x28), StopLSN: wal.LSN(stop*segSize + 0x200),
		StartWAL: segName(tli, start), StopWAL: segName(tli, stop),
		StartTime: t0.Add(time.Duration(start) * time.Minute), StopTime: t0.Add(time.Duration(stop) * time.Minute),
		PGVersion: 150010, SystemID: sysID, SegmentSize: segSize, BackupLabel: "START WAL LOCATION: ...\n"}
	if err := m.SetPayload(payload); err != nil {
		tr.t.Fatal(err)
	}
	if err := tr.r.PutManifest(context.Background(), m); err != nil {
		tr.t.Fatal(err)
	}
	return m
}

// filesPayload stores n parts of backup id and returns the payload that
// records them.
func (tr *testRepo) filesPayload(id string, n int) manifest.FilesPayload {
	tr.t.Helper()
	var p manifest.FilesPayload
	for i := range n {
		raw := fmt.Appendf(nil, "tar bytes of part %d of backup %s %0500d", i, id, i)
		enc, err := tr.zst.Encode(nil, raw)
		if err != nil {
			tr.t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		meta := repo.ObjectMeta{SHA256: hex.EncodeToString(sum[:]), RawSize: int64(len(raw)), Codec: tr.zst}
		key, err := tr.r.PutPart(context.Background(), id, 0, fmt.Sprintf("part-%04d.tar%s", i, tr.zst.Suffix()), bytes.NewReader(enc), int64(len(enc)), meta)
		if err != nil {
			tr.t.Fatal(err)
		}
		p.Parts = append(p.Parts, manifest.Part{Key: key, Files: 1, RawSize: int64(len(raw)), StoredSize: int64(len(enc)), SHA256: meta.SHA256, Codec: tr.zst.Name()})
	}
	return p
}

// verify runs Verify and fails the test on an error.
func (tr *testRepo) verify(o VerifyOptions) *VerifyResult {
	tr.t.Helper()
	o.Repo = tr.r
	res, err := Verify(context.Background(), o)
	if err != nil {
		tr.t.Fatal(err)
	}
	return res
}
