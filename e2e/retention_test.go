package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// repoState is what a repository holds, read through internal/repo: the
// tests compute what retention must leave from it, independently of the
// code under test.
type repoState struct {
	SegmentSize uint64
	Backups     []*manifest.Manifest
	Objects     []repo.BackupObject
	WAL         []walObject
	History     map[uint32][]wal.HistoryEntry // by timeline
}

// walObject is one WAL file of a repoState.
type walObject struct {
	Name    string
	Kind    wal.FileKind
	TLI     uint32
	No      uint64 // segment number (not for history files)
	ModTime time.Time
}

// id names an object of the state: "wal/<name>" or its backup object key.
func (w walObject) id() string { return "wal/" + w.Name }

func readRepoState(ctx context.Context, r *repo.Repo) (repoState, error) {
	var s repoState
	ident, err := r.Identity(ctx)
	if err != nil {
		return s, err
	}
	s.SegmentSize, s.History = ident.SegmentSize, map[uint32][]wal.HistoryEntry{}
	if s.Backups, _, err = r.Backups(ctx); err != nil {
		return s, err
	}
	if s.Objects, err = r.BackupObjects(ctx, ""); err != nil {
		return s, err
	}
	files, err := r.ListWAL(ctx, 0)
	if err != nil {
		return s, err
	}
	for _, f := range files {
		o := walObject{Name: f.Name, Kind: f.Kind, TLI: f.TLI, ModTime: f.ModTime}
		if f.Kind == wal.KindHistory {
			data, err := r.ReadWAL(ctx, f.Name)
			if err != nil {
				return s, err
			}
			if s.History[f.TLI], err = wal.ParseHistory(data); err != nil {
				return s, err
			}
		} else {
			fn, err := wal.ParseFileName(f.Name, s.SegmentSize)
			if err != nil {
				return s, err
			}
			o.No = fn.Segment.No
		}
		s.WAL = append(s.WAL, o)
	}
	return s, nil
}

// ids lists every object of the state.
func (s repoState) ids() []string {
	var out []string
	for _, o := range s.Objects {
		out = append(out, o.Key)
	}
	for _, w := range s.WAL {
		out = append(out, w.id())
	}
	slices.Sort(out)
	return out
}

// backup returns the manifest of id.
func (s repoState) backup(t *testing.T, id string) *manifest.Manifest {
	t.Helper()
	i := slices.IndexFunc(s.Backups, func(m *manifest.Manifest) bool { return m.ID == id })
	if i < 0 {
		t.Fatalf("no backup %s in the repository", id)
	}
	return s.Backups[i]
}

