package archive

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/storage"
	"github.com/walsnap/walsnap/internal/walrec"
)

// endGate is the repository's store with one download held back: the Get
// of the held segment waits until the lookup of the segment after the end
// of the archive has come back empty, then, to give a cancellation caused
// by that end time to arrive, until its context ends or a moment passes.
type endGate struct {
	storage.Store
	held, end string
	endOnce   sync.Once
	endSeen   chan struct{}
	cancelled chan struct{} // closed when the held Get's context ended
}

func (g *endGate) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := g.Store.List(ctx, prefix)
	if err == nil && len(objs) == 0 && strings.Contains(prefix, g.end) {
		g.endOnce.Do(func() { close(g.endSeen) })
	}
	return objs, err
}

func (g *endGate) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	if strings.Contains(key, g.held) {
		select {
		case <-g.endSeen:
		case <-ctx.Done():
			return nil, storage.ObjectInfo{}, ctx.Err()
		}
		// A bounded wait for something that must not happen: a pass
		// never depends on its length, only a regression's detection.
		select {
		case <-ctx.Done():
			close(g.cancelled)
			return nil, storage.ObjectInfo{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return g.Store.Get(ctx, key)
}

// TestPrefetchEndKeepsEarlierDownloads: reaching the end of the archive
// stops new prefetch downloads, never the ones still running for segments
// before the end (they were cancelled, and PostgreSQL's call downloaded the
// segment again).
func TestPrefetchEndKeepsEarlierDownloads(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 3)
	g := &endGate{Store: e.st, held: name(1, 2), end: name(1, 4), endSeen: make(chan struct{}), cancelled: make(chan struct{})}
	f := e.fetcher()
	f.Repo = repo.New(g)
	f.Concurrency = 2 // segment 3 done and 4 looked up while 2 is held
	if err := f.RunPrefetch(context.Background(), name(1, 1), e.walDir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.cancelled:
		t.Fatal("the end of the archive cancelled the download of a segment before it")
	default:
	}
	pdir := filepath.Join(e.walDir, spool.DirName, "prefetch")
	for _, no := range []uint64{2, 3} {
		if _, err := os.Stat(filepath.Join(pdir, name(1, no)+walrec.RecordSuffix)); err != nil {
			t.Errorf("segment %d not prefetched: %v", no, err)
		}
	}
}

// countingStore counts the requests that name a key containing one of
// the watched strings.
type countingStore struct {
	storage.Store
	mu      sync.Mutex
	watched []string
	n       map[string]int
}

func (c *countingStore) count(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watched {
		if strings.Contains(key, w) {
			c.n[w]++
		}
	}
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	c.count(key)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	c.count(prefix)
	return c.Store.List(ctx, prefix)
}

func (c *countingStore) requests(w string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[w]
}

// TestPrefetchEndPolledGently: a prefetcher whose window reaches past the
// end of the archive (a standby waiting for WAL, the end of every
// recovery) asks the store for the next segment once per prefetchRetry,
// and reads the identity and the timeline history that often, not once
// per poll.
func TestPrefetchEndPolledGently(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 3)
	c := &countingStore{Store: e.st, watched: []string{name(1, 4), repo.IdentityKey, "00000002.history"}, n: map[string]int{}}
	f := e.fetcher()
	f.Repo = repo.New(c)
	const idle = 2500 * time.Millisecond
	f.PrefetchIdle = idle
	start := time.Now()
	if err := f.RunPrefetch(context.Background(), name(1, 3), e.walDir); err != nil {
		t.Fatal(err)
	}
	stayed := time.Since(start)
	if stayed < idle {
		t.Fatalf("the prefetcher left after %v, before its idle time %v", stayed, idle)
	}
	// Each look for the next segment is a Get and a List (other codecs).
	fills := int(stayed/prefetchRetry) + 1
	for _, w := range c.watched {
		if n := c.requests(w); n == 0 || n > 2*fills {
			t.Errorf("%d requests for %s in %v (at most %d expected: one look per %v; a look per %v poll would be ~%d)",
				n, w, stayed.Round(time.Millisecond), 2*fills, prefetchRetry, prefetchPoll, 2*int(stayed/prefetchPoll))
		}
	}
}

// TestPrefetchEndGrows: a segment archived after the prefetcher found the
// end of the archive is prefetched at its next look, about a second later,
// without PostgreSQL asking for anything new.
func TestPrefetchEndGrows(t *testing.T) {
	e := newEnv(t)
	e.pushRange(1, 3)
	c := &countingStore{Store: e.st, watched: []string{name(1, 4)}, n: map[string]int{}}
	f := e.fetcher()
	f.Repo = repo.New(c)
	f.PrefetchIdle = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.RunPrefetch(ctx, name(1, 3), e.walDir) }()
	defer func() {
		cancel()
		<-done
	}()
	// The prefetcher has looked for segment 4 and found the end.
	for deadline := time.Now().Add(20 * time.Second); c.requests(name(1, 4)) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the prefetcher never looked for the segment after the archive")
		}
	}
	e.pushRange(4, 4)
	pushed := time.Now()
	rec := filepath.Join(e.walDir, spool.DirName, "prefetch", name(1, 4)+walrec.RecordSuffix)
	for {
		if _, err := os.Stat(rec); err == nil {
			break
		}
		if time.Since(pushed) > 5*prefetchRetry {
			t.Fatalf("segment 4, archived after the end was seen, not prefetched within %v", 5*prefetchRetry)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("prefetched %v after it was archived", time.Since(pushed).Round(time.Millisecond))
}
