package inspect

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of walsnap status --prometheus; scripts/prometheus's
// alert rules use them.
const (
	MetricStatusTime          = "walsnap_status_timestamp_seconds"
	MetricRepositoryUp        = "walsnap_repository_up"
	MetricLastArchived        = "walsnap_last_archived_timestamp_seconds"
	MetricServerUp            = "walsnap_server_up"
	MetricArchiveLag          = "walsnap_archive_lag_bytes"
	MetricArchiverFailed      = "walsnap_archiver_failed_count"
	MetricBackupLastComplete  = "walsnap_backup_last_complete_timestamp_seconds"
	MetricBackups             = "walsnap_backups"
	MetricOldestRecoveryPoint = "walsnap_oldest_recovery_point_timestamp_seconds"
	MetricRepositoryBytes     = "walsnap_repository_bytes"
	MetricVerifyOK            = "walsnap_verify_ok"
	MetricVerifyTime          = "walsnap_verify_timestamp_seconds"
	MetricVerifyProblems      = "walsnap_verify_problems"
	MetricDrillOK             = "walsnap_drill_ok"
	MetricDrillTime           = "walsnap_drill_timestamp_seconds"
	MetricDrillRecovery       = "walsnap_drill_recovery_seconds"
)

// Registry builds the metrics of st, for node_exporter's textfile
// collector. A nil st is a status that could not be read (the repository
// is unreachable): only MetricStatusTime and MetricRepositoryUp 0, at now.
// Metrics whose value is unknown (nothing archived yet, no server, no
// verify or drill, the recovery time of a failed drill) are left out
// rather than given a made-up value.
func Registry(st *Status, now time.Time) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg}
	if st != nil {
		now = st.Time
	}
	m.gauge(MetricStatusTime, "When walsnap status wrote these metrics.", seconds(now))
	if st == nil {
		m.gauge(MetricRepositoryUp, "1 when walsnap status could read the repository.", 0)
		return reg, m.err
	}
	m.gauge(MetricRepositoryUp, "1 when walsnap status could read the repository.", 1)
	if st.NewestTime != nil {
		m.gauge(MetricLastArchived, "When the repository received its newest WAL segment.", seconds(*st.NewestTime))
	}
	if s := st.Server; s != nil {
		up := 1.0
		if s.Error != "" {
			up = 0
		}
		m.gauge(MetricServerUp, "1 when walsnap status could query PostgreSQL.", up)
		if s.Error == "" {
			m.gauge(MetricArchiverFailed, "Failed archive_command runs since the server's archiver statistics were reset (pg_stat_archiver.failed_count).", float64(s.FailedCount))
		}
		if s.ArchiveLagBytes != nil {
			m.gauge(MetricArchiveLag, "WAL the server has written past the end of the newest archived segment, in bytes.", float64(*s.ArchiveLagBytes))
		}
	}
	if st.Backups.NewestStop != nil {
		m.gauge(MetricBackupLastComplete, "When the newest complete backup stopped.", seconds(*st.Backups.NewestStop))
	}
	backups := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricBackups, Help: "Backups in the repository, by status."}, []string{"status"})
	for status, n := range st.Backups.ByStatus {
		backups.WithLabelValues(status).Set(float64(n))
	}
	m.register(backups)
	if t := st.Backups.OldestRecoveryPoint; t != nil {
		m.gauge(MetricOldestRecoveryPoint, "The earliest moment a backup in the repository restores to.", seconds(*t))
	}
	size := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricRepositoryBytes,
		Help: "What the backups occupy, in bytes: WAL and backup objects in the repository, and the volume sizes of the EBS snapshots."}, []string{"kind"})
	size.WithLabelValues("wal").Set(float64(st.Size.WALBytes))
	size.WithLabelValues("backup").Set(float64(st.Size.BackupBytes))
	size.WithLabelValues("ebs_snapshot").Set(float64(st.Size.EBSSnapshotGiB << 30))
	m.register(size)
	if v := st.LastVerify; v != nil {
		m.gauge(MetricVerifyOK, "1 when the last walsnap verify found no problem.", one(v.OK))
		m.gauge(MetricVerifyTime, "When the last walsnap verify ran.", seconds(v.Time))
		m.gauge(MetricVerifyProblems, "Problems the last walsnap verify found.", float64(v.Problems))
	}
	if d := st.LastDrill; d != nil {
		m.gauge(MetricDrillOK, "1 when the last walsnap drill restored its backup, recovered it and passed every check.", one(d.OK))
		m.gauge(MetricDrillTime, "When the last walsnap drill began.", seconds(d.Time))
		if d.OK {
			m.gauge(MetricDrillRecovery, "How long the last walsnap drill took to restore and recover its backup, until the promotion (only when it passed).", d.RecoverySeconds)
		}
	}
	return reg, m.err
}

// WriteMetrics writes the metrics of st (nil: the repository could not be
// read) to path in the text exposition format, atomically: a temporary
// file in the same directory renamed over path, so that the textfile
// collector never reads half a file.
func WriteMetrics(path string, st *Status, now time.Time) error {
	reg, err := Registry(st, now)
	if err != nil {
		return err
	}
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("write metrics to %s: %w", path, err)
	}
	return nil
}

// metrics registers gauges, keeping the first error.
type metrics struct {
	reg *prometheus.Registry
	err error
}

func (m *metrics) register(c prometheus.Collector) {
	if err := m.reg.Register(c); err != nil && m.err == nil {
		m.err = err
	}
}

func (m *metrics) gauge(name, help string, v float64) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	g.Set(v)
	m.register(g)
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// one is 1 for true, 0 for false.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
