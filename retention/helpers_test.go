package retention

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/storage/fs"
	"github.com/walsnap/walsnap/internal/wal"
)

const segSize = 16 << 20

// t0 is the fixtures' epoch: segment n of a timeline is archived n
// minutes after its base time.
var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func seg(tli uint32, no uint64) string { return wal.Segment{TLI: tli, No: no}.Name(segSize) }

// fixture is a local repository built object by object, with the times
// of its objects set as a test needs them.
type fixture struct {
	t     *testing.T
	dir   string
	store storage.Store
	r     *repo.Repo
	sysID uint64
}

func newFixture(t *testing.T) *fixture { return newFixtureOf(t, 7301234567890123456) }

// newFixtureOf is a repository of the cluster sysID.
func newFixtureOf(t *testing.T, sysID uint64) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, store: st, r: repo.New(st), sysID: sysID}
	if _, err := f.r.InitIdentity(t.Context(), repo.Identity{SystemID: f.sysID, SegmentSize: segSize, PGMajor: 15}); err != nil {
		t.Fatal(err)
	}
	return f
}

var none, _ = compress.Parse("none")

// put stores a WAL file archived at at.
func (f *fixture) put(name string, data []byte, at time.Time) {
	f.t.Helper()
	sum := sha256.Sum256(data)
	key, err := f.r.PutWAL(f.t.Context(), name, none, data, hex.EncodeToString(sum[:]), len(data))
	if err != nil {
		f.t.Fatal(err)
	}
	f.touch(key, at)
}

// touch sets the time the store reports for key.
func (f *fixture) touch(key string, at time.Time) {
	f.t.Helper()
	if err := os.Chtimes(filepath.Join(f.dir, filepath.FromSlash(key)), at, at); err != nil {
		f.t.Fatal(err)
	}
}

// segments archives segments first..last of tli, segment n at base+n min.
func (f *fixture) segments(tli uint32, first, last uint64, base time.Time) {
	for no := first; no <= last; no++ {
		f.put(seg(tli, no), []byte(seg(tli, no)), base.Add(time.Duration(no)*time.Minute))
	}
}

// history stores the history file of tli, which branched off parent in
// segment switchSeg (entries for the parent's own ancestry first).
func (f *fixture) history(tli uint32, ancestry string, parent uint32, switchSeg uint64) {
	text := fmt.Sprintf("%s%d\t%s\tbranch\n", ancestry, parent, wal.LSN(switchSeg*segSize+0x100))
	f.put(wal.HistoryFileName(tli), []byte(text), t0)
}

// backup stores a manifest of a backup on tli from segment start to stop,
// started at start, and (files provider) two payload parts.
func (f *fixture) backup(id string, tli uint32, start, stop uint64, began time.Time, status string) *manifest.Manifest {
	f.t.Helper()
	m := &manifest.Manifest{ID: id, Provider: manifest.ProviderFiles, Status: status, Timeline: tli,
		StartLSN: wal.LSN(start*segSize + 0x28), StopLSN: wal.LSN(stop*segSize + 0x100), StartWAL: seg(tli, start), StopWAL: seg(tli, stop),
		StartTime: began, StopTime: began.Add(time.Minute), SystemID: f.sysID, SegmentSize: segSize, PGVersion: 150000,
		BackupLabel: "START WAL LOCATION: x\n"}
	var parts []manifest.Part
	for i := range 2 {
		data := []byte(fmt.Sprintf("%s part %d", id, i))
		key, err := f.r.PutPart(f.t.Context(), id, 0, fmt.Sprintf("part-%d.tar", i), bytes.NewReader(data), int64(len(data)),
			repo.ObjectMeta{SHA256: strings.Repeat("0", 64), RawSize: int64(len(data)), Codec: none})
		if err != nil {
			f.t.Fatal(err)
		}
		parts = append(parts, manifest.Part{Key: key, StoredSize: int64(len(data))})
	}
	if err := m.SetPayload(manifest.FilesPayload{Parts: parts}); err != nil {
		f.t.Fatal(err)
	}
	f.manifest(m)
	return m
}

// manifest stores m.
func (f *fixture) manifest(m *manifest.Manifest) {
	f.t.Helper()
	if err := f.r.PutManifest(f.t.Context(), m); err != nil {
		f.t.Fatal(err)
	}
}

// keys lists every object of the repository but its identity and the
// backup lease.
func (f *fixture) keys() []string {
	f.t.Helper()
	objs, err := f.store.List(context.Background(), "")
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		if o.Key != repo.IdentityKey && !strings.HasPrefix(o.Key, "locks/") {
			out = append(out, o.Key)
		}
	}
	return out
}

// walNames lists the WAL files left.
func (f *fixture) walNames() []string {
	f.t.Helper()
	files, err := f.r.ListWAL(context.Background(), 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, w := range files {
		out = append(out, w.Name)
	}
	return out
}

// backupIDs lists the backups left, with their status.
func (f *fixture) backupIDs() string {
	f.t.Helper()
	ms, _, err := f.r.Backups(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		s := m.ID
		if m.Status != manifest.StatusComplete {
			s += ":" + m.Status
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// options are the options of a delete of f's repository at now.
func (f *fixture) options(now time.Time, p Policy) Options {
	return Options{Repo: f.r, Policy: p, Now: now, PendingTimeout: 6 * time.Hour}
}

func without(all []string, gone ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(gone, s) })
}

// fakeSnapshots is an EC2 API with the snapshots it is given.
type fakeSnapshots struct {
	exist   map[string]bool
	inUse   map[string]bool
	tagged  []ebs.SnapshotInfo
	deleted []string
}

func (s *fakeSnapshots) DeleteSnapshot(_ context.Context, id string) error {
	if s.inUse[id] {
		return fmt.Errorf("delete snapshot %s: %w: used by ami-1", id, ebs.ErrSnapshotInUse)
	}
	s.deleted = append(s.deleted, id)
	delete(s.exist, id)
	return nil
}

func (s *fakeSnapshots) BackupSnapshots(context.Context, uint64) ([]ebs.SnapshotInfo, error) {
	return s.tagged, nil
}

func (s *fakeSnapshots) ExistingSnapshots(_ context.Context, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		if s.exist[id] {
			out = append(out, id)
		}
	}
	return out, nil
}
