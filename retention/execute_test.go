package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage"
)

// faultyStore records what is written and deleted, and fails every call
// once budget writes and deletes have been made (a delete of many keys
// makes as many as the budget allows, then fails): a process that died
// there.
type faultyStore struct {
	storage.Store
	mu     sync.Mutex
	budget int // -1: unlimited
	ops    []string
}

var errDied = errors.New("the process died here")

// spend takes n operations from the budget and says how many may run.
func (s *faultyStore) spend(n int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.budget < 0 {
		return n, nil
	}
	if s.budget < n {
		n, s.budget = s.budget, 0
		return n, errDied
	}
	s.budget -= n
	return n, nil
}

func (s *faultyStore) dead() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.budget == 0 {
		return errDied
	}
	return nil
}

func (s *faultyStore) record(op string, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.ops = append(s.ops, op+" "+k)
	}
}

func (s *faultyStore) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if n, err := s.spend(1); n == 0 {
		return err
	}
	s.record("put", key)
	return s.Store.PutIfAbsent(ctx, key, r, size, meta)
}

func (s *faultyStore) Delete(ctx context.Context, key string) error {
	if n, err := s.spend(1); n == 0 {
		return err
	}
	s.record("delete", key)
	return s.Store.Delete(ctx, key)
}

func (s *faultyStore) DeleteMany(ctx context.Context, keys []string) error {
	n, err := s.spend(len(keys))
	s.record("delete", keys[:n]...)
	if derr := s.Store.DeleteMany(ctx, keys[:n]); derr != nil {
		return derr
	}
	return err
}

func (s *faultyStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := s.dead(); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *faultyStore) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := s.dead(); err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Store.Head(ctx, key)
}

func (s *faultyStore) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := s.dead(); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, prefix)
}

// scenario builds a repository where retain 1 deletes two backups, a
// failed one, an orphan of an earlier interrupted delete and WAL, and
// returns the options of that delete.
func scenario(t *testing.T) (*fixture, Options) {
	f := newFixture(t)
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	f.segments(1, 1, 12, t0)
	f.backup("B1", 1, 2, 3, m(2), manifest.StatusComplete)
	f.backup("B2", 1, 5, 6, m(5), manifest.StatusComplete)
	f.backup("B3", 1, 9, 10, m(9), manifest.StatusComplete)
	f.backup("F4", 1, 11, 11, m(11), manifest.StatusFailed)
	// The remains of a delete that died after the manifest went.
	f.backup("B0", 1, 1, 1, m(1), manifest.StatusComplete)
	ctx := t.Context()
	if err := f.r.MarkDeleting(ctx, "B0"); err != nil {
		t.Fatal(err)
	}
	if err := f.r.DeleteManifest(ctx, "B0"); err != nil {
		t.Fatal(err)
	}
	return f, f.options(m(60), Policy{Full: 1})
}

// TestOrder: every backup is marked deleting before anything of it goes,
// its payload goes before its manifest, its marks last; WAL goes after
// every manifest; an orphan's deleting mark goes after its other objects.
func TestOrder(t *testing.T) {
	f, o := scenario(t)
	rec := &faultyStore{Store: f.store, budget: -1}
	o.Repo = repo.New(rec)
	if _, err := Run(t.Context(), o, false); err != nil {
		t.Fatal(err)
	}
	at := func(op string) int {
		i := slices.Index(rec.ops, op)
		if i < 0 {
			t.Fatalf("no %q in %v", op, rec.ops)
		}
		return i
	}
	firstWAL, lastManifest := len(rec.ops), -1
	for i, op := range rec.ops {
		if strings.HasPrefix(op, "delete wal/") && i < firstWAL {
			firstWAL = i
		}
		if strings.HasSuffix(op, "/manifest.json") && strings.HasPrefix(op, "delete ") {
			lastManifest = i
		}
	}
	for _, id := range []string{"B1", "B2"} {
		mark, manifest := at("put backups/"+id+"/marks/deleting"), at("delete backups/"+id+"/manifest.json")
		for _, part := range []string{"part-0.tar", "part-1.tar"} {
			if p := at("delete backups/" + id + "/data/base/" + part); p < mark || p > manifest {
				t.Errorf("%s: part %s deleted at %d, not between its mark (%d) and its manifest (%d)", id, part, p, mark, manifest)
			}
		}
		if m := at("delete backups/" + id + "/marks/deleting"); m < manifest {
			t.Errorf("%s: mark removed at %d, before the manifest (%d)", id, m, manifest)
		}
	}
	if firstWAL <= lastManifest || firstWAL == len(rec.ops) {
		t.Errorf("WAL deleted from %d, the last manifest at %d: %v", firstWAL, lastManifest, rec.ops)
	}
	if at("delete backups/B0/marks/deleting") < at("delete backups/B0/data/base/part-0.tar") {
		t.Error("the orphan's deleting mark went before its payload")
	}
}

