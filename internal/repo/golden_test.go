package repo

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

// The golden files pin the repository formats: what this build writes
// must be byte for byte what they hold, and they must read back as the
// same values, so that repositories written by earlier builds still read.
// A change that shows up here is a format change: it needs a decision on
// FormatVersion (repo and manifest) and a reader for the old format, and
// only then `go test ./internal/repo -run Golden -update`.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed: this is a repository format change\n got: %s\nwant: %s", name, got, want)
	}
}

func goldenRepo(t *testing.T) (*Repo, string) {
	dir := t.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return New(st), dir
}

// rawObject reads an object's stored file, envelope and all.
func rawObject(t *testing.T, dir, key string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// body strips the fs envelope from a stored object (tests only read
// objects stored without metadata this way).
func body(t *testing.T, r *Repo, key string) []byte {
	t.Helper()
	rc, _, err := r.store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	b.ReadFrom(rc)
	return b.Bytes()
}

func TestGoldenIdentity(t *testing.T) {
	ctx := context.Background()
	r, _ := goldenRepo(t)
	want := Identity{WalsnapVersion: "1.0.0", SystemID: 7301234567890123456, SegmentSize: 16 << 20, PGMajor: 15, CreatedAt: time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)}
	if _, err := r.InitIdentity(ctx, want); err != nil {
		t.Fatal(err)
	}
	golden(t, "walsnap.json", body(t, r, IdentityKey))
	data, _ := os.ReadFile(filepath.Join("testdata", "golden", "walsnap.json"))
	got, err := ParseIdentity(data)
	want.FormatVersion = FormatVersion
	if err != nil || got != want {
		t.Fatalf("golden walsnap.json reads as %+v, %v", got, err)
	}
}

