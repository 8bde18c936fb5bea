package filebackup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage"
)

const testPartSize = 1 << 20

// excludedFiles are created by makeCluster and must not be restored.
var excludedFiles = []string{
	"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map", "backup_manifest",
	"postgresql.auto.conf.tmp", "current_logfiles", "current_logfiles.tmp",
	"global/pg_internal.init", "base/16384/pg_internal.init", "base/16384/pg_internal.init.4242",
	"pgsql_tmp_stray", "base/pgsql_tmp", "base/16384/pgsql_tmp42.0",
	"base/16384/t3_16500", "base/16384/t3_16500_fsm", "base/16384/t3_16500.1", "base/16384/t12_16501_init",
	"log/postmaster.pid", // at any depth
	"fifo", "null",       // special files
}

// emptiedList are the data directory's subdirectories that are restored
// empty (pg_wal holds archive_status and summaries).
var emptiedList = []string{
	"pg_wal", "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_snapshots",
	"pg_stat_tmp", "pg_subtrans", "pg_tblspc",
}

// makeCluster fills root with a data-directory-like tree: nested and empty
// directories, empty files, symlinks, modes 0600/0640/0700, a file larger
// than testPartSize, many 8 KiB files, and one of everything excluded.
func makeCluster(t testing.TB, root string) tree {
	tr := newTree(t, root)
	tr.file("PG_VERSION", []byte("15\n"), 0o600)
	tr.file("postgresql.conf", []byte("shared_buffers = 128MB\n"), 0o640)
	tr.file("postgresql.auto.conf", []byte("# Do not edit\n"), 0o600)
	tr.file("walsnap-hook.sh", []byte("#!/bin/sh\nexit 0\n"), 0o700)
	tr.file("global/pg_control", relationData(1, 8192), 0o600)
	tr.file("global/1262", relationData(2, 8192), 0o600)
	tr.file("base/1/1259", relationData(3, 3*8192), 0o600)
	tr.file("base/16384/16385", relationData(4, 3*testPartSize+12345), 0o600) // split into 4 pieces
	tr.file("base/16384/16385_fsm", relationData(5, 24576), 0o600)
	tr.file("base/16384/16386", nil, 0o600) // empty
	tr.file("base/16384/16387_init", nil, 0o600)
	for i := range 400 {
		tr.file(fmt.Sprintf("base/16384/%d", 20000+i), relationData(uint64(100+i), 8192), 0o640)
	}
	tr.dir("pg_logical/snapshots", 0o700)
	tr.dir("pg_logical/mappings", 0o750)
	tr.dir("pg_commit_ts", 0o700)
	tr.file("pg_xact/0000", relationData(6, 8192), 0o600)
	tr.file("pg_multixact/members/0000", relationData(7, 8192), 0o600)
	tr.file("pg_multixact/offsets/0000", relationData(8, 8192), 0o600)
	tr.symlink("conf.link", "postgresql.conf")
	tr.symlink("abs.link", "/etc/hostname")
	tr.symlink("dangling.link", "no/such/file")

	// pg_wal and its friends, with contents that must not be stored.
	tr.file("pg_wal/000000010000000000000001", relationData(9, 65536), 0o600)
	tr.file("pg_wal/archive_status/000000010000000000000001.ready", nil, 0o600)
	tr.file("pg_wal/summaries/0000000100000000010000000000000001000000.summary", []byte("x"), 0o600)
	tr.file("pg_dynshmem/mmap.1234", []byte("x"), 0o600)
	tr.file("pg_notify/0000", []byte("x"), 0o600)
	tr.file("pg_replslot/slot1/state", []byte("x"), 0o600)
	tr.file("pg_serial/0000", []byte("x"), 0o600)
	tr.file("pg_snapshots/00000003-00000002-1", []byte("x"), 0o600)
	tr.file("pg_stat_tmp/pgss_query_texts.stat", []byte("x"), 0o600)
	tr.file("pg_subtrans/0000", []byte("x"), 0o600)
	tr.dir("pg_tblspc", 0o700)
	tr.symlink("pg_tblspc/16390", "/nonexistent/tablespace")

	for _, name := range excludedFiles {
		switch name {
		case "base/pgsql_tmp":
			tr.file("base/pgsql_tmp/pgsql_tmp123.0", []byte("temp"), 0o600)
		case "fifo":
			if err := syscall.Mkfifo(tr.path(name), 0o600); err != nil {
				t.Fatal(err)
			}
		case "null":
			if err := unix.Mknod(tr.path(name), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
				t.Logf("no device node in the test tree: %v", err)
			}
		default:
			tr.file(name, []byte("excluded"), 0o600)
		}
	}
	return tr
}