// state reads the cluster's repository. An S3 one is read in a child
// process (this test binary, running TestRetentionRepoReader) whose
// environment has the bucket's credentials: the SDK takes them only from
// the environment, which a parallel test cannot change.
func (c *cluster) state(t *testing.T) repoState {
	t.Helper()
	if c.repoDir != "" {
		s, err := readRepoState(t.Context(), c.repo(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	out := filepath.Join(t.TempDir(), "state.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRetentionRepoReader$", "-test.count=1")
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Env = append(cmd.Env, "WALSNAP_TEST_READ_CONFIG="+c.cfg, "WALSNAP_TEST_READ_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("read the repository: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var s repoState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRetentionRepoReader is the child process of cluster.state.
func TestRetentionRepoReader(t *testing.T) {
	path := os.Getenv("WALSNAP_TEST_READ_CONFIG")
	if path == "" {
		t.Skip("the child process of the retention tests that read an S3 repository")
	}
	cfg := config.Default()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), cfg.Repo, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := readRepoState(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("WALSNAP_TEST_READ_OUT"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// expectRetain computes, from s alone, what `delete --retain n` leaves,
// as issue 9 states the rules: the newest n complete backups (and pinned
// ones) with their objects; for each kept backup on timeline T starting
// in segment S, the WAL of T from S on and all WAL of every timeline that
// branched off T at or after S (read from the history files); a pinned
// backup not among them keeps its start to its stop; every history file;
// and whatever was archived after the oldest kept backup began (WAL newer
// than the newest backup, and branches newer than every kept backup).
func expectRetain(t *testing.T, s repoState, n int) map[string]bool {
	t.Helper()
	var complete []*manifest.Manifest
	for _, m := range s.Backups {
		if m.Status == manifest.StatusComplete {
			complete = append(complete, m)
		}
	}
	slices.SortFunc(complete, func(a, b *manifest.Manifest) int { return a.StopTime.Compare(b.StopTime) })
	onward := complete[max(0, len(complete)-n):]
	keepBackup := map[string]bool{}
	type run struct {
		tli      uint32
		from, to uint64
	}
	var runs []run
	segOf := func(name string) uint64 {
		seg, err := wal.ParseSegmentName(name, s.SegmentSize)
		if err != nil {
			t.Fatal(err)
		}
		return seg.No
	}
	oldest := onward[0].StartTime
	for _, m := range onward {
		keepBackup[m.ID] = true
		if m.StartTime.Before(oldest) {
			oldest = m.StartTime
		}
		start := segOf(m.StartWAL)
		runs = append(runs, run{m.Timeline, start, ^uint64(0)})
		for tli, entries := range s.History {
			// tli descends from m's timeline, branching off it at or after
			// its start segment, if an entry of its history leaves m's
			// timeline there.
			for _, e := range entries {
				if e.ParentTLI == m.Timeline && uint64(e.SwitchPoint)/s.SegmentSize >= start {
					runs = append(runs, run{tli, 0, ^uint64(0)})
				}
			}
		}
	}
	for _, m := range complete {
		if m.Pinned && !keepBackup[m.ID] {
			keepBackup[m.ID] = true
			runs = append(runs, run{m.Timeline, segOf(m.StartWAL), segOf(m.StopWAL)})
		}
	}
	keep := map[string]bool{}
	for _, o := range s.Objects {
		if keepBackup[o.BackupID] {
			keep[o.Key] = true
		}
	}
	for _, w := range s.WAL {
		kept := w.Kind == wal.KindHistory || !w.ModTime.Before(oldest)
		for _, r := range runs {
			kept = kept || w.Kind != wal.KindHistory && w.TLI == r.tli && w.No >= r.from && w.No <= r.to
		}
		if kept {
			keep[w.id()] = true
		}
	}
	return keep
}

// backupOn takes a backup (--fast) of the server on sock:port and returns
// its id.
func (c *cluster) backupOn(t *testing.T, sock string, port int, args ...string) string {
	t.Helper()
	out := c.walsnap(t, append([]string{"backup", "--fast", "--pg-host", sock, "--pg-port", strconv.Itoa(port)}, args...)...)
	return strings.Fields(out)[1]
}

// TestRetentionTwoTimelines: five backups on two timelines of a real
// PostgreSQL archiving into MinIO — three on timeline 1, two on timeline 2
// of a restored copy promoted to archive into the same repository, while
// the old primary goes on archiving timeline 1 — then `delete --retain 2
// --confirm`: what is left is, object by object, what the rules computed
// here from the manifests and history files leave. A restore from the
// oldest kept backup to a point after the newest still succeeds, and a
// target before it is refused with the earliest reachable point.
func TestRetentionTwoTimelines(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{major: 15})
	p := c.pg
	p.Exec(t, "CREATE TABLE t (id int)")
	var ids []string
	for i := range 3 {
		p.Exec(t, fmt.Sprintf("INSERT INTO t SELECT generate_series(%d, %d)", i*100+1, i*100+100))
		c.archiveAll(t)
		ids = append(ids, c.backupOn(t, p.SockDir, p.Port))
	}
	p.Exec(t, "INSERT INTO t SELECT generate_series(301, 400)")
	c.archiveAll(t)
	// A copy restored from the newest backup, promoted: it archives
	// timeline 2 into the same repository.
	r := c.restore(t, "", "--archive-mode", "preserve")
	if tl := r.query("SELECT timeline_id::text FROM pg_control_checkpoint()"); tl != "2" {
		t.Fatalf("the promoted copy is on timeline %s, want 2", tl)
	}
	// The old primary goes on on timeline 1, an abandoned branch now.
	p.Exec(t, "INSERT INTO t SELECT generate_series(401, 500)")
	c.archiveAll(t)
	r.exec("CREATE TABLE t2 (id int)")
	r.archiveAll()
	ids = append(ids, c.backupOn(t, r.sock, r.port))
	p.Exec(t, "INSERT INTO t SELECT generate_series(501, 600)") // archived after the oldest kept backup began
	c.archiveAll(t)
	r.exec("INSERT INTO t2 SELECT generate_series(1, 10)")
	r.archiveAll()
	ids = append(ids, c.backupOn(t, r.sock, r.port))
	r.exec("INSERT INTO t2 SELECT generate_series(11, 42)")
	time.Sleep(1100 * time.Millisecond) // the target, a clear second after the commit
	target := r.query("SELECT now()::text")
	time.Sleep(1100 * time.Millisecond) // and later rows a clear second after it
	r.exec("INSERT INTO t2 SELECT generate_series(43, 60)")
	r.archiveAll()

	before := c.state(t)
	keep := expectRetain(t, before, 2)
	// The expectation exercises every rule.
	b4 := before.backup(t, ids[3])
	lost := func(tli uint32, pred func(w walObject) bool) (gone, kept int) {
		for _, w := range before.WAL {
			if w.TLI == tli && w.Kind == wal.KindSegment && pred(w) {
				if keep[w.id()] {
					kept++
				} else {
					gone++
				}
			}
		}
		return gone, kept
	}
	if gone, _ := lost(1, func(w walObject) bool { return w.ModTime.Before(b4.StartTime) }); gone == 0 {
		t.Fatal("the expectation deletes no WAL of timeline 1")
	}
	if _, kept := lost(1, func(w walObject) bool { return w.ModTime.After(b4.StartTime) }); kept == 0 {
		t.Fatal("the expectation keeps no WAL of timeline 1 archived after the oldest kept backup")
	}
	if gone, kept := lost(2, func(walObject) bool { return true }); gone == 0 || kept == 0 {
		t.Fatalf("the expectation deletes %d and keeps %d segments of timeline 2, want some of each", gone, kept)
	}

	dry := c.walsnap(t, "delete", "--retain", "2")
	for _, want := range []string{ids[0] + " ", "delete: expired", "kept: newest 2", "kept: timeline history: never deleted", "dry run: would delete 3 backups"} {
		if !strings.Contains(dry, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, dry)
		}
	}
	if got := c.state(t).ids(); !slices.Equal(got, before.ids()) {
		t.Fatal("the dry run changed the repository")
	}

	// The old primary archives while the delete runs.
	del := c.command("delete", "--retain", "2", "--confirm")
	var delOut strings.Builder
	del.Stdout, del.Stderr = &delOut, &delOut
	if err := del.Start(); err != nil {
		t.Fatal(err)
	}
	p.Exec(t, "INSERT INTO t SELECT generate_series(601, 700)")
	c.archiveAll(t)
	if err := del.Wait(); err != nil {
		t.Fatalf("delete --retain 2 --confirm: %v\n%s", err, delOut.String())
	}
	t.Logf("delete:\n%s", delOut.String())
	if failed := p.QueryString(t, "SELECT failed_count::text FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("archiving failed %s times during the delete", failed)
	}

	after := c.state(t)
	old := map[string]bool{}
	for _, id := range before.ids() {
		old[id] = true
	}
	var want []string
	for _, id := range after.ids() {
		if !old[id] { // archived during the delete: newer than everything
			want = append(want, id)
		}
	}
	for id := range keep {
		want = append(want, id)
	}
	slices.Sort(want)
	if got := after.ids(); !slices.Equal(got, want) {
		t.Fatalf("after delete --retain 2:\n%s", diff(got, want))
	}

	// Restore from the oldest kept backup to a point after the newest.
	r2 := c.restore(t, "", "--backup", ids[3], "--target-time", target, "--target-action", "promote")
	if got := r2.query("SELECT count(*)::text FROM t2"); got != "42" {
		t.Fatalf("restored to a point after the newest backup: t2 has %s rows, want 42", got)
	}
	// Before the oldest kept backup: refused, naming the earliest point.
	early := before.backup(t, ids[2]).StopTime.UTC().Format("2006-01-02 15:04:05.999999+00")
	c.fail(t, "earliest reachable point is "+b4.StopTime.UTC().Format("2006-01-02 15:04:05"),
		"restore", "--pgdata", filepath.Join(c.work, "refused"), "--dry-run", "--target-time", early)
	if list := c.walsnap(t, "backup-list"); !strings.Contains(list, "oldest recovery point: "+b4.StopTime.UTC().Format("2006-01-02 15:04:05Z")+" (backup "+ids[3]) {
		t.Fatalf("backup-list:\n%s", list)
	}
}

// diff shows what got lacks and has too many against want.
func diff(got, want []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "  missing %s\n", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "  unexpected %s\n", g)
		}
	}
	return b.String()
}

// rows inserts rows from+1..to into t and archives them.
func (c *cluster) rows(t *testing.T, from, to int) {
	t.Helper()
	c.pg.Exec(t, fmt.Sprintf("INSERT INTO t SELECT generate_series(%d, %d)", from+1, to))
	c.archiveAll(t)
}

// has reports whether s holds WAL file name.
func (s repoState) has(name string) bool {
	return slices.ContainsFunc(s.WAL, func(w walObject) bool { return w.Name == name })
}

// segmentsOf lists the segments from m's start to its stop.
func segmentsOf(t *testing.T, s repoState, m *manifest.Manifest) []string {
	t.Helper()
	start, err := wal.ParseSegmentName(m.StartWAL, s.SegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seg := start; ; seg = seg.Next() {
		out = append(out, seg.Name(s.SegmentSize))
		if seg.Name(s.SegmentSize) == m.StopWAL {
			return out
		}
	}
}

// TestRetentionPinsAndRefusals: a pinned backup (backup --pin) survives
// delete --retain 1 and stays restorable, with the WAL from its start to
// its stop and not the WAL after it; backup-pin and --unpin; backup-list
// shows pins and the oldest recovery point; delete refuses without a
// policy, a pinned --backup (even with --force), the backup that keeps the
// window restorable (unless --force), an unknown one, and runs only when
// no backup holds the lock.
func TestRetentionPinsAndRefusals(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true, config: "backup:\n  wal_timeout: 1m\n"})
	p := c.pg
	p.Exec(t, "CREATE TABLE t (id int)")
	c.rows(t, 0, 100)
	b1 := c.backupOn(t, p.SockDir, p.Port)
	c.rows(t, 100, 200)
	b2 := c.backupOn(t, p.SockDir, p.Port, "--pin")
	c.rows(t, 200, 300)
	c.rows(t, 300, 400)
	b3 := c.backupOn(t, p.SockDir, p.Port)
	c.rows(t, 400, 500)

	list := c.walsnap(t, "backup-list")
	if !regexpLine(list, b2+`\s.*complete\s+pinned`) || regexpLine(list, b1+`\s.*pinned`) ||
		!strings.Contains(list, "oldest recovery point: ") || !strings.Contains(list, "(backup "+b1) {
		t.Fatalf("backup-list:\n%s", list)
	}

	// Refusals.
	out, err := c.run("delete")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, "no retention policy") {
		t.Fatalf("delete without a policy: %v\n%s", err, out)
	}
	c.fail(t, "--force goes with --backup", "delete", "--retain", "1", "--force")
	c.fail(t, "is pinned", "delete", "--backup", b2, "--force", "--confirm")
	c.fail(t, "no such backup", "delete", "--backup", "20000101T000000Z", "--confirm")
	// A window older than every backup: the oldest keeps it restorable.
	c.fail(t, "only backup that restores to the start of the retention window", "delete", "--backup", b1, "--window", "1000d", "--confirm")
	if plan := c.walsnap(t, "delete", "--backup", b1, "--window", "1000d", "--force"); !strings.Contains(plan, "delete: named by --backup") {
		t.Fatalf("--force:\n%s", plan)
	}
	c.fail(t, "no such backup", "backup-pin", "20000101T000000Z")
	c.walsnap(t, "backup-pin", b3)
	if list := c.walsnap(t, "backup-list"); !regexpLine(list, b3+`\s.*pinned`) {
		t.Fatalf("backup-pin did not pin:\n%s", list)
	}
	c.walsnap(t, "backup-pin", "--unpin", b3)
	if list := c.walsnap(t, "backup-list"); regexpLine(list, b3+`\s.*pinned`) {
		t.Fatalf("backup-pin --unpin did not unpin:\n%s", list)
	}
	// The lock: a backup in progress (backup-start) keeps delete out, on
	// this host by the local lock (--pgdata) and from anywhere by the
	// repository lease.
	socket := filepath.Join(c.work, "hold.sock")
	c.walsnap(t, "backup-start", "--socket", socket, "--fast")
	c.fail(t, "another backup is running on this host", "delete", "--pgdata", p.DataDir, "--retain", "1", "--confirm")
	c.fail(t, "another backup is running: backup ", "delete", "--retain", "1", "--confirm")
	c.walsnap(t, "backup-stop", "--socket", socket, "--abort")

	type jsonPlan struct {
		Backups []struct {
			ID     string
			Delete bool
			Reason string
		}
		Done   bool
		Totals struct{ Backups int }
	}
	fates := func(out string) (jsonPlan, string) {
		t.Helper()
		var jp jsonPlan
		if err := json.Unmarshal([]byte(out), &jp); err != nil {
			t.Fatalf("delete --json: %v\n%s", err, out)
		}
		var f []string
		for _, b := range jp.Backups {
			f = append(f, fmt.Sprintf("%s:%v:%s", b.ID, b.Delete, b.Reason))
		}
		return jp, strings.Join(f, " ")
	}
	want := fmt.Sprintf("%s:true:expired %s:false:pinned %s:false:newest 1", b1, b2, b3)
	if jp, got := fates(c.walsnap(t, "delete", "--retain", "1", "--json")); got != want || jp.Done {
		t.Fatalf("delete --json (dry run): %s, done %v; want %s", got, jp.Done, want)
	}
	before := c.state(t)
	if jp, got := fates(c.walsnap(t, "delete", "--pgdata", p.DataDir, "--retain", "1", "--confirm", "--json")); got != want || !jp.Done || jp.Totals.Backups != 1 {
		t.Fatalf("delete --confirm --json: %s, done %v, %d backups deleted", got, jp.Done, jp.Totals.Backups)
	}
	after := c.state(t)
	var left []string
	for _, m := range after.Backups {
		left = append(left, m.ID)
	}
	if !slices.Equal(left, []string{b2, b3}) {
		t.Fatalf("backups left %v, want the pinned %s and the newest %s", left, b2, b3)
	}
	// The pinned backup keeps its start to its stop, not the WAL after.
	m2, m3 := before.backup(t, b2), before.backup(t, b3)
	for _, seg := range segmentsOf(t, before, m2) {
		if !after.has(seg) {
			t.Errorf("segment %s of pinned backup %s deleted", seg, b2)
		}
	}
	between := 0
	for _, w := range before.WAL {
		if w.Kind == wal.KindSegment && w.TLI == 1 && w.Name > m2.StopWAL && w.Name < m3.StartWAL {
			between++
			if after.has(w.Name) {
				t.Errorf("segment %s between the pinned backup and the next kept one survived", w.Name)
			}
		}
	}
	if between == 0 {
		t.Fatal("no WAL between the pinned backup and the newest: the test shows nothing")
	}
	r := c.restore(t, "", "--backup", b2, "--target-immediate", "--target-action", "promote")
	if got := r.query("SELECT count(*)::text FROM t"); got != "200" {
		t.Fatalf("the pinned backup restored with %s rows, want 200", got)
	}
}

