package inspect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/storage/fs"
)

// branched is a repository with a timeline switch: timeline 1 holds
// segments 1..10, timeline 2 branched off it inside segment 8 and holds
// 8..12. Backup a (files, timeline 1, segments 2..3) can follow both
// timelines, backup d (files, timeline 2, 10..11) only timeline 2.
func branched(t *testing.T) *testRepo {
	tr := newTestRepo(t)
	tr.segments(1, 1, 10)
	tr.history(2, 1, 8)
	tr.segments(2, 8, 12)
	tr.backup("a", manifest.ProviderFiles, 1, 2, 3, tr.filesPayload("a", 2))
	tr.backup("d", manifest.ProviderFiles, 2, 10, 11, tr.filesPayload("d", 1))
	return tr
}

// windows renders a backup's windows as "timeline:last segment".
func windows(res *VerifyResult, id string) []string {
	var out []string
	for _, b := range res.Backups {
		if b.ID != id {
			continue
		}
		for _, w := range b.Windows {
			out = append(out, strings.Join([]string{string(rune('0' + w.Timeline)), w.ToSegment}, ":"))
		}
	}
	return out
}

func TestVerifyTimelineSwitch(t *testing.T) {
	tr := branched(t)
	res := tr.verify(VerifyOptions{})
	if !res.OK || len(res.Problems) != 0 || len(res.Gaps) != 0 {
		t.Fatalf("a clean repository: %v", res.Problems)
	}
	if got, want := windows(res, "a"), []string{"1:" + segName(1, 10), "2:" + segName(2, 12)}; !reflect.DeepEqual(got, want) {
		t.Errorf("backup a's windows = %v, want %v", got, want)
	}
	if got, want := windows(res, "d"), []string{"2:" + segName(2, 12)}; !reflect.DeepEqual(got, want) {
		t.Errorf("backup d's windows = %v, want %v", got, want)
	}
	b := res.Backups[0]
	if b.ID != "a" || !b.WALComplete || b.Payload != "2 parts, "+manifest.Human(sumStored(t, tr, "a"))+" stored" || !b.Windows[0].From.Equal(t0.Add(3*60e9)) {
		t.Errorf("backup a: %+v", b)
	}
	if res.Newest != segName(2, 12) || res.SystemID != sysID || res.WALFiles != 10+5+1 {
		t.Errorf("result: newest %s, system %d, %d WAL files", res.Newest, res.SystemID, res.WALFiles)
	}
	var text strings.Builder
	res.WriteText(&text)
	for _, want := range []string{"backup a (files, complete): 2 parts", "timeline 2: any point from 2026-11-24 10:03:00Z to ", "(segment " + segName(2, 12) + ")", "verify: ok"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}

	// Stored, and read back for status.
	if err := SaveVerify(context.Background(), tr.r, res); err != nil {
		t.Fatal(err)
	}
	back, err := LastVerify(context.Background(), tr.r)
	if err != nil || !back.OK || len(back.Backups) != 2 || !back.Time.Equal(res.Time) {
		t.Fatalf("LastVerify = %+v, %v", back, err)
	}
}

