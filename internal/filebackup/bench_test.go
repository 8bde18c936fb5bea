package filebackup

import (
	"fmt"
	"github.com/walsnap/walsnap/internal/repo"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/storage"
)

// benchCluster writes a 1 GiB data directory of relation-like data: two
// large segment files (512 and 384 MiB) and 16384 files of 8 KiB, all
// fsynced, and returns its root and the paths of its files.
func benchCluster(b *testing.B) (root string, files []string) {
	b.Helper()
	root = filepath.Join(b.TempDir(), "pgdata")
	tr := newTree(b, root)
	write := func(rel string, data []byte) {
		tr.file(rel, data, 0o600)
		files = append(files, tr.path(rel))
	}
	write("base/16384/16385", relationData(1, 512<<20))
	write("base/16384/16386", relationData(2, 384<<20))
	for i := range 16384 {
		write(fmt.Sprintf("base/16384/%d/%d", 100+i/1000, 20000+i), relationData(uint64(10+i), 8192))
	}
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	return root, files
}

// dropCache evicts files from the page cache, so that they are read from
// disk. It affects only these files.
func dropCache(b *testing.B, files []string) {
	b.Helper()
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// settle writes back the filesystem of dir, so that the next timed
// iteration does not pay for the data and deletions of the previous ones.
func settle(b *testing.B, dir string) {
	b.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatal(err)
	}
}

var benchStores = []struct {
	name string
	new  func(testing.TB) storage.Store
}{
	{"fs", newFSStore},
	{"minio", newS3Store},
}

// BenchmarkBackup backs up a 1 GiB cluster with the default options
// (zstd:1, 2 streams, 256 MiB parts), with its files in the page cache
// (warm) or not (cold). MB/s are of file bytes read.
func BenchmarkBackup(b *testing.B) {
	root, files := benchCluster(b)
	for _, st := range benchStores {
		for _, cache := range []string{"cold", "warm"} {
			b.Run(st.name+"/"+cache, func(b *testing.B) {
				s := st.new(b)
				var res Result
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if cache == "cold" {
						dropCache(b, files)
					}
					settle(b, root)
					b.StartTimer()
					var err error
					res, err = Backup(b.Context(), BackupOptions{Repo: repo.New(s), BackupID: fmt.Sprintf("b%d", i)}, []Source{{0, root}})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					for _, p := range res.Parts {
						if err := s.Delete(b.Context(), p.Key); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				b.SetBytes(res.BytesIn)
				b.ReportMetric(float64(res.BytesIn)/float64(res.BytesOut), "ratio")
			})
		}
	}
}

// BenchmarkRestore restores the 1 GiB cluster of BenchmarkBackup
// (concurrency 2), syncfs included. MB/s are of file bytes written.
func BenchmarkRestore(b *testing.B) {
	root, _ := benchCluster(b)
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			s := st.new(b)
			res, err := Backup(b.Context(), BackupOptions{Repo: repo.New(s), BackupID: "b"}, []Source{{0, root}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(res.BytesIn)
			dir := b.TempDir()
			settle(b, dir)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dest := filepath.Join(dir, fmt.Sprint(i))
				if err := Restore(b.Context(), RestoreOptions{Repo: repo.New(s), BackupID: "b"}, res.Parts, map[uint32]string{0: dest}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.RemoveAll(dest); err != nil {
					b.Fatal(err)
				}
				settle(b, dir)
				b.StartTimer()
			}
		})
	}
}