// regexpLine reports whether a line of text matches re.
func regexpLine(text, re string) bool {
	return regexp.MustCompile(`(?m)^` + re).MatchString(text)
}

// TestRetentionEBS: delete with the ebs provider (moto, behind the EC2
// proxy): the expired backups' snapshots are deleted, the kept one's
// untouched; a snapshot EC2 refuses to delete as in use keeps its backup
// as deleting (never restored) until a later run can delete it; a
// snapshot tagged for a backup without a manifest is reported (it goes a
// day later: see retention.TestEBS).
func TestRetentionEBS(t *testing.T) {
	t.Parallel()
	s := newEBSSetup(t, "")
	s.deleteSnapshotsLater(t)
	ctx := t.Context()
	var ids []string
	for range 3 {
		out := s.walsnap(t, "backup", "--fast")
		ids = append(ids, strings.Fields(out)[1])
	}
	snaps := map[string][]string{}
	for _, id := range ids {
		m, err := s.repo(t).Manifest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p, err := manifest.PayloadOf[manifest.EBSPayload](m)
		if err != nil || len(p.Snapshots) != 2 {
			t.Fatalf("backup %s: %+v %v", id, p, err)
		}
		for _, sn := range p.Snapshots {
			snaps[id] = append(snaps[id], sn.SnapshotID)
		}
	}
	ident, err := s.repo(t).Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := s.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(s.vols[0]), TagSpecifications: []types.TagSpecification{{
		ResourceType: types.ResourceTypeSnapshot, Tags: []types.Tag{
			{Key: aws.String("walsnap:backup-id"), Value: aws.String("20000101T000000Z-ghost")},
			{Key: aws.String("walsnap:system-id"), Value: aws.String(strconv.FormatUint(ident.SystemID, 10))}}}}})
	if err != nil {
		t.Fatal(err)
	}
	inUse := snaps[ids[0]][0]
	s.proxy.Set(func(_ *http.Request, form url.Values) string {
		if isCall(form, "DeleteSnapshot") && form.Get("SnapshotId") == inUse {
			return "InvalidSnapshot.InUse"
		}
		return ""
	}, nil)

	out := s.walsnap(t, "delete", "--retain", "1", "--confirm")
	if !strings.Contains(out, "kept as deleting: delete snapshot "+inUse) || !strings.Contains(out, aws.ToString(ghost.SnapshotId)) ||
		!strings.Contains(out, "kept: its backup has no manifest yet") {
		t.Fatalf("delete:\n%s", out)
	}
	exists := func() map[string]bool {
		got := map[string]bool{}
		for _, sn := range s.snapshotsOf(t) {
			got[aws.ToString(sn.SnapshotId)] = true
		}
		return got
	}
	left := exists()
	for id, want := range map[string][]bool{ids[0]: {true, false}, ids[1]: {false, false}, ids[2]: {true, true}} {
		for i, sn := range snaps[id] {
			if left[sn] != want[i] {
				t.Errorf("backup %s snapshot %s: exists %v, want %v", id, sn, left[sn], want[i])
			}
		}
	}
	if !left[aws.ToString(ghost.SnapshotId)] {
		t.Error("a snapshot younger than a day, of a backup without a manifest, was deleted")
	}
	if list := s.walsnap(t, "backup-list"); !regexpLine(list, ids[0]+`\s.*deleting`) || strings.Contains(list, ids[1]) {
		t.Fatalf("backup-list after the delete:\n%s", list)
	}
	s.fail(t, "being deleted", "restore", "--pgdata", filepath.Join(s.work, "r"), "--dry-run", "--backup", ids[0])

	// The AMI is gone: the next run finishes the backup.
	s.proxy.Set(nil, nil)
	s.walsnap(t, "delete", "--retain", "1", "--confirm")
	if left := exists(); left[inUse] {
		t.Fatal("the snapshot no longer in use was not deleted")
	}
	if list := s.walsnap(t, "backup-list"); strings.Contains(list, ids[0]) || !strings.Contains(list, ids[2]) {
		t.Fatalf("backup-list after the second delete:\n%s", list)
	}
}

