package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/internal/walrec"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pushAll pushes segments first..last of timeline 1 and returns their bytes.
func (e *env) pushRange(first, last uint64) map[uint64][]byte {
	e.t.Helper()
	datas := map[uint64][]byte{}
	for no := first; no <= last; no++ {
		var p string
		p, datas[no] = e.write(1, no, false)
		if err := e.pusher().Push(context.Background(), p); err != nil {
			e.t.Fatal(err)
		}
	}
	return datas
}

// TestPrefetchedTamperNeverServed: a prefetched file is served only when it
// is proven to hold the bytes verified when it was downloaded. Each tamper
// below was served with exit 0 before (issue 7, defect 1).
func TestPrefetchedTamperNeverServed(t *testing.T) {
	e := newEnv(t)
	datas := e.pushRange(1, 9)
	f := e.fetcher()
	f.Prefetch = 8
	if err := f.RunPrefetch(context.Background(), name(1, 1), e.walDir); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(e.walDir, spool.DirName, "prefetch")
	flip := func(no uint64, off int64) func(string) {
		return func(path string) {
			fd, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			b := []byte{0}
			fd.ReadAt(b, off)
			b[0] ^= 0x5a
			if _, err := fd.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	// keepStat rewrites the record with the tampered file's stat, as on a
	// filesystem whose timestamps did not move (one that keeps whole
	// seconds, where the prefetcher cannot settle a record): the content
	// check alone must catch it.
	keepStat := func(tamper func(string)) func(string) {
		return func(path string) {
			tamper(path)
			var rec walrec.Prefetched
			data, err := os.ReadFile(path + walrec.RecordSuffix)
			if err != nil || json.Unmarshal(data, &rec) != nil {
				t.Fatalf("record of %s: %v", path, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			rec.Stat, rec.Settled = walrec.StatOf(fi), false
			os.WriteFile(path+walrec.RecordSuffix, mustJSON(rec), 0o600)
		}
	}
	cases := []struct {
		what   string
		no     uint64
		tamper func(path string)
	}{
		{"byte flipped at offset 25076", 2, flip(2, 25076)},
		{"byte flipped in the middle", 3, flip(3, segSize/2)},
		{"later page header", 4, flip(4, 8192*5+2)},
		{"last byte, stat kept", 5, keepStat(flip(5, segSize-1))},
		{"first page header, stat kept", 6, keepStat(flip(6, 20))},
		{"truncated", 7, func(p string) { os.Truncate(p, segSize/2) }},
		{"replaced by another file", 8, func(p string) {
			os.Remove(p)
			os.WriteFile(p, segment(1, 8, sysID), 0o600)
		}},
		{"record removed", 9, func(p string) { os.Remove(p + walrec.RecordSuffix) }},
	}
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			path := filepath.Join(pdir, name(1, c.no))
			if _, err := os.Stat(path + walrec.RecordSuffix); err != nil {
				t.Fatalf("segment %d not prefetched: %v", c.no, err)
			}
			c.tamper(path)
			e.logs.Reset()
			os.Remove(dest)
			if err := f.Fetch(context.Background(), name(1, c.no), dest); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dest)
			if !bytes.Equal(got, datas[c.no]) {
				t.Fatalf("%s: PostgreSQL was handed a file that is not the archived segment", c.what)
			}
			if strings.Contains(e.logs.String(), "restored (prefetched)") {
				t.Fatalf("%s: served from the sdir:\n%s", c.what, e.logs)
			}
			if c.what != "record removed" && !strings.Contains(e.logs.String(), "discarding a prefetched file") {
				t.Fatalf("%s: not reported:\n%s", c.what, e.logs)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("%s: the tampered sdir file is still there", c.what)
			}
		})
	}
}

// TestPrefetchedServedWhenIntact: the untampered path is still a rename.
func TestPrefetchedServedWhenIntact(t *testing.T) {
	e := newEnv(t)
	datas := e.pushRange(1, 3)
	f := e.fetcher()
	if err := f.RunPrefetch(context.Background(), name(1, 1), e.walDir); err != nil {
		t.Fatal(err)
	}
	// On this filesystem (nanosecond timestamps) the prefetcher settles
	// its records: the stat alone proves the file at serve time.
	pdir := filepath.Join(e.walDir, spool.DirName, "prefetch")
	rec, _, err := walrec.ReadPrefetched(filepath.Join(pdir, name(1, 2)+walrec.RecordSuffix), name(1, 2))
	if err != nil || !rec.Settled || rec.Stat == (walrec.Stat{}) {
		t.Fatalf("record of a prefetched segment: %+v, %v", rec, err)
	}
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	if err := f.Fetch(context.Background(), name(1, 2), dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[2]) || !strings.Contains(e.logs.String(), "restored (prefetched)") {
		t.Fatalf("intact prefetched segment not served from the sdir:\n%s", e.logs)
	}
	if _, err := os.Stat(filepath.Join(pdir, name(1, 2)+walrec.RecordSuffix)); !os.IsNotExist(err) {
		t.Fatal("the record of a served file was left behind")
	}
}

