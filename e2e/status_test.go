package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/wal"
)

// TestStatus: walsnap status --json on a known repository (a backup,
// WAL archived up to a switch, a verify run), and --prometheus written
// for node_exporter and parsed as Prometheus does.
func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := newCluster(t, clusterOptions{localRepo: true, config: "backup:\n  wal_timeout: 1m\n"})
	id := strings.Fields(c.walsnap(t, "backup", "--fast"))[1]
	c.pg.Exec(t, "CREATE TABLE s AS SELECT generate_series(1, 1000) AS i")
	c.archiveAll(t)
	c.walsnap(t, "verify")

	var st inspect.Status
	if err := json.Unmarshal([]byte(c.walsnap(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	r := c.repo(t)
	m, err := r.Manifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	files, err := r.ListWAL(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var walBytes int64
	for _, f := range files {
		walBytes += f.Size
	}
	objs, err := r.BackupObjects(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var backupBytes int64
	for _, o := range objs {
		backupBytes += o.Size
	}
	sysID, _ := strconv.ParseUint(c.pg.QueryString(t, "SELECT system_identifier FROM pg_control_system()"), 10, 64)
	lastArchived := c.pg.QueryString(t, "SELECT last_archived_wal FROM pg_stat_archiver")
	newest, _ := wal.ParseSegmentName(lastArchived, 16<<20)
	current, _ := wal.ParseLSN(c.pg.QueryString(t, "SELECT pg_current_wal_lsn()::text"))
	b, srv := st.Backups, st.Server
	switch {
	case st.SystemID != sysID || st.SegmentSize != 16<<20 || st.PGMajor != 15:
		t.Errorf("identity: %d %d %d, want system %d", st.SystemID, st.SegmentSize, st.PGMajor, sysID)
	case st.NewestSegment != lastArchived || st.NewestTime == nil:
		t.Errorf("newest segment %s, want %s, the server's last archived", st.NewestSegment, lastArchived)
	case srv == nil || srv.Error != "" || srv.FailedCount != 0 || srv.ArchivedCount == 0 || srv.ArchiveLagBytes == nil:
		t.Errorf("server: %+v", srv)
	case *srv.ArchiveLagBytes < 0 || *srv.ArchiveLagBytes > int64(current)-int64(newest.Next().StartLSN(16<<20)):
		t.Errorf("archive lag %d, want at most the %s written past %s", *srv.ArchiveLagBytes, current, lastArchived)
	case b.Count != 1 || b.ByStatus["complete"] != 1 || b.Newest != id || !b.NewestStop.Equal(m.StopTime) || b.NewestAge <= 0:
		t.Errorf("backups: %+v", b)
	case b.OldestRecoveryPoint == nil || !b.OldestRecoveryPoint.Equal(m.StopTime):
		t.Errorf("oldest recovery point %v, want the backup's stop %v", b.OldestRecoveryPoint, m.StopTime)
	case st.Size.WALBytes != walBytes || st.Size.BackupBytes != backupBytes || st.Size.EBSSnapshotGiB != 0:
		t.Errorf("size %+v, want WAL %d and backups %d", st.Size, walBytes, backupBytes)
	case st.LastVerify == nil || !st.LastVerify.OK || st.LastVerify.Problems != 0:
		t.Errorf("last verify: %+v", st.LastVerify)
	}

	text := c.walsnap(t, "status")
	t.Logf("walsnap status:\n%s", text)
	for _, want := range []string{"newest segment:    " + lastArchived, "backups:           1 (1 complete", "last verify:       ok at "} {
		if !strings.Contains(text, want) {
			t.Errorf("walsnap status lacks %q:\n%s", want, text)
		}
	}

	sec := func(tm time.Time) float64 { return float64(tm.UnixNano()) / 1e9 }
	prom := filepath.Join(t.TempDir(), "walsnap.prom")
	if out := c.walsnap(t, "status", "--prometheus", prom); out != "" {
		t.Errorf("status --prometheus printed %q", out)
	}
	mfs := parseProm(t, prom)
	for name, want := range map[string]float64{
		"walsnap_repository_up":                           1,
		"walsnap_last_archived_timestamp_seconds":         sec(*st.NewestTime),
		"walsnap_backup_last_complete_timestamp_seconds":  sec(m.StopTime),
		"walsnap_oldest_recovery_point_timestamp_seconds": sec(m.StopTime),
		`walsnap_backups{status="complete"}`:              1,
		`walsnap_backups{status="failed"}`:                0,
		`walsnap_repository_bytes{kind="wal"}`:            float64(walBytes),
		`walsnap_repository_bytes{kind="backup"}`:         float64(backupBytes),
		`walsnap_repository_bytes{kind="ebs_snapshot"}`:   0,
		"walsnap_verify_ok":                               1,
		"walsnap_verify_timestamp_seconds":                sec(st.LastVerify.Time),
		"walsnap_archiver_failed_count":                   0,
		"walsnap_server_up":                               1,
	} {
		if got, ok := mfs[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := mfs["walsnap_archive_lag_bytes"]; !ok {
		t.Error("no walsnap_archive_lag_bytes")
	}

	// A repository that cannot be read: the file says so, and status fails.
	out, err := c.run("status", "--prometheus", prom, "--repo", "file://"+filepath.Join(t.TempDir(), "gone"))
	if err == nil || !strings.Contains(out, "no repository at") {
		t.Fatalf("status of a missing repository: %v\n%s", err, out)
	}
	if mfs := parseProm(t, prom); mfs["walsnap_repository_up"] != 0 || len(mfs) != 2 {
		t.Fatalf("metrics of a missing repository: %v", mfs)
	}
}

// parseProm parses a metrics file as Prometheus does and returns each
// series' value by its name and labels (name{label="value"}).
func parseProm(t *testing.T, path string) map[string]float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, data)
	}
	out := map[string]float64{}
	for name, mf := range families {
		if mf.GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s is a %v, want a gauge", name, mf.GetType())
		}
		for _, m := range mf.Metric {
			key := name
			for _, l := range m.Label {
				key += "{" + l.GetName() + "=" + strconv.Quote(l.GetValue()) + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}