// expectedCluster is what Restore must produce from makeCluster's tree.
func expectedCluster(t testing.TB, root string) map[string]string {
	want := snapshot(t, root)
	for _, name := range excludedFiles {
		delete(want, name)
		dropBelow(want, name)
	}
	for _, dir := range emptiedList {
		dropBelow(want, dir)
	}
	want["pg_wal/archive_status"] = "dir"
	want["pg_wal/summaries"] = "dir"
	return want
}

// checkCluster checks a restored makeCluster tree beyond the snapshot:
// directories are 0700, excluded names absent, emptied directories empty.
func checkCluster(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == dir {
			return err
		}
		if fi, err := d.Info(); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("restored directory %s: mode %v, err %v; want 0700", p, fi.Mode(), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range excludedFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("excluded %s was restored (err %v)", name, err)
		}
	}
	for _, name := range emptiedList {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: want a directory, got %v, %v", name, fi, err)
			continue
		}
		ents, _ := os.ReadDir(filepath.Join(dir, name))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		want := ""
		if name == "pg_wal" {
			want = "archive_status summaries"
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	for _, sub := range []string{"pg_wal/archive_status", "pg_wal/summaries"} {
		if ents, err := os.ReadDir(filepath.Join(dir, sub)); err != nil || len(ents) != 0 {
			t.Errorf("%s: %d entries, err %v; want an empty directory", sub, len(ents), err)
		}
	}
}

