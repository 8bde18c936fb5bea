package fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/storage/storagetest"
)

// age sets path's modification time d in the past.
func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// lockFile holds an exclusive flock on path (through its own open file
// description, as another process would) until the test ends.
func lockFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestPutSweepsDeadWritersTemps: a put sweeps the work directory of
// temporaries that are unlocked and old (a dead writer's), and never one
// that is locked (a live writer's, however old) or brand new.
func TestPutSweepsDeadWritersTemps(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "first", []byte("1"), nil) // creates the work directory
	work := filepath.Join(s.root, workDir)
	mk := func(name string, old time.Duration) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte("partial object"), 0o600); err != nil {
			t.Fatal(err)
		}
		if old > 0 {
			age(t, p, old)
		}
		return p
	}
	dead := mk(tmpPrefix+"dead", 2*time.Hour)
	deadRecent := mk(tmpPrefix+"dead2", 2*time.Minute)
	fresh := mk(tmpPrefix+"fresh", 0)
	live := mk(tmpPrefix+"live", 2*time.Hour)
	lockFile(t, live)
	other := mk("not-a-temp", 2*time.Hour)

	storagetest.Put(t, s, "wal/00000001/x", []byte("x"), nil)
	if exists(dead) || exists(deadRecent) {
		t.Error("an unlocked old temporary (dead writer) survived a put")
	}
	if !exists(live) {
		t.Fatal("a locked temporary (live writer) was swept")
	}
	if !exists(fresh) {
		t.Error("a brand-new temporary was swept")
	}
	if !exists(other) {
		t.Error("a file not named as a temporary was swept")
	}
	storagetest.Check(t, s, "wal/00000001/x", []byte("x"), map[string]string{})
}

// TestListSweepsLegacyTemps: temporaries in object directories (written
// there by earlier versions) are removed by List once they are an hour old
// and unlocked.
func TestListSweepsLegacyTemps(t *testing.T) {
	s := newStore(t)
	storagetest.Put(t, s, "wal/00000001/a", []byte("a"), nil)
	dir := filepath.Join(s.root, "wal", "00000001")
	mk := func(name string, old time.Duration) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("junk"), 0o600)
		age(t, p, old)
		return p
	}
	dead := mk(tmpPrefix+"123", 3*time.Hour)
	young := mk(tmpPrefix+"456", 10*time.Minute) // an old version's writer may still be at it
	live := mk(tmpPrefix+"789", 3*time.Hour)
	lockFile(t, live)
	objs, err := s.List(t.Context(), "wal/")
	if err != nil || len(objs) != 1 || objs[0].Key != "wal/00000001/a" {
		t.Fatalf("List = %v, %v", objs, err)
	}
	if exists(dead) {
		t.Error("an hour-old unlocked temporary survived List")
	}
	if !exists(young) || !exists(live) {
		t.Error("a temporary that may belong to a live writer was swept")
	}
}

// TestSweepBetweenCreateAndLock: a sweeper that removes a writer's new
// temporary in the instant before the writer locks it does not lose the
// put: the writer sees its file unlinked and starts over.
func TestSweepBetweenCreateAndLock(t *testing.T) {
	s := newStore(t)
	var swept []string
	testHookTempCreated = func(path string) {
		if len(swept) == 0 {
			age(t, path, 2*time.Hour)
			if !sweepTemp(path, workTempAge) {
				t.Errorf("could not sweep the unlocked temporary %s", path)
			}
			swept = append(swept, path)
		}
	}
	t.Cleanup(func() { testHookTempCreated = nil })
	data := storagetest.Payload(7, 100<<10)
	storagetest.Put(t, s, "a/b", data, map[string]string{"k": "v"})
	if len(swept) != 1 {
		t.Fatal("hook did not run")
	}
	storagetest.Check(t, s, "a/b", data, map[string]string{"k": "v"})
	checkNoTemp(t, s.root)
}

// TestLiveTempsNeverSwept: with a sweeper that removes every unlocked
// temporary however young, concurrent puts all succeed with the right
// bytes: a live writer's temporary is never removed.
func TestLiveTempsNeverSwept(t *testing.T) {
	s := newStore(t)
	saved := workTempAge
	workTempAge = 0
	t.Cleanup(func() { workTempAge = saved })
	const writers, each = 12, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("wal/%02d/%03d", w%3, w*each+i)
				data := storagetest.Payload(uint64(w*each+i), 64<<10+i)
				if err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range writers {
		for i := range each {
			key := fmt.Sprintf("wal/%02d/%03d", w%3, w*each+i)
			storagetest.Check(t, s, key, storagetest.Payload(uint64(w*each+i), 64<<10+i), map[string]string{})
		}
	}
	checkNoTemp(t, s.root)
}

// blockingReader yields n bytes, then blocks forever.
type blockingReader struct{ n int }

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		time.Sleep(time.Hour)
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func (r *blockingReader) Seek(int64, int) (int64, error) { return 0, nil }

// TestFSKilledWriterChild is the writer that TestSIGKILLedWriterTempSwept
// kills; it does nothing in a normal run.
func TestFSKilledWriterChild(t *testing.T) {
	root := os.Getenv("WALSNAP_FS_KILLED_WRITER_ROOT")
	if root == "" {
		t.Skip("helper process for TestSIGKILLedWriterTempSwept")
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	s.PutIfAbsent(t.Context(), "wal/00000001/000000010000000000000001.zst", &blockingReader{n: 1 << 20}, 16<<20, nil)
	t.Fatal("the put returned")
}

// TestSIGKILLedWriterTempSwept: a real writer process is SIGKILLed in the
// middle of a put. Its temporary stays while it is young, and is swept by
// the next put once it is old, because its lock died with the process;
// while the writer lived, its temporary was not swept even when old.
func TestSIGKILLedWriterTempSwept(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSKilledWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WALSNAP_FS_KILLED_WRITER_ROOT="+root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	work := filepath.Join(root, workDir)
	var temp string
	for deadline := time.Now().Add(30 * time.Second); temp == ""; {
		ents, _ := os.ReadDir(work)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), tmpPrefix) && fi.Size() >= 1<<20 {
				temp = filepath.Join(work, e.Name())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer made no temporary file:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Alive: its temporary survives a sweep even when old.
	age(t, temp, 2*time.Hour)
	storagetest.Put(t, s, "alive", []byte("1"), nil)
	if !exists(temp) {
		t.Fatalf("a live writer's temporary was swept; writer's output:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	// Dead but young: kept (the age spares files being created).
	os.Chtimes(temp, time.Now(), time.Now())
	storagetest.Put(t, s, "young", []byte("2"), nil)
	if !exists(temp) {
		t.Fatal("a young temporary was swept")
	}
	// Dead and old: swept.
	age(t, temp, 2*time.Minute)
	storagetest.Put(t, s, "old", []byte("3"), nil)
	if exists(temp) {
		t.Fatal("a SIGKILLed writer's temporary survived")
	}
	checkNoTemp(t, root)
	if objs, err := s.List(t.Context(), ""); err != nil || len(objs) != 3 {
		t.Fatalf("List = %v, %v; want the three objects put", objs, err)
	}
}

var _ io.ReadSeeker = (*blockingReader)(nil)