func sumStored(t *testing.T, tr *testRepo, id string) int64 {
	objs, err := tr.r.BackupObjects(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, o := range objs {
		if !o.Manifest {
			n += o.Size
		}
	}
	return n
}

// TestVerifyGaps: a deleted segment is reported as exactly that range and
// shortens the windows through it; one inside a backup makes it
// unrestorable.
func TestVerifyGaps(t *testing.T) {
	tr := branched(t)
	for _, n := range []uint64{5, 6} {
		if err := os.Remove(tr.walPath(segName(1, n))); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(tr.walPath(segName(2, 11)))
	res := tr.verify(VerifyOptions{})
	want := []GapRange{{Timeline: 1, First: segName(1, 5), Last: segName(1, 6), Count: 2}, {Timeline: 2, First: segName(2, 11), Last: segName(2, 11), Count: 1}}
	if res.OK || !reflect.DeepEqual(res.Gaps, want) {
		t.Fatalf("gaps = %+v, want %+v", res.Gaps, want)
	}
	wantProblems := []string{
		"backup d: the WAL from " + segName(2, 10) + " to " + segName(2, 11) + ", without which it restores to nothing, is incomplete: timeline 2: segment " + segName(2, 11) + " is missing",
		"WAL timeline 1: segments " + segName(1, 5) + " to " + segName(1, 6) + " are missing (2 segments)",
		"WAL timeline 2: segment " + segName(2, 11) + " is missing",
	}
	if !reflect.DeepEqual(res.Problems, wantProblems) {
		t.Fatalf("problems = %q, want %q", res.Problems, wantProblems)
	}
	if got := windows(res, "a"); !reflect.DeepEqual(got, []string{"1:" + segName(1, 4), "2:" + segName(1, 4)}) {
		t.Errorf("backup a's windows with a gap after its stop = %v", got)
	}
	// Backup d needs 10..11 of timeline 2: it restores to nothing.
	if got := windows(res, "d"); got != nil || res.Backups[1].WALComplete {
		t.Errorf("backup d without its stop segment: windows %v, %+v", got, res.Backups[1])
	}
	tr2 := branched(t)
	os.Remove(tr2.walPath(segName(1, 3)))
	res = tr2.verify(VerifyOptions{})
	if len(res.Problems) != 2 || !strings.HasPrefix(res.Problems[0], "backup a: the WAL from "+segName(1, 2)+" to "+segName(1, 3)+", without which it restores to nothing, is incomplete: timeline 1: segment "+segName(1, 3)+" is missing") {
		t.Fatalf("a backup missing its stop segment: %q", res.Problems)
	}
}

// TestVerifyDeep: damage that keeps sizes is found by --deep only.
func TestVerifyDeep(t *testing.T) {
	tr := branched(t)
	var calls, last [2]int64
	prog := func(done, total int64) { calls[0]++; last = [2]int64{done, total} }
	res := tr.verify(VerifyOptions{Deep: true, Progress: prog, Concurrency: 3})
	// Recoveries read timeline 1's 2..7 and 2..10 and timeline 2's 8..12;
	// segment 1 and the parts of no backup are not in range.
	if !res.OK || res.Read.WAL != 9+5 || res.Read.Parts != 3 {
		t.Fatalf("deep verify of a clean repository: %+v %q", res.Read, res.Problems)
	}
	if calls[0] != int64(res.Read.WAL+res.Read.Parts) || last[0] != last[1] || last[1] != res.Read.Bytes {
		t.Errorf("progress: %d calls, last %v; read %+v", calls[0], last, res.Read)
	}

	tr.corrupt(tr.walPath(segName(1, 9)))
	objs, _ := tr.r.BackupObjects(context.Background(), "a")
	var part string
	for _, o := range objs {
		if !o.Manifest {
			part = o.Key
			tr.corrupt(tr.path(o.Key))
			break
		}
	}
	// A segment of another cluster, stored with a correct checksum.
	os.Remove(tr.walPath(segName(2, 12)))
	tr.put(segName(2, 12), segment(2, 12, 42))
	if res := tr.verify(VerifyOptions{}); !res.OK {
		t.Fatalf("without --deep, damage that keeps sizes is not visible, yet: %q", res.Problems)
	}
	res = tr.verify(VerifyOptions{Deep: true})
	if res.OK || len(res.Problems) != 3 {
		t.Fatalf("deep problems: %q", res.Problems)
	}
	for i, want := range []string{"WAL " + segName(1, 9) + ": ", "WAL " + segName(2, 12) + ": system identifier 42 does not match the repository's", "backup a: part " + part + ": "} {
		if !strings.HasPrefix(res.Problems[i], want) {
			t.Errorf("problem %d = %q, want it to start with %q", i, res.Problems[i], want)
		}
	}
}

// fakeEC2 describes the snapshots it holds.
type fakeEC2 map[string]ebs.SnapshotState

func (f fakeEC2) SnapshotStates(_ context.Context, ids []string) (map[string]ebs.SnapshotState, error) {
	out := map[string]ebs.SnapshotState{}
	for _, id := range ids {
		if s, ok := f[id]; ok {
			out[id] = s
		}
	}
	return out, nil
}

// TestVerifyPayloads: missing and resized parts, EBS snapshots missing,
// pending or failed, command.verify, and what is not checked.
func TestVerifyPayloads(t *testing.T) {
	tr := newTestRepo(t)
	tr.segments(1, 1, 9)
	p := tr.filesPayload("files", 3)
	os.Remove(tr.path(p.Parts[0].Key))
	p.Parts[1].StoredSize++
	tr.backup("files", manifest.ProviderFiles, 1, 1, 1, p)
	snap := func(id string) manifest.EBSSnapshot {
		return manifest.EBSSnapshot{SnapshotID: id, VolumeID: "vol-" + id, MountPoint: "/srv/" + id, SizeGiB: 100}
	}
	tr.backup("ebs", manifest.ProviderEBS, 1, 2, 2, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{snap("snap-ok"), snap("snap-gone"), snap("snap-slow"), snap("snap-bad")}})
	tr.backup("cmd", manifest.ProviderCommand, 1, 3, 3, manifest.CommandPayload{Snapshots: []string{"lv-1", "lv-2"}})
	tr.backup("ext", manifest.ProviderExternal, 1, 4, 4, manifest.ExternalPayload{Snapshots: []string{"snap-x"}})
	ec2 := fakeEC2{
		"snap-ok":   {State: "completed"},
		"snap-slow": {State: "pending", Progress: "45%"},
		"snap-bad":  {State: "error", Message: "internal error"},
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "lv-1"), nil, 0o600)
	o := VerifyOptions{
		EC2:           func(context.Context) (SnapshotDescriber, error) { return ec2, nil },
		CommandVerify: `for s in $WALSNAP_SNAPSHOTS; do test -e "` + dir + `/$s" || { echo "$s is gone" >&2; exit 3; }; done`,
	}
	res := tr.verify(o)
	want := []string{
		"backup files: part " + p.Parts[0].Key + " is missing",
		"backup files: part " + p.Parts[1].Key + " is " + itoa(p.Parts[1].StoredSize-1) + " bytes, the manifest records " + itoa(p.Parts[1].StoredSize),
		"backup ebs: EBS snapshot snap-gone of vol-snap-gone (/srv/snap-gone) does not exist",
		"backup ebs: EBS snapshot snap-slow of vol-snap-slow (/srv/snap-slow) is pending (45%), not completed",
		"backup ebs: EBS snapshot snap-bad of vol-snap-bad (/srv/snap-bad) failed: internal error",
		"backup cmd: command.verify failed: exit status 3: lv-2 is gone",
	}
	if !reflect.DeepEqual(res.Problems, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(res.Problems, "\n"), strings.Join(want, "\n"))
	}
	payloads := map[string]string{}
	for _, b := range res.Backups {
		payloads[b.ID] = b.Payload
	}
	if payloads["ebs"] != "4 EBS snapshots of 400 GiB of volumes" || payloads["ext"] != "1 snapshots of an external orchestrator, not checked" {
		t.Errorf("payloads: %q", payloads)
	}

	// All there: clean. Without command.verify the command backup is not
	// checked; without EC2 the EBS one is a problem.
	os.WriteFile(filepath.Join(dir, "lv-2"), nil, 0o600)
	o.CommandVerify = ""
	o.EC2 = func(context.Context) (SnapshotDescriber, error) { return nil, errors.New("no credentials") }
	res = tr.verify(o)
	if len(res.Problems) != 3 || res.Problems[2] != "backup ebs: its EBS snapshots could not be checked: no credentials" {
		t.Fatalf("problems: %q", res.Problems)
	}
	for _, b := range res.Backups {
		if b.ID == "cmd" && b.Payload != "2 snapshots, not checked (command.verify is not set)" {
			t.Errorf("command backup without command.verify: %q", b.Payload)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestVerifyBadManifest: an unreadable manifest and a history file that is
// missing are problems; the others are still verified.
func TestVerifyBadManifest(t *testing.T) {
	tr := branched(t)
	if err := tr.st.Delete(context.Background(), "backups/a/manifest.json"); err != nil {
		t.Fatal(err)
	}
	if err := tr.st.PutIfAbsent(context.Background(), "backups/a/manifest.json", strings.NewReader("{"), 1, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(tr.walPath("00000002.history"))
	res := tr.verify(VerifyOptions{})
	if len(res.Problems) < 2 || !strings.HasPrefix(res.Problems[0], "backup a: ") || !strings.Contains(res.Problems[1], "timeline 2: no history file") {
		t.Fatalf("problems: %q", res.Problems)
	}
	if len(res.Backups) != 1 || res.Backups[0].ID != "d" {
		t.Fatalf("backups verified: %+v", res.Backups)
	}
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), VerifyOptions{Repo: repo.New(st)}); !errors.Is(err, repo.ErrNoIdentity) {
		t.Fatalf("Verify of an empty directory: %v, want ErrNoIdentity", err)
	}
}