// checkParts checks the parts of a backup against the store and the
// options it was made with.
func checkParts(t *testing.T, s storage.Store, res Result, id string, partSize int64) {
	prefix := "backups/" + id + "/" // where the repository keeps the backup's parts
	t.Helper()
	var out int64
	for _, p := range res.Parts {
		dir := "base"
		if p.Tablespace != 0 {
			dir = fmt.Sprint(p.Tablespace)
		}
		if !strings.HasPrefix(p.Key, prefix+"data/"+dir+"/part-") {
			t.Errorf("part key %s: want it under %sdata/%s/", p.Key, prefix, dir)
		}
		if p.RawSize > partSize+4096 {
			t.Errorf("part %s: %d raw bytes, more than the part size %d", p.Key, p.RawSize, partSize)
		}
		info, err := repo.New(s).OpenPart(t.Context(), id, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		info.Close()
		if info.Size != p.StoredSize || info.SHA256 != p.SHA256 || info.RawSize != p.RawSize || info.Codec.Name() != p.Codec || info.Encrypted {
			t.Errorf("part %+v: stored as %+v", p, info.ObjectMeta)
		}
		out += p.StoredSize
	}
	if out != res.BytesOut {
		t.Errorf("BytesOut %d, parts sum to %d", res.BytesOut, out)
	}
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(res.Parts) {
		t.Errorf("%d objects under %s, %d parts", len(objs), prefix, len(res.Parts))
	}
}

func countFiles(want map[string]string) int {
	n := 0
	for _, v := range want {
		if strings.HasPrefix(v, "file ") {
			n++
		}
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "pgdata")
	makeCluster(t, src)
	want := expectedCluster(t, src)
	for _, tc := range []struct {
		streams, concurrency int
		codec                string
	}{
		{1, 1, "zstd"},
		{2, 2, "zstd:3"},
		{4, 4, "zstd"},
		{2, 3, "s2"},
		{2, 2, "gzip"},
		{3, 2, "none"},
	} {
		t.Run(fmt.Sprintf("streams=%d/concurrency=%d/%s", tc.streams, tc.concurrency, tc.codec), func(t *testing.T) {
			t.Parallel()
			s := newFSStore(t)
			codec, err := compress.Parse(tc.codec)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var done, total int64
			res, err := Backup(t.Context(), BackupOptions{
				Repo: repo.New(s), BackupID: "b1", Codec: codec, Streams: tc.streams, PartSize: testPartSize,
				Progress: func(d, tot int64) { mu.Lock(); done, total = d, tot; mu.Unlock() },
			}, []Source{{Tablespace: 0, Root: src}})
			if err != nil {
				t.Fatal(err)
			}
			checkParts(t, s, res, "b1", testPartSize)
			if len(res.Parts) < 5 {
				t.Errorf("%d parts, want at least 5 (a 3 MiB file and 3 MiB of small files, 1 MiB parts)", len(res.Parts))
			}
			if n := countFiles(want); res.Files != n {
				t.Errorf("Result.Files = %d, want %d", res.Files, n)
			}
			if done != total || total != res.BytesIn {
				t.Errorf("progress ended at %d of %d; read %d bytes", done, total, res.BytesIn)
			}

			dest := filepath.Join(t.TempDir(), "restored")
			var rdone, rtotal int64
			err = Restore(t.Context(), RestoreOptions{
				Repo: repo.New(s), BackupID: "b1", Concurrency: tc.concurrency,
				Progress: func(d, tot int64) { mu.Lock(); rdone, rtotal = d, tot; mu.Unlock() },
			}, res.Parts, map[uint32]string{0: dest})
			if err != nil {
				t.Fatal(err)
			}
			diffSnapshots(t, snapshot(t, dest), want)
			checkCluster(t, dest)
			if rdone != rtotal || rtotal == 0 {
				t.Errorf("restore progress ended at %d of %d", rdone, rtotal)
			}
		})
	}
}

func TestRoundTripS3(t *testing.T) {
	s := newS3Store(t)
	src := filepath.Join(t.TempDir(), "pgdata")
	makeCluster(t, src)
	res, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b1", PartSize: testPartSize}, []Source{{0, src}})
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, s, res, "b1", testPartSize)
	dest := filepath.Join(t.TempDir(), "restored")
	if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b1"}, res.Parts, map[uint32]string{0: dest}); err != nil {
		t.Fatal(err)
	}
	diffSnapshots(t, snapshot(t, dest), expectedCluster(t, src))
	checkCluster(t, dest)

	// A damaged object on S3 is refused too.
	p := res.Parts[0]
	data, meta := readObject(t, s, p.Key)
	data[len(data)/2] ^= 0x40
	replaceObject(t, s, p.Key, data, meta)
	err = Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b1"}, res.Parts, map[uint32]string{0: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), p.Key) {
		t.Errorf("Restore of a damaged part = %v, want an error naming %s", err, p.Key)
	}
}

