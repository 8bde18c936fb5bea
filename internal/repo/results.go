package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/storage"
)

// Results of the repository's own checks (walsnap verify, walsnap drill)
// live in the repository, so that every host and every `walsnap status`
// sees the same last result:
//
//	status/<kind>/<generation>.json
//
// The generations of a kind form a sequence whose highest member is the
// latest result. A writer takes the next generation with a conditional
// write: of two writers that saw the same latest result, one gets the
// next generation and the other the one after, and neither overwrites
// the other. The newest resultsKept generations are kept, older ones
// removed.
const statusDir = "status/"

// resultsKept is how many results of a kind are kept.
const resultsKept = 10

// ResultKind names a kind of stored result.
type ResultKind string

// Result kinds.
const (
	ResultVerify ResultKind = "verify" // the outcome of walsnap verify
	ResultDrill  ResultKind = "drill"  // the outcome of walsnap drill
)

// ErrNoResult means the repository holds no result of that kind yet.
var ErrNoResult = errors.New("no result stored yet")

// StoredResult is a result as the repository holds it.
type StoredResult struct {
	Generation uint64
	Stored     time.Time // when the store received it
	Data       []byte
}

func resultPrefix(kind ResultKind) string { return statusDir + string(kind) + "/" }

func resultKey(kind ResultKind, gen uint64) string {
	return fmt.Sprintf("%s%020d.json", resultPrefix(kind), gen)
}

// resultGenerations lists the generations of kind that are stored.
func (r *Repo) resultGenerations(ctx context.Context, kind ResultKind) ([]storage.ObjectInfo, []uint64, error) {
	objs, err := r.store.List(ctx, resultPrefix(kind))
	if err != nil {
		return nil, nil, fmt.Errorf("list %s results: %w", kind, err)
	}
	var infos []storage.ObjectInfo
	var gens []uint64
	for _, o := range objs {
		name, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, resultPrefix(kind)), ".json")
		g, err := strconv.ParseUint(name, 10, 64)
		if ok && err == nil && o.Key == resultKey(kind, g) {
			infos, gens = append(infos, o), append(gens, g)
		}
	}
	return infos, gens, nil
}

// PutResult stores data as the latest result of kind and returns its
// generation. It never replaces a stored result: a generation found taken
// (by a writer that got there first) makes it take the next one.
func (r *Repo) PutResult(ctx context.Context, kind ResultKind, data []byte) (uint64, error) {
	_, gens, err := r.resultGenerations(ctx, kind)
	if err != nil {
		return 0, err
	}
	next := uint64(1)
	if len(gens) > 0 {
		next = gens[len(gens)-1] + 1 // listed in key order: the highest is last
	}
	for tries := 0; ; tries, next = tries+1, next+1 {
		err = r.store.PutIfAbsent(ctx, resultKey(kind, next), bytes.NewReader(data), int64(len(data)), nil)
		if errors.Is(err, storage.ErrExists) && tries < 100 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("store the %s result: %w", kind, err)
		}
		break
	}
	for _, g := range gens {
		if g+resultsKept <= next {
			r.store.Delete(ctx, resultKey(kind, g)) // a failure only leaves history behind
		}
	}
	return next, nil
}

// LatestResult returns the latest stored result of kind, or an error
// matching ErrNoResult.
func (r *Repo) LatestResult(ctx context.Context, kind ResultKind) (StoredResult, error) {
	infos, gens, err := r.resultGenerations(ctx, kind)
	if err != nil {
		return StoredResult{}, err
	}
	if len(gens) == 0 {
		return StoredResult{}, fmt.Errorf("%s: %w", kind, ErrNoResult)
	}
	last := len(gens) - 1
	rc, _, err := r.store.Get(ctx, infos[last].Key)
	if err != nil {
		return StoredResult{}, fmt.Errorf("read the %s result: %w", kind, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return StoredResult{}, fmt.Errorf("read the %s result: %w", kind, err)
	}
	return StoredResult{Generation: gens[last], Stored: infos[last].ModTime, Data: data}, nil
}

// ProbeWrite proves that the repository takes, keeps and gives back an
// object written the way every object is (with the configured storage
// class and server-side encryption): it writes a small object of random
// bytes under status/, reads it back, compares, and deletes it.
func (r *Repo) ProbeWrite(ctx context.Context) error {
	data := make([]byte, 64)
	rand.Read(data)
	host, _ := os.Hostname()
	key := fmt.Sprintf("%sprobe-%s-%d-%s", statusDir, strings.ReplaceAll(host, "/", "_"), os.Getpid(), hex.EncodeToString(data[:6]))
	if err := r.store.PutIfAbsent(ctx, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return fmt.Errorf("write a test object: %w", err)
	}
	rc, _, err := r.store.Get(ctx, key)
	if err == nil {
		var got []byte
		got, err = io.ReadAll(io.LimitReader(rc, 1024))
		rc.Close()
		if err == nil && !bytes.Equal(got, data) {
			err = fmt.Errorf("got %d bytes back, not the %d written", len(got), len(data))
		}
	}
	if derr := r.store.Delete(ctx, key); err == nil && derr != nil {
		return fmt.Errorf("delete the test object %s: %w", key, derr)
	}
	if err != nil {
		return fmt.Errorf("read the test object back: %w", err)
	}
	return nil
}