// TestPrefetchRecordOfAnotherRepository: a spool filled from one
// repository is not served for another.
func TestPrefetchRecordOfAnotherRepository(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 3)
	f := e.fetcher()
	if err := f.RunPrefetch(context.Background(), name(1, 1), e.walDir); err != nil {
		t.Fatal(err)
	}
	other := newEnv(t)
	datas := other.pushRange(1, 3)
	g := other.fetcher()
	g.Repo = other.repo
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	// Same spool (e's pg_wal), other repository.
	if err := g.Fetch(context.Background(), name(1, 2), dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, datas[2]) || strings.Contains(other.logs.String(), "restored (prefetched)") {
		t.Fatalf("a file prefetched from another repository was served:\n%s", other.logs)
	}
}

// TestStaleIdentityCannotCrossClusters: cluster A archives; the repository
// is emptied and cluster B starts archiving into it; A's next push from its
// old pg_wal must be refused and must not store anything (issue 7, defect
// 2: a cached identity let it through, and B's own segment of that name
// then stuck B's archiver).
func TestStaleIdentityCannotCrossClusters(t *testing.T) {
	a := newEnv(t)
	a.pushRange(1, 1)
	// Empty the repository.
	ents, _ := os.ReadDir(a.repoDir)
	for _, ent := range ents {
		if err := os.RemoveAll(filepath.Join(a.repoDir, ent.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// Cluster B, its own pg_wal, the same repository.
	b := newEnv(t)
	b.repo, b.repoDir, b.st = a.repo, a.repoDir, a.st
	bSeg := func(no uint64) string {
		p := filepath.Join(b.walDir, name(1, no))
		if err := os.WriteFile(p, segment(1, no, sysID+1), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := b.pusher().Push(context.Background(), bSeg(1)); err != nil {
		t.Fatal(err)
	}
	pA, _ := a.write(1, 2, false)
	err := a.pusher().Push(context.Background(), pA)
	if err == nil || !strings.Contains(err.Error(), "does not match the repository's") {
		t.Fatalf("cluster A's push into cluster B's repository: %v", err)
	}
	if objs, _ := a.st.List(context.Background(), "wal/00000001/"+name(1, 2)); len(objs) != 0 {
		t.Fatalf("cluster A's segment was stored in B's repository: %v", objs)
	}
	if err := b.pusher().Push(context.Background(), bSeg(2)); err != nil {
		t.Fatalf("cluster B's own segment 2 after A's attempt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.walDir, spool.DirName, "identity.json")); !os.IsNotExist(err) {
		t.Fatal("an identity cache is kept in the spool")
	}
}

// TestFetchIntoMissingDirectory: PostgreSQL always passes a path inside
// an existing pg_wal; any other destination is an error that creates
// nothing (issue 7, defect 7).
func TestFetchIntoMissingDirectory(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 2)
	missing := filepath.Join(t.TempDir(), "nope", "pg_wal")
	f := e.fetcher()
	started := false
	f.StartPrefetch = func(string) error { started = true; return nil }
	err := f.Fetch(context.Background(), name(1, 1), filepath.Join(missing, "RECOVERYXLOG"))
	if err == nil || strings.Contains(err.Error(), ErrNotFound.Error()) {
		t.Fatalf("fetch into a missing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatal("fetch created the missing directory")
	}
	if started {
		t.Fatal("a prefetcher was started for a missing directory")
	}
}

// waitFor waits until cond holds (an event in the filesystem), failing
// after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStandingPrefetcher: one prefetcher stays while recovery goes on,
// keeps the window after the segment PostgreSQL asked for last filled,
// and follows a timeline switch the repository's history describes.
func TestStandingPrefetcher(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 8)
	// Timeline 2 branched off timeline 1 inside segment 5.
	for no := uint64(5); no <= 8; no++ {
		p, _ := e.write(2, no, false)
		if err := e.pusher().Push(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	hist := filepath.Join(e.walDir, "00000002.history")
	os.WriteFile(hist, []byte(fmt.Sprintf("1\t%s\tno recovery target specified\n", wal.LSN(5*segSize+100))), 0o600)
	if err := e.pusher().Push(context.Background(), hist); err != nil {
		t.Fatal(err)
	}
	f := e.fetcher()
	f.Prefetch = 3
	f.PrefetchIdle = time.Minute
	f.StartPrefetch = func(string) error { return nil }
	pdir := filepath.Join(e.walDir, spool.DirName, "prefetch")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.RunPrefetch(ctx, name(1, 1), e.walDir) }()
	waitFor(t, "the window after segment 1", func() bool {
		return prefetched(pdir, name(1, 2)) && prefetched(pdir, name(1, 3)) && prefetched(pdir, name(1, 4))
	})
	dest := filepath.Join(e.walDir, "RECOVERYXLOG")
	for _, no := range []uint64{2, 3} {
		e.logs.Reset()
		if err := f.Fetch(context.Background(), name(1, no), dest); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.logs.String(), "restored (prefetched)") {
			t.Fatalf("segment %d not served from the standing prefetcher:\n%s", no, e.logs)
		}
	}
	// After segment 3 the window is 4, then timeline 2 from segment 5 on.
	waitFor(t, "the window to follow timeline 2", func() bool {
		return prefetched(pdir, name(2, 5)) && prefetched(pdir, name(2, 6))
	})
	if prefetched(pdir, name(1, 5)) {
		t.Fatal("segment 5 of the abandoned timeline 1 was prefetched")
	}
	// One prefetcher per spool: a second one leaves at once.
	if err := f.RunPrefetch(context.Background(), name(2, 6), e.walDir); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