func TestTablespaces(t *testing.T) {
	dir := t.TempDir()
	pgdata := newTree(t, filepath.Join(dir, "pgdata"))
	pgdata.file("PG_VERSION", []byte("16\n"), 0o600)
	pgdata.file("base/1/1259", relationData(1, 8192), 0o600)
	pgdata.symlink("pg_tblspc/16390", filepath.Join(dir, "ts1"))
	// A tablespace inside the data directory is stored once, as itself.
	pgdata.file("inside/PG_16_202307071/16384/16400", relationData(2, 8192), 0o600)
	ts1 := newTree(t, filepath.Join(dir, "ts1"))
	ts1.file("PG_16_202307071/16384/16401", relationData(3, 2*testPartSize+100), 0o600)
	ts1.file("PG_16_202307071/16384/16402", relationData(4, 8192), 0o640)
	ts1.file("PG_16_202307071/16384/t5_16403", []byte("temp"), 0o600)
	ts1.file("PG_16_202307071/16384/pg_internal.init", []byte("x"), 0o600)
	ts1.file("PG_16_202307071/pgsql_tmp/pgsql_tmp7.1", []byte("x"), 0o600)
	ts1.file("PG_16_202307071/16384/postmaster.pid", []byte("x"), 0o600)
	ts1.file("PG_16_202307071/16384/t5_16403x", []byte("not a temp relation"), 0o600)
	ts2 := newTree(t, filepath.Join(dir, "ts2"))
	ts2.dir("PG_16_202307071", 0o700)

	s := newFSStore(t)
	sources := []Source{{0, pgdata.root}, {16390, ts1.root}, {16391, ts2.root}, {16392, pgdata.path("inside")}}
	res, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", PartSize: testPartSize}, sources)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, s, res, "b", testPartSize)
	dest := map[uint32]string{0: filepath.Join(dir, "r0"), 16390: filepath.Join(dir, "r1"), 16391: filepath.Join(dir, "r2"), 16392: filepath.Join(dir, "r3")}
	if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b", Concurrency: 3}, res.Parts, dest); err != nil {
		t.Fatal(err)
	}

	want0 := snapshot(t, pgdata.root)
	delete(want0, "pg_tblspc/16390")
	dropBelow(want0, "inside")
	diffSnapshots(t, snapshot(t, dest[0]), want0)
	want1 := snapshot(t, ts1.root)
	for _, k := range []string{"PG_16_202307071/16384/t5_16403", "PG_16_202307071/16384/pg_internal.init",
		"PG_16_202307071/pgsql_tmp", "PG_16_202307071/pgsql_tmp/pgsql_tmp7.1", "PG_16_202307071/16384/postmaster.pid"} {
		delete(want1, k)
	}
	diffSnapshots(t, snapshot(t, dest[16390]), want1)
	diffSnapshots(t, snapshot(t, dest[16391]), snapshot(t, ts2.root))
	diffSnapshots(t, snapshot(t, dest[16392]), snapshot(t, pgdata.path("inside")))
}

// TestWALSymlink: a pg_wal that is a symlink is restored as an empty
// directory with an empty archive_status.
func TestWALSymlink(t *testing.T) {
	dir := t.TempDir()
	pgdata := newTree(t, filepath.Join(dir, "pgdata"))
	pgdata.file("PG_VERSION", []byte("14\n"), 0o600)
	wal := newTree(t, filepath.Join(dir, "wal"))
	wal.file("000000010000000000000001", relationData(1, 16384), 0o600)
	wal.file("archive_status/000000010000000000000001.done", nil, 0o600)
	pgdata.symlink("pg_wal", wal.root)
	pgdata.symlink("pg_stat_tmp", filepath.Join(dir, "nowhere")) // dangling

	s := newFSStore(t)
	res, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, pgdata.root}})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "restored")
	if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, res.Parts, map[uint32]string{0: dest}); err != nil {
		t.Fatal(err)
	}
	diffSnapshots(t, snapshot(t, dest), map[string]string{
		"PG_VERSION":            snapshot(t, pgdata.root)["PG_VERSION"],
		"pg_wal":                "dir",
		"pg_wal/archive_status": "dir",
		"pg_stat_tmp":           "dir",
	})
}

// withHook sets testHookBeforeOpen for the duration of t.
func withHook(t *testing.T, fn func(path string)) {
	testHookBeforeOpen = fn
	t.Cleanup(func() { testHookBeforeOpen = nil })
}