// TestRetentionKilled kills `delete --confirm` (SIGKILL) at random moments,
// again and again, each time from the same repository (a copy of the
// local repository is put back between rounds): after every kill the
// repository is consistent (each complete backup has all its parts and the
// WAL from its start to its stop, and a backup marked deleting is never
// restored), and the next run goes on; once one finishes, exactly the kept
// backups remain, nothing of the others, and each kept one restores.
func TestRetentionKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true, config: "backup:\n  wal_timeout: 1m\n"})
	p := c.pg
	p.Exec(t, "CREATE TABLE t (id int)")
	var ids []string
	for i := range 4 {
		// WAL segments between the backups, for the delete to work on.
		for j := range 6 {
			p.Exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d)", -(i*100+j+1)))
			p.Exec(t, "SELECT pg_switch_wal()")
		}
		p.Exec(t, "DELETE FROM t WHERE id < 0")
		c.rows(t, i*100, i*100+100)
		ids = append(ids, c.backupOn(t, p.SockDir, p.Port))
	}
	saved := filepath.Join(c.work, "repo-saved")
	if out, err := exec.Command("cp", "-a", c.repoDir, saved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	putBack := func() {
		t.Helper()
		if out, err := exec.Command("sh", "-c", `rm -rf "$1" && cp -a "$2" "$1"`, "sh", c.repoDir, saved).CombinedOutput(); err != nil {
			t.Fatalf("put the repository back: %v %s", err, out)
		}
	}
	deleteCmd := func() (*exec.Cmd, *strings.Builder) {
		cmd := c.command("delete", "--pgdata", p.DataDir, "--retain", "2", "--confirm")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		return cmd, &out
	}
	checkEnd := func(round int) {
		t.Helper()
		s := c.state(t)
		var left []string
		for _, m := range s.Backups {
			left = append(left, m.ID+":"+m.Status)
		}
		if !slices.Equal(left, []string{ids[2] + ":complete", ids[3] + ":complete"}) {
			t.Fatalf("round %d: backups left: %v", round, left)
		}
		for _, o := range s.Objects {
			if o.BackupID != ids[2] && o.BackupID != ids[3] || o.Mark != "" {
				t.Errorf("round %d: left behind: %s", round, o.Key)
			}
		}
	}
	// Round 0, uninterrupted, says how long a delete takes.
	initial := c.state(t).ids()
	start := time.Now()
	if cmd, out := deleteCmd(); cmd.Run() != nil {
		t.Fatalf("delete:\n%s", out.String())
	}
	full := time.Since(start)
	checkEnd(0)
	final := c.state(t).ids()

	// The first run of each round, which has the whole delete to do, is
	// killed at a random moment between lo and hi after its start. Both
	// adapt, to aim where a delete deletes: a run that finished first, or
	// a kill after it had deleted everything, lowers hi; a kill before it
	// had changed anything raises lo. Each retry, with less to do, is
	// killed before hi. Every fourth round instead kills its first run on
	// an event: the first object it removes (after its deleting mark, with
	// the rest of the delete, each step fsynced, still to do), so that
	// some kill certainly lands midway however loaded the machine is.
	lo, hi := time.Duration(0), full
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	kills, midway := 0, 0
	for round := 1; round <= 12; round++ {
		putBack()
		for tries := 0; ; tries++ {
			onEvent := tries == 0 && round%4 == 1
			var removed <-chan struct{}
			if onEvent {
				removed = firstRemoval(t, c.repoDir, "backups", "wal")
			}
			cmd, out := deleteCmd()
			began := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ended := make(chan error, 1)
			go func() { ended <- cmd.Wait() }()
			delay := time.Duration(rng.Int64N(int64(hi) + 1)) // a retry has less to do
			if tries == 0 {
				delay = lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
			}
			kill := time.After(delay)
			switch {
			case onEvent:
				kill = nil
			case tries == 10:
				kill = nil // enough: let it finish
			}
			killed := false
			select {
			case err := <-ended:
				if err != nil {
					t.Fatalf("delete: %v\n%s", err, out.String())
				}
				if took := time.Since(began); tries == 0 && !onEvent && took < hi {
					hi = max(took, lo+time.Millisecond)
				}
			case <-kill:
				cmd.Process.Kill()
				<-ended
				kills, killed = kills+1, true
			case <-removed:
				cmd.Process.Kill()
				<-ended
				kills, killed = kills+1, true
			}
			s := c.state(t)
			switch ids := s.ids(); {
			case !killed:
			case onEvent && !slices.Equal(ids, final):
				midway++ // (it may, on a loaded machine, have finished first)
			case onEvent:
			case tries == 0 && slices.Equal(ids, initial): // too early
				lo = min(delay, hi-time.Millisecond)
			case tries == 0 && slices.Equal(ids, final): // too late
				hi = max(delay, lo+time.Millisecond)
			case !slices.Equal(ids, initial) && !slices.Equal(ids, final):
				midway++
			}
			deleting := 0
			for _, m := range s.Backups {
				switch m.Status {
				case manifest.StatusComplete:
					checkBackupWhole(t, s, m)
				case manifest.StatusDeleting:
					if deleting++; deleting == 1 {
						c.fail(t, "being deleted", "restore", "--pgdata", filepath.Join(c.work, "r"), "--dry-run", "--backup", m.ID)
					}
				}
			}
			if !killed {
				break
			}
		}
		checkEnd(round)
	}
	t.Logf("%d kills, %d of which left a delete half done (an uninterrupted delete takes %s; the kills came at last between %s and %s)", kills, midway, full, lo, hi)
	if midway == 0 {
		t.Fatal("no kill left a delete half done: the test showed nothing")
	}
	for i, id := range ids[2:] {
		t.Run("restore "+id, func(t *testing.T) {
			t.Parallel()
			r := c.restore(t, "", "--backup", id, "--target-immediate", "--target-action", "promote")
			if got, want := r.query("SELECT count(*)::text FROM t"), strconv.Itoa(300+100*i); got != want {
				t.Fatalf("backup %s restored with %s rows, want %s", id, got, want)
			}
		})
	}
}

