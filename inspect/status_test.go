package inspect

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
)

// statusRepo is branched (two complete files backups, a timeline switch)
// plus a complete EBS backup, a failed and a pending one, a verify
// result and a passed drill.
func statusRepo(t *testing.T) (*testRepo, *Status) {
	tr := branched(t)
	tr.backup("e", manifest.ProviderEBS, 1, 4, 4, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-1", SizeGiB: 100}, {SnapshotID: "snap-2", SizeGiB: 20}}})
	failed := tr.backup("f", manifest.ProviderFiles, 1, 5, 5, manifest.FilesPayload{})
	failed.Status = manifest.StatusFailed
	tr.st.Delete(context.Background(), "backups/f/manifest.json")
	if err := tr.r.PutManifest(context.Background(), failed); err != nil {
		t.Fatal(err)
	}
	pending := tr.backup("p", manifest.ProviderEBS, 1, 6, 6, manifest.EBSPayload{Snapshots: []manifest.EBSSnapshot{{SnapshotID: "snap-3", SizeGiB: 500}}})
	pending.Status = manifest.StatusPending
	tr.st.Delete(context.Background(), "backups/p/manifest.json")
	if err := tr.r.PutManifest(context.Background(), pending); err != nil {
		t.Fatal(err)
	}
	res := tr.verify(VerifyOptions{EC2: func(context.Context) (SnapshotDescriber, error) {
		return fakeEC2{"snap-1": {State: "completed"}}, nil // snap-2 is gone
	}})
	if err := SaveVerify(context.Background(), tr.r, res); err != nil {
		t.Fatal(err)
	}
	putDrill(t, tr, drillresult.Result{ID: "D1", Time: t0.Add(20 * time.Hour), OK: true, Host: "standby1",
		Backup: drillresult.Backup{ID: "d"}, Target: "end of archived WAL", RecoverySeconds: 42.5})
	now := t0.Add(24 * time.Hour)
	st, err := ReadStatus(context.Background(), StatusOptions{Repo: tr.r, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return tr, st
}

// putDrill stores res as the latest drill result.
func putDrill(t *testing.T, tr *testRepo, res drillresult.Result) {
	t.Helper()
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.r.PutResult(context.Background(), repo.ResultDrill, data); err != nil {
		t.Fatal(err)
	}
}

func TestStatus(t *testing.T) {
	tr, st := statusRepo(t)
	var walBytes int64
	files, _ := tr.r.ListWAL(context.Background(), 0)
	for _, f := range files {
		walBytes += f.Size
	}
	objs, _ := tr.r.BackupObjects(context.Background(), "")
	var backupBytes int64
	for _, o := range objs {
		backupBytes += o.Size
	}
	b := st.Backups
	switch {
	case st.SystemID != sysID || st.SegmentSize != segSize || st.PGMajor != 15:
		t.Errorf("identity: %+v", st)
	case st.NewestSegment != segName(2, 12) || st.NewestTime == nil:
		t.Errorf("newest segment %s at %v", st.NewestSegment, st.NewestTime)
	case b.Count != 5 || !maps.Equal(b.ByStatus, map[string]int{"complete": 3, "pending": 1, "failed": 1, "unreadable": 0}):
		t.Errorf("backups: %+v", b)
	case b.Newest != "d" || !b.NewestStop.Equal(t0.Add(11*time.Minute)) || b.NewestAge != (24*time.Hour-11*time.Minute).Seconds():
		t.Errorf("newest backup: %+v", b)
	case b.OldestRecoveryPoint == nil || !b.OldestRecoveryPoint.Equal(t0.Add(3*time.Minute)):
		t.Errorf("oldest recovery point %v, want backup a's stop", b.OldestRecoveryPoint)
	case st.Size != Size{WALBytes: walBytes, BackupBytes: backupBytes, EBSSnapshotGiB: 120}:
		t.Errorf("size %+v, want WAL %d, backups %d, 120 GiB of the complete EBS backup", st.Size, walBytes, backupBytes)
	case st.LastVerify == nil || st.LastVerify.OK || st.LastVerify.Problems != 1:
		t.Errorf("last verify: %+v", st.LastVerify)
	case st.LastDrill == nil || !st.LastDrill.OK || st.LastDrill.Backup != "d" || st.LastDrill.RecoverySeconds != 42.5 || !st.LastDrill.Time.Equal(t0.Add(20*time.Hour)):
		t.Errorf("last drill: %+v", st.LastDrill)
	case st.Server != nil || len(st.Problems) != 0:
		t.Errorf("server %+v, problems %q", st.Server, st.Problems)
	}
	var text strings.Builder
	st.WriteText(&text)
	for _, want := range []string{"newest segment:    " + segName(2, 12), "backups:           5 (3 complete, 1 pending, 1 failed, 0 unreadable)",
		"recoverable from:  2026-11-24 10:03:00Z", "EBS snapshots 120 GiB", "last verify:       FAILED, 1 problems at ",
		"last drill:        ok at 2026-11-25 06:00:00Z (4h0m0s ago) on standby1: backup d recovered to end of archived WAL in 42.5s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
}

// parseMetrics parses a text exposition as Prometheus does.
func parseMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return mfs
}

// value is the gauge value of name with the label (name=value pairs).
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || mf.GetType() != dto.MetricType_GAUGE {
		t.Fatalf("no gauge %s in %v", name, slices.Collect(maps.Keys(mfs)))
	}
	for _, m := range mf.Metric {
		got := []string{}
		for _, l := range m.Label {
			got = append(got, l.GetName(), l.GetValue())
		}
		if slices.Equal(got, labels) {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("%s has no series %v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	_, st := statusRepo(t)
	lag := int64(3 << 20)
	st.Server = &Server{FailedCount: 4, ArchiveLagBytes: &lag}
	path := filepath.Join(t.TempDir(), "walsnap.prom")
	if err := WriteMetrics(path, st, time.Time{}); err != nil {
		t.Fatal(err)
	}
	mfs := parseMetrics(t, path)
	sec := func(tm time.Time) float64 { return float64(tm.UnixNano()) / 1e9 }
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{MetricStatusTime, nil, sec(st.Time)},
		{MetricRepositoryUp, nil, 1},
		{MetricLastArchived, nil, sec(*st.NewestTime)},
		{MetricServerUp, nil, 1},
		{MetricArchiveLag, nil, 3 << 20},
		{MetricArchiverFailed, nil, 4},
		{MetricBackupLastComplete, nil, sec(t0.Add(11 * time.Minute))},
		{MetricBackups, []string{"status", "complete"}, 3},
		{MetricBackups, []string{"status", "pending"}, 1},
		{MetricBackups, []string{"status", "failed"}, 1},
		{MetricBackups, []string{"status", "unreadable"}, 0},
		{MetricOldestRecoveryPoint, nil, sec(t0.Add(3 * time.Minute))},
		{MetricRepositoryBytes, []string{"kind", "wal"}, float64(st.Size.WALBytes)},
		{MetricRepositoryBytes, []string{"kind", "backup"}, float64(st.Size.BackupBytes)},
		{MetricRepositoryBytes, []string{"kind", "ebs_snapshot"}, 120 << 30},
		{MetricVerifyOK, nil, 0},
		{MetricVerifyTime, nil, sec(st.LastVerify.Time)},
		{MetricVerifyProblems, nil, 1},
		{MetricDrillOK, nil, 1},
		{MetricDrillTime, nil, sec(t0.Add(20 * time.Hour))},
		{MetricDrillRecovery, nil, 42.5},
	} {
		if got := value(t, mfs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if len(mfs) != 16 {
		t.Errorf("%d metric families: %v", len(mfs), slices.Sorted(maps.Keys(mfs)))
	}
	// Nothing else was left in the directory (the temporary file is renamed).
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}

	// A repository that cannot be read: up 0, and no made-up values.
	now := time.Now()
	if err := WriteMetrics(path, nil, now); err != nil {
		t.Fatal(err)
	}
	mfs = parseMetrics(t, path)
	if len(mfs) != 2 || value(t, mfs, MetricRepositoryUp) != 0 || value(t, mfs, MetricStatusTime) != sec(now) {
		t.Errorf("unreadable repository: %v", mfs)
	}
}

// TestFailedDrill: a failed drill is reported as such, with its error's
// first line, and without a recovery time.
func TestFailedDrill(t *testing.T) {
	tr := branched(t)
	putDrill(t, tr, drillresult.Result{ID: "D2", Time: t0, Host: "standby1", Target: "end of archived WAL",
		Error: "the WAL from backup a to the target has a gap: timeline 1: segment X is missing\nmore"})
	st, err := ReadStatus(context.Background(), StatusOptions{Repo: tr.r, Now: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	st.WriteText(&text)
	if want := "last drill:        FAILED at 2026-11-24 10:00:00Z (1h0m0s ago) on standby1: the WAL from backup a to the target has a gap: timeline 1: segment X is missing\n"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	path := filepath.Join(t.TempDir(), "walsnap.prom")
	if err := WriteMetrics(path, st, time.Time{}); err != nil {
		t.Fatal(err)
	}
	mfs := parseMetrics(t, path)
	if value(t, mfs, MetricDrillOK) != 0 || value(t, mfs, MetricDrillTime) != float64(t0.Unix()) {
		t.Errorf("failed drill metrics: %v", mfs)
	}
	if _, ok := mfs[MetricDrillRecovery]; ok {
		t.Errorf("a failed drill has a recovery time metric")
	}
	// A repository without a drill result says so.
	st, err = ReadStatus(context.Background(), StatusOptions{Repo: branched(t).r})
	if err != nil || st.LastDrill != nil || len(st.Problems) != 0 {
		t.Fatalf("no drill: %+v, %v", st.LastDrill, err)
	}
}

// TestAlertRules: the shipped alert rules parse and use only metrics that
// walsnap status writes.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("../scripts/prometheus/walsnap-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	_, st := statusRepo(t)
	lag := int64(0)
	st.Server = &Server{ArchiveLagBytes: &lag}
	reg, err := Registry(st, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	for _, mf := range mfs {
		written[mf.GetName()] = true
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names := regexp.MustCompile(`walsnap_[a-z_]+`).FindAllString(r.Expr, -1)
			if r.Alert == "" || len(names) == 0 {
				t.Errorf("rule %q (%s) uses no walsnap metric", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !written[n] {
					t.Errorf("alert %s uses %s, which walsnap status does not write", r.Alert, n)
				}
			}
			alerts[r.Alert] = true
		}
	}
	for _, want := range []string{"WalsnapArchivingStalled", "WalsnapNoRecentBackup", "WalsnapVerifyFailed", "WalsnapDrillFailed", "WalsnapDrillStale"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}
