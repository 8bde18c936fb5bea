package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/storage"
)

// The backup lease keeps backups of one repository from running at once,
// from any host. Its state is a sequence of objects
// locks/backup-<generation>.json, of which the highest generation is in
// force: a holder, or free. Every change (take, take over, release) is a
// conditional write of the next generation, a compare-and-swap: of several
// processes that saw the same state, exactly one changes it, and the
// others find the generation taken and start again or give up. The highest
// generation is never deleted, so the sequence never goes back; older ones
// are removed as they are superseded.
const leasePrefix = "locks/backup-"

// Lease is who holds (or held) the backup lease.
type Lease struct {
	BackupID string    `json:"backup_id"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Expires  time.Time `json:"expires"`
	Free     bool      `json:"free,omitempty"` // released: no one holds the lease
	// Op is what holds the lease when it is not a backup: "delete".
	Op string `json:"op,omitempty"`
}

// ErrLeaseHeld means another process holds the backup lease.
var ErrLeaseHeld = errors.New("another backup is running")

// LeaseHeldError says who holds the lease.
type LeaseHeldError struct {
	Held Lease
	Race bool // taken by another process at the same moment
}

func (e *LeaseHeldError) Error() string {
	if e.Race {
		return ErrLeaseHeld.Error() + ": the lease was taken by another process at the same moment"
	}
	h := e.Held
	what := "backup " + h.BackupID
	if h.Op != "" {
		what = h.Op
	}
	return fmt.Sprintf("%s: %s on %s (pid %d) since %s; its lease expires at %s", ErrLeaseHeld, what, h.Host, h.PID,
		h.Started.Format(time.RFC3339), h.Expires.Format(time.RFC3339))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// HeldLease is a lease this process holds.
type HeldLease struct {
	r   *Repo
	gen uint64
}

func leaseKey(gen uint64) string { return fmt.Sprintf("%s%020d.json", leasePrefix, gen) }

// AcquireLease takes the backup lease for l unless it is held. A lease
// in force is taken over only when stale(held) says so (expired, or its
// process is gone); otherwise the result is a *LeaseHeldError.
func (r *Repo) AcquireLease(ctx context.Context, l Lease, stale func(held Lease) bool) (*HeldLease, error) {
	gen, held, err := r.currentLease(ctx)
	if err != nil {
		return nil, err
	}
	if gen > 0 && !held.Free && !stale(held) {
		return nil, &LeaseHeldError{Held: held}
	}
	l.Free = false
	if err := r.writeLease(ctx, gen+1, l); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return nil, &LeaseHeldError{Race: true}
		}
		return nil, err
	}
	r.pruneLeases(ctx, gen+1)
	return &HeldLease{r: r, gen: gen + 1}, nil
}

func (r *Repo) writeLease(ctx context.Context, gen uint64, l Lease) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := r.store.PutIfAbsent(ctx, leaseKey(gen), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return fmt.Errorf("backup lease: %w", err)
	}
	return nil
}

// pruneLeases removes the generations before gen; failures only leave
// history behind.
func (r *Repo) pruneLeases(ctx context.Context, gen uint64) {
	objs, err := r.store.List(ctx, leasePrefix)
	if err != nil {
		return
	}
	for _, o := range objs {
		if g, ok := leaseGen(o.Key); ok && g < gen {
			r.store.Delete(ctx, o.Key)
		}
	}
}

func leaseGen(key string) (uint64, bool) {
	g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(key, leasePrefix), ".json"), 10, 64)
	return g, err == nil && strings.HasPrefix(key, leasePrefix)
}

// currentLease returns the highest generation present (0: none yet) and
// its lease. A generation pruned between listing and reading (a newer one
// appeared) makes it look again.
func (r *Repo) currentLease(ctx context.Context) (uint64, Lease, error) {
	for range 3 {
		gen, l, err := r.readLease(ctx)
		if !errors.Is(err, storage.ErrNotExist) {
			return gen, l, err
		}
	}
	return 0, Lease{}, errors.New("backup lease: changing too fast to read")
}

func (r *Repo) readLease(ctx context.Context) (uint64, Lease, error) {
	objs, err := r.store.List(ctx, leasePrefix)
	if err != nil {
		return 0, Lease{}, fmt.Errorf("backup lease: %w", err)
	}
	var gen uint64
	for _, o := range objs {
		if g, ok := leaseGen(o.Key); ok && g > gen {
			gen = g
		}
	}
	if gen == 0 {
		return 0, Lease{}, nil
	}
	rc, _, err := r.store.Get(ctx, leaseKey(gen))
	if err != nil {
		return 0, Lease{}, fmt.Errorf("backup lease: %w", err)
	}
	defer rc.Close()
	var l Lease
	b, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	if err == nil {
		err = json.Unmarshal(b, &l)
	}
	if err != nil {
		// An unreadable lease is treated as expired rather than blocking
		// backups forever.
		l = Lease{BackupID: "unknown"}
	}
	return gen, l, nil
}

// Release gives the lease up by writing the next generation as free. If
// that generation exists, the lease was taken over (this process was
// taken for dead) and is someone else's now: nothing is changed.
func (h *HeldLease) Release(ctx context.Context) error {
	err := h.r.writeLease(ctx, h.gen+1, Lease{Free: true})
	if errors.Is(err, storage.ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	h.r.pruneLeases(ctx, h.gen+1)
	return nil
}