// firstRemoval watches the directories below root/sub (for each sub, as
// they are now) and closes the channel it returns at the first file
// removed from any of them.
func firstRemoval(t *testing.T, root string, subs ...string) <-chan struct{} {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	t.Cleanup(func() { f.Close() })
	for _, sub := range subs {
		err := filepath.WalkDir(filepath.Join(root, sub), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			_, err = unix.InotifyAddWatch(fd, path, unix.IN_DELETE)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	removed := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		if n, err := f.Read(buf); err == nil && n > 0 {
			close(removed)
		}
	}()
	return removed
}

// checkBackupWhole fails t unless complete backup m has every part its
// manifest records and the WAL from its start to its stop.
func checkBackupWhole(t *testing.T, s repoState, m *manifest.Manifest) {
	t.Helper()
	p, err := manifest.PayloadOf[manifest.FilesPayload](m)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range p.Parts {
		if !slices.ContainsFunc(s.Objects, func(o repo.BackupObject) bool { return o.Key == part.Key }) {
			t.Fatalf("complete backup %s lost part %s", m.ID, part.Key)
		}
	}
	for _, seg := range segmentsOf(t, s, m) {
		if !s.has(seg) {
			t.Fatalf("complete backup %s lost segment %s", m.ID, seg)
		}
	}
}

// TestSystemdUnits: the shipped backup, delete and drill units and their timers
// are valid for systemd (systemd-analyze verify, without a warning), and
// what each service runs is a walsnap command line (pointed at the binary
// under test, it answers --help).
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testrig.Unavailable(t, "systemd-analyze: %v", err)
	}
	bin := testrig.Walsnap(t)
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"walsnap-backup.service", "walsnap-backup.timer", "walsnap-delete.service", "walsnap-delete.timer", "walsnap-drill.service", "walsnap-drill.timer"} {
		data, err := os.ReadFile(filepath.Join("..", "scripts", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/walsnap", bin)
		for line := range strings.Lines(text) {
			cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart=")
			if !ok {
				continue
			}
			args := strings.Fields(cmd)
			if out, err := exec.Command(args[0], append(args[1:], "--help")...).CombinedOutput(); err != nil || args[0] != bin {
				t.Errorf("%s runs %q: %v\n%s", name, cmd, err, out)
			}
		}
		units = append(units, filepath.Join(dir, name))
		if err := os.WriteFile(units[len(units)-1], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