// TestInterruptedAnywhere kills the delete (every store call fails from
// then on) after each number of writes and deletes it makes, checks that
// the repository is consistent then, and that a second run finishes the
// job: the same end as one uninterrupted run.
func TestInterruptedAnywhere(t *testing.T) {
	f, o := scenario(t)
	rec := &faultyStore{Store: f.store, budget: -1}
	o.Repo = repo.New(rec)
	if _, err := Run(t.Context(), o, false); err != nil {
		t.Fatal(err)
	}
	// The steps of the delete, without the lease's release at the end.
	want, steps := f.keys(), 0
	for i, op := range rec.ops {
		if !strings.Contains(op, " locks/") {
			steps = i + 1
		}
	}
	for n := 0; n < steps; n++ {
		f, o := scenario(t)
		o.Repo = repo.New(&faultyStore{Store: f.store, budget: n})
		// The dead run's lease expires at once, so that the re-run (in
		// this same, live process) takes it over.
		o.LockTTL = time.Nanosecond
		if _, err := Run(t.Context(), o, false); err == nil {
			t.Fatalf("killed after %d of %d steps: the run succeeded", n, steps)
		}
		checkConsistent(t, f, fmt.Sprintf("killed after %d of %d steps", n, steps))
		o.Repo = f.r
		if _, err := Run(t.Context(), o, false); err != nil {
			t.Fatalf("re-run after a kill after %d steps: %v", n, err)
		}
		if got := f.keys(); !slices.Equal(got, want) {
			t.Fatalf("killed after %d steps and re-run:\n%v\nwant\n%v", n, got, want)
		}
	}
}

// checkConsistent: every backup that is not being deleted has all its
// parts and the WAL from its start to its stop, and restore's choice of
// backup (the newest complete) is one of them.
func checkConsistent(t *testing.T, f *fixture, when string) {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.Load(ctx, f.r)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	for _, m := range cat.Backups {
		if m.Status != manifest.StatusComplete {
			continue
		}
		pl, err := manifest.PayloadOf[manifest.FilesPayload](m)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		for _, part := range pl.Parts {
			rc, err := f.r.OpenPart(ctx, m.ID, part.Key)
			if err != nil {
				t.Fatalf("%s: complete backup %s lost part %s: %v", when, m.ID, part.Key, err)
			}
			rc.Close()
		}
		if !restores(cat, m) {
			t.Fatalf("%s: complete backup %s lost WAL between its start and stop", when, m.ID)
		}
	}
}