// goldenManifests are one manifest per provider, with every field set.
func goldenManifests() map[manifest.Provider]*manifest.Manifest {
	t0 := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	t1 := time.Date(2026, 11, 24, 2, 1, 0, 0, time.UTC)
	base := func(id string, p manifest.Provider) *manifest.Manifest {
		return &manifest.Manifest{FormatVersion: 1, WalsnapVersion: "1.0.0", ID: id, Provider: p, Status: manifest.StatusComplete, Label: "walsnap " + id,
			StartLSN: 0x2000028, StopLSN: 0x2000138, Timeline: 1, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
			StartTime: t0, StopTime: t0.Add(90 * time.Second), PGVersion: 150010, SystemID: 7301234567890123456, SegmentSize: 16 << 20,
			Host: "db1", PGData: "/var/lib/postgresql/15/main",
			Tablespaces:   []manifest.Tablespace{{OID: 16400, Name: "ts1", Location: "/srv/ts1"}},
			BackupLabel:   "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-24 02:00:00 UTC\nLABEL: walsnap " + id + "\nSTART TIMELINE: 1\n",
			TablespaceMap: "16400 /srv/ts1\n", BytesIn: 123456789, BytesOut: 2345678}
	}
	payloads := map[manifest.Provider]any{
		manifest.ProviderFiles: manifest.FilesPayload{Files: 1203, Parts: []manifest.Part{
			{Key: "backups/20261124T020000Z/data/base/part-00-0000.tar.zst", Tablespace: 0, Files: 1200, RawSize: 123000000, StoredSize: 2300000, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Codec: "zstd"},
			{Key: "backups/20261124T020000Z/data/16400/part-00-0000.tar.zst", Tablespace: 16400, Files: 3, RawSize: 456789, StoredSize: 45678, SHA256: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", Codec: "zstd"}}},
		manifest.ProviderEBS: manifest.EBSPayload{InstanceID: "i-0123456789abcdef0", AZ: "eu-west-1a", PGData: "/var/lib/postgresql/15/main", Tablespaces: map[uint32]string{16400: "/srv/ts1"}, Snapshots: []manifest.EBSSnapshot{
			{SnapshotID: "snap-0123456789abcdef0", StartTime: t1, VolumeID: "vol-0123456789abcdef0", Device: "/dev/sdf", MountPoint: "/var/lib/postgresql", FSType: "ext4", MountOptions: "rw,noatime", Paths: []string{"/var/lib/postgresql/15/main"}, Frozen: true, SizeGiB: 100, Type: "gp3", IOPS: 3000, Throughput: 125, AZ: "eu-west-1a", Encrypted: true, KMSKeyID: "arn:aws:kms:eu-west-1:111122223333:key/abcd"},
			{SnapshotID: "snap-0fedcba9876543210", StartTime: t1, VolumeID: "vol-0fedcba9876543210", Device: "/dev/sdg", MountPoint: "/srv", FSType: "xfs", MountOptions: "rw", Paths: []string{"/srv/ts1"}, Frozen: true, SizeGiB: 50, Type: "io2", IOPS: 5000, AZ: "eu-west-1a"}}},
		manifest.ProviderCommand:  manifest.CommandPayload{Snapshots: []string{"/var/lib/snapshots/20261124T020200Z.img"}, Command: "/usr/local/sbin/pg-snapshot"},
		manifest.ProviderExternal: manifest.ExternalPayload{Orchestrator: "n2w", Snapshots: []string{"snap-0a1", "snap-0b2"}},
	}
	ids := map[manifest.Provider]string{manifest.ProviderFiles: "20261124T020000Z", manifest.ProviderEBS: "20261124T020100Z",
		manifest.ProviderCommand: "20261124T020200Z", manifest.ProviderExternal: "20261124T020300Z"}
	out := map[manifest.Provider]*manifest.Manifest{}
	for p, payload := range payloads {
		m := base(ids[p], p)
		if err := m.SetPayload(payload); err != nil {
			panic(err)
		}
		out[p] = m
	}
	return out
}

func TestGoldenManifests(t *testing.T) {
	ctx := context.Background()
	for p, m := range goldenManifests() {
		t.Run(string(p), func(t *testing.T) {
			r, _ := goldenRepo(t)
			if err := r.PutManifest(ctx, m); err != nil {
				t.Fatal(err)
			}
			name := "manifest-" + string(p) + ".json"
			golden(t, name, body(t, r, manifestKey(m.ID)))
			// The golden file reads back as the same manifest and payload.
			data, _ := os.ReadFile(filepath.Join("testdata", "golden", name))
			got, err := manifest.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			gp, err := got.DecodePayload()
			if err != nil {
				t.Fatal(err)
			}
			wp, _ := m.DecodePayload()
			if !reflect.DeepEqual(gp, wp) {
				t.Fatalf("golden payload reads as %+v, want %+v", gp, wp)
			}
			got.Payload, m.Payload = nil, nil
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("golden manifest reads as %+v, want %+v", got, m)
			}
		})
	}
	// Every provider in the registry has a golden manifest.
	for _, name := range append(manifest.Configurable(), manifest.ProviderExternal) {
		if _, ok := goldenManifests()[name]; !ok {
			t.Errorf("provider %s has no golden manifest", name)
		}
	}
}

// TestGoldenObjectEnvelope pins the fs backend's object file: envelope,
// metadata and body, as written for a WAL file.
func TestGoldenObjectEnvelope(t *testing.T) {
	r, dir := goldenRepo(t)
	none, _ := compress.Parse("none")
	raw := []byte("hello, walsnap\n")
	key, err := r.PutWAL(context.Background(), "000000010000000000000002", none, raw, "3a4ff0a8aeb1ebb2de0c9cc8d7e9d65e4b6dd2ba8fdc6d3e5b1f4b1c4b9b0e1a", len(raw))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "fs-object.bin", rawObject(t, dir, key))
	obj, err := r.HeadWAL(context.Background(), key)
	if err != nil || obj.RawSize != int64(len(raw)) || obj.Codec.Name() != "none" || obj.SHA256[:8] != "3a4ff0a8" {
		t.Fatalf("golden object reads as %+v, %v", obj, err)
	}
}