// TestChangingFiles: files that vanish, shrink or grow between the scan and
// their reading.
func TestChangingFiles(t *testing.T) {
	dir := t.TempDir()
	src := newTree(t, filepath.Join(dir, "pgdata"))
	keep := relationData(1, 8192)
	src.file("base/1/keep", keep, 0o600)
	src.file("base/1/vanish", relationData(2, 8192), 0o600)
	shrink := relationData(3, 100000)
	src.file("base/1/shrink", shrink, 0o600)
	grow := relationData(4, 50000)
	src.file("base/1/grow", grow, 0o600)
	bigShrink := relationData(5, 2*testPartSize+5000) // 3 pieces
	src.file("base/1/big-shrink", bigShrink, 0o600)
	bigVanish := relationData(6, 2*testPartSize+5000)
	src.file("base/1/big-vanish-later", bigVanish, 0o600)

	var mu sync.Mutex
	calls := map[string]int{}
	withHook(t, func(p string) {
		mu.Lock()
		defer mu.Unlock()
		calls[filepath.Base(p)]++
		n := calls[filepath.Base(p)]
		var err error
		switch filepath.Base(p) {
		case "vanish":
			err = os.Remove(p)
		case "shrink":
			err = os.Truncate(p, 30000)
		case "grow":
			var f *os.File
			if f, err = os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0); err == nil {
				_, err = f.Write(bytes.Repeat([]byte("more"), 1000))
				f.Close()
			}
		case "big-shrink":
			if n == 1 {
				err = os.Truncate(p, testPartSize+1000)
			}
		case "big-vanish-later":
			if n == 2 { // one piece is already stored
				err = os.Remove(p)
			}
		}
		if err != nil {
			t.Error(err)
		}
	})
	s := newFSStore(t)
	res, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", PartSize: testPartSize, Streams: 1}, []Source{{0, src.root}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 5 {
		t.Errorf("Result.Files = %d, want 5 (all but vanish)", res.Files)
	}
	dest := filepath.Join(dir, "restored")
	if err := Restore(t.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, res.Parts, map[uint32]string{0: dest}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dest, "base/1", name))
		if err != nil {
			t.Error(err)
			return
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: restored %d bytes, want %d (first difference at %d)", name, len(got), len(want), firstDiff(got, want))
		}
	}
	check("keep", keep)
	if _, err := os.Stat(filepath.Join(dest, "base/1/vanish")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("vanished file: Stat = %v, want not found", err)
	}
	check("shrink", append(shrink[:30000:30000], make([]byte, 70000)...))
	check("grow", grow)
	check("big-shrink", append(bigShrink[:testPartSize+1000:testPartSize+1000], make([]byte, testPartSize+4000)...))
	// The piece read before the file vanished is there; the others are
	// zeros, as if the file had shrunk.
	got, err := os.ReadFile(filepath.Join(dest, "base/1/big-vanish-later"))
	if err != nil || len(got) != len(bigVanish) {
		t.Fatalf("big-vanish-later: %d bytes, %v; want %d", len(got), err, len(bigVanish))
	}
	if !bytes.Equal(got[:testPartSize], bigVanish[:testPartSize]) || !bytes.Equal(got[testPartSize:], make([]byte, len(got)-testPartSize)) {
		t.Errorf("big-vanish-later: want its first piece, then zeros")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestFileBecameDirectory: a file replaced by a directory after the scan
// fails the backup with its path, and the parts stored so far are deleted.
func TestFileBecameDirectory(t *testing.T) {
	src := newTree(t, filepath.Join(t.TempDir(), "pgdata"))
	src.file("base/1/big", relationData(1, 3*testPartSize), 0o600) // stored first
	src.file("base/1/changes", relationData(2, 8192), 0o600)
	withHook(t, func(p string) {
		if filepath.Base(p) == "changes" {
			if err := os.Remove(p); err != nil {
				t.Error(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Error(err)
			}
		}
	})
	s := newFSStore(t)
	_, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", PartSize: testPartSize, Streams: 1}, []Source{{0, src.root}})
	if err == nil || !strings.Contains(err.Error(), src.path("base/1/changes")) {
		t.Fatalf("Backup = %v, want an error naming base/1/changes", err)
	}
	t.Log(err)
	objs, err := s.List(t.Context(), "b/")
	if err != nil || len(objs) != 0 {
		t.Errorf("after the failed backup: %d objects (%v), want none", len(objs), err)
	}
}

// TestReadError: a file whose read fails (a sysfs attribute that returns
// EINVAL, bind-mounted into the tree) fails the backup with its path.
func TestReadError(t *testing.T) {
	const attr = "/sys/class/net/lo/speed"
	if _, err := os.ReadFile(attr); !errors.Is(err, syscall.EINVAL) {
		t.Skipf("reading %s: %v, want EINVAL", attr, err)
	}
	src := newTree(t, filepath.Join(t.TempDir(), "pgdata"))
	src.file("PG_VERSION", []byte("15\n"), 0o600)
	src.file("base/1/bad", nil, 0o600)
	if err := unix.Mount(attr, src.path("base/1/bad"), "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount %s: %v", attr, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(src.path("base/1/bad"), 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	_, err := Backup(t.Context(), BackupOptions{Repo: repo.New(newFSStore(t)), BackupID: "b"}, []Source{{0, src.root}})
	if err == nil || !strings.Contains(err.Error(), src.path("base/1/bad")) || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Backup = %v, want EINVAL naming base/1/bad", err)
	}
	t.Log(err)
}

func TestBackupOptions(t *testing.T) {
	src := t.TempDir()
	s := newFSStore(t)
	for _, tc := range []struct {
		name    string
		o       BackupOptions
		sources []Source
	}{
		{"no repository", BackupOptions{BackupID: "b"}, []Source{{0, src}}},
		{"no backup id", BackupOptions{Repo: repo.New(s)}, []Source{{0, src}}},
		{"backup id with a slash", BackupOptions{Repo: repo.New(s), BackupID: "../b"}, []Source{{0, src}}},
		{"tablespace twice", BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, src}, {0, src}}},
		{"missing root", BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, filepath.Join(src, "nope")}}},
		{"same root twice", BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, src}, {16390, src + "/."}}},
		{"root is a file", BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, "/etc/hostname"}}},
	} {
		if _, err := Backup(t.Context(), tc.o, tc.sources); err == nil {
			t.Errorf("%s: Backup succeeded", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	// The same backup id twice: parts are never overwritten.
	newTree(t, src).file("PG_VERSION", []byte("15\n"), 0o600)
	if _, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", Streams: 1}, []Source{{0, src}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(t.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b", Streams: 1}, []Source{{0, src}}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second Backup with the same id = %v, want ErrExists", err)
	}
}

func TestExclusionRules(t *testing.T) {
	for name, want := range map[string]bool{
		"t3_16500": true, "t3_16500_fsm": true, "t3_16500_vm": true, "t3_16500_init": true, "t3_16500.12": true,
		"t3_16500_init.1": true, "t3_": false, "t_1": false, "tx3_1": false, "t3_16500_main": false,
		"t3_16500.": false, "t3_16500.x": false, "16500": false, "t3_16500x": false,
	} {
		if got := tempRelation(name); got != want {
			t.Errorf("tempRelation(%q) = %v, want %v", name, got, want)
		}
	}
	for dir, want := range map[[2]string]bool{
		{"0", "base/1"}: true, {"0", "base/16384"}: true, {"0", "base"}: false, {"0", "global"}: false,
		{"0", "base/1/x"}: false, {"0", "other/1"}: false, {"1", "PG_15_202209061/5"}: true,
		{"1", "base/5"}: false, {"1", "PG_15_202209061"}: false,
	} {
		ts := uint32(0)
		if dir[0] == "1" {
			ts = 16390
		}
		if got := inDatabaseDir(ts, dir[1]); got != want {
			t.Errorf("inDatabaseDir(%d, %q) = %v, want %v", ts, dir[1], got, want)
		}
	}
}