// TestProviders: what a delete does with each provider's payload outside
// the repository.
func TestProviders(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	f.segments(1, 1, 12, t0)
	withPayload := func(id string, p manifest.Provider, start uint64, payload any) {
		b := &manifest.Manifest{ID: id, Provider: p, Status: manifest.StatusComplete, Timeline: 1,
			StartLSN: 0x28 + 0x1000000*1, StopLSN: 0x100 + 0x1000000*1, StartWAL: seg(1, start), StopWAL: seg(1, start),
			StartTime: m(int(start)), StopTime: m(int(start)), SystemID: f.sysID, SegmentSize: segSize, BackupLabel: "x\n"}
		if err := b.SetPayload(payload); err != nil {
			t.Fatal(err)
		}
		f.manifest(b)
	}
	withPayload("E1", manifest.ProviderEBS, 1, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-1"}, {SnapshotID: "snap-2"}}})
	withPayload("E2", manifest.ProviderEBS, 2, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-used"}}})
	withPayload("C1", manifest.ProviderCommand, 3, manifest.CommandPayload{Snapshots: []string{"lv/snap 1", "lv/snap2"}, Command: "snap"})
	withPayload("C2", manifest.ProviderCommand, 4, manifest.CommandPayload{Snapshots: []string{"zfs@c2"}, Command: "snap"})
	withPayload("X1", manifest.ProviderExternal, 5, manifest.ExternalPayload{Orchestrator: "n2w", Snapshots: []string{"snap-n2w"}})
	// Snapshots an orchestrator took, recorded by backup-stop as an ebs
	// backup: never walsnap's to delete.
	withPayload("D1", manifest.ProviderEBS, 7, manifest.EBSPayload{Orchestrator: "dlm", Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-dlm"}}})
	withPayload("E9", manifest.ProviderEBS, 9, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-9"}}})
	api := &fakeSnapshots{
		exist: map[string]bool{"snap-n2w": true, "snap-dlm": true}, inUse: map[string]bool{"snap-used": true},
		tagged: []ebs.SnapshotInfo{
			{SnapshotID: "snap-old", Tags: map[string]string{ebs.TagBackupID: "GONE"}, StartTime: m(0)},
			{SnapshotID: "snap-new", Tags: map[string]string{ebs.TagBackupID: "WRITING"}, StartTime: m(0).Add(47 * time.Hour)},
			{SnapshotID: "snap-9", Tags: map[string]string{ebs.TagBackupID: "E9"}, StartTime: m(9)},
		},
	}
	hookOut := filepath.Join(t.TempDir(), "hook")
	o := f.options(m(0).Add(48*time.Hour), Policy{Full: 1})
	o.Snapshots = func(context.Context) (Snapshots, error) { return api, nil }
	o.CommandDelete = `printf '%s\n%s\n' "$WALSNAP_BACKUP_ID" "$WALSNAP_SNAPSHOTS" >>` + hookOut

	p, err := Run(ctx, o, false)
	if err != nil {
		t.Fatal(err)
	}
	outcome := map[string]string{}
	for _, b := range p.Backups {
		outcome[b.ID] = b.Outcome
	}
	if !slices.Equal(api.deleted, []string{"snap-1", "snap-2", "snap-old"}) {
		t.Errorf("snapshots deleted: %v, want E1's and the old orphan's", api.deleted)
	}
	if hook, _ := os.ReadFile(hookOut); string(hook) != "C1\nlv/snap 1\nlv/snap2\nC2\nzfs@c2\n" {
		t.Errorf("command.delete was given %q", hook)
	}
	if got := f.backupIDs(); got != "E2:deleting X1:deleting D1:deleting E9" {
		t.Fatalf("backups left: %s", got)
	}
	for id, want := range map[string]string{"E2": "in use", "X1": "snap-n2w, taken by n2w, still exist (walsnap never deletes them",
		"D1": "snap-dlm, taken by dlm, still exist (walsnap never deletes them", "C1": "command.delete removed"} {
		if !strings.Contains(outcome[id], want) {
			t.Errorf("%s: outcome %q, want %q", id, outcome[id], want)
		}
	}
	for _, s := range p.Snaps {
		if want := s.SnapshotID == "snap-old"; s.Delete != want {
			t.Errorf("orphan snapshot %s: delete %v", s.SnapshotID, s.Delete)
		}
	}

	// The orchestrator removed its snapshot, the AMI is gone, and no
	// command.delete: the next run finishes, and prints the references it
	// cannot delete.
	delete(api.exist, "snap-n2w")
	delete(api.exist, "snap-dlm")
	api.inUse = nil
	withPayload("C3", manifest.ProviderCommand, 6, manifest.CommandPayload{Snapshots: []string{"zfs@c3"}, Command: "snap"})
	o.CommandDelete = ""
	o.Now = o.Now.Add(time.Hour)
	withPayload("E10", manifest.ProviderEBS, 10, manifest.EBSPayload{})
	if p, err = Run(ctx, o, false); err != nil {
		t.Fatal(err)
	}
	if got := f.backupIDs(); got != "E10" {
		t.Fatalf("backups left after the second run: %s", got)
	}
	for _, b := range p.Backups {
		if b.ID == "C3" && !strings.Contains(b.Outcome, "not deleted (command.delete is not set): zfs@c3") {
			t.Errorf("C3: %q", b.Outcome)
		}
		if b.ID == "X1" && !strings.Contains(b.Outcome, "snap-n2w, taken by n2w, are gone") {
			t.Errorf("X1: %q", b.Outcome)
		}
	}
}

// TestLockShared: a delete is refused while a backup holds the lock.
func TestLockShared(t *testing.T) {
	f, o := scenario(t)
	ctx := t.Context()
	held, err := f.r.AcquireLease(ctx, repo.Lease{BackupID: "B9", Host: "elsewhere", PID: 1, Expires: time.Now().Add(time.Hour)}, func(repo.Lease) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	before := f.keys()
	if _, err := Run(ctx, o, false); !errors.Is(err, repo.ErrLeaseHeld) || !strings.Contains(err.Error(), "backup B9") {
		t.Fatalf("delete during a backup: %v", err)
	}
	if !slices.Equal(f.keys(), before) {
		t.Fatal("a refused delete changed the repository")
	}
	// A dry run needs no lock.
	if _, err := Run(ctx, o, true); err != nil {
		t.Fatal(err)
	}
	held.Release(ctx)
	if _, err := Run(ctx, o, false); err != nil {
		t.Fatal(err)
	}
}

// TestPinnedMeanwhile: a backup pinned after the plan was made is kept,
// with the WAL that makes it consistent.
func TestPinnedMeanwhile(t *testing.T) {
	f, o := scenario(t)
	ctx := t.Context()
	p, err := Make(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.r.Pin(ctx, "B1"); err != nil {
		t.Fatal(err)
	}
	if err := Execute(ctx, o, p); err != nil {
		t.Fatal(err)
	}
	if got := f.backupIDs(); got != "B1 B3" {
		t.Fatalf("backups left: %s", got)
	}
	for _, name := range []string{seg(1, 2), seg(1, 3)} {
		if !slices.Contains(f.walNames(), name) {
			t.Errorf("segment %s of the backup pinned meanwhile was deleted", name)
		}
	}
	if slices.Contains(f.walNames(), seg(1, 5)) {
		t.Error("WAL no kept backup needs survived")
	}
	var table strings.Builder
	p.WriteTable(&table)
	if !strings.Contains(table.String(), "kept: pinned while this delete ran") || !strings.Contains(table.String(), "kept: makes pinned backup B1 consistent") {
		t.Fatalf("table:\n%s", table.String())
	}
}

// TestOrphans: objects of a backup without a manifest go at once when an
// interrupted delete left them (its deleting mark is there), else once a
// day old; a named delete (--backup) leaves the others alone.
func TestOrphans(t *testing.T) {
	f, o := scenario(t)
	ctx := t.Context()
	for id, at := range map[string]time.Time{"B8": o.Now.Add(-25 * time.Hour), "B9": o.Now.Add(-23 * time.Hour)} {
		f.backup(id, 1, 11, 11, at, manifest.StatusComplete)
		if err := f.r.DeleteManifest(ctx, id); err != nil {
			t.Fatal(err)
		}
		for _, k := range f.keys() {
			if strings.HasPrefix(k, "backups/"+id+"/") {
				f.touch(k, at)
			}
		}
	}
	named := o
	named.Backup = "B1"
	p, err := Run(ctx, named, false)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, op := range p.Orphans {
		reasons[op.BackupID] = fmt.Sprint(op.Delete, " ", op.Reason)
	}
	if want := map[string]string{"B0": "true left by an interrupted delete", "B8": "false no manifest (orphans go with a policy run)",
		"B9": "false no manifest (orphans go with a policy run)"}; !maps.Equal(reasons, want) {
		t.Fatalf("named delete, orphans: %v", reasons)
	}
	p, err = Run(ctx, o, false)
	if err != nil {
		t.Fatal(err)
	}
	reasons = map[string]string{} // B0 went with the named delete
	for _, op := range p.Orphans {
		reasons[op.BackupID] = fmt.Sprint(op.Delete, " ", op.Reason)
	}
	if want := map[string]string{"B8": "true no manifest, older than a day",
		"B9": "false no manifest yet: a backup may be writing it (orphans go after a day)"}; !maps.Equal(reasons, want) {
		t.Fatalf("policy delete, orphans: %v", reasons)
	}
	var left []string
	for _, k := range f.keys() {
		if strings.HasPrefix(k, "backups/") {
			left = append(left, strings.Split(k, "/")[1])
		}
	}
	if left = slices.Compact(left); !slices.Equal(left, []string{"B3", "B9"}) {
		t.Fatalf("backups/ holds %v, want B3 and the young orphan B9", left)
	}
}
