package pg

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/wal"
)

// TestMonitor reads what walsnap check and status ask of a real server
// (PostgreSQL 15, archiving with cp): the archiving settings, the
// archiver's statistics through a success and a failure, the current WAL
// position and a WAL switch.
func TestMonitor(t *testing.T) {
	t.Parallel()
	p, archive := archivingPG(t, 15)
	s := connect(t, p, false, nil)
	ctx := ctxFor(t)

	a, err := s.ArchiveSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.WALLevel != "replica" || a.ArchiveMode != "on" || a.ArchiveCommand != "cp %p '"+archive+"/%f'" ||
		a.ArchiveLibrary != "" || a.ArchiveTimeout != 0 || a.InRecovery {
		t.Errorf("ArchiveSettings = %+v", a)
	}
	if IsWalsnapPush(a.ArchiveCommand) || !IsWalsnapPush("/usr/bin/walsnap wal-push %p") {
		t.Error("IsWalsnapPush does not tell walsnap from cp")
	}
	setConf(t, p, s, map[string]string{"archive_timeout": "90s"})
	if a, err = s.ArchiveSettings(ctx); err != nil || a.ArchiveTimeout != 90*time.Second {
		t.Errorf("archive_timeout 90: ArchiveSettings = %+v, %v", a, err)
	}

	before, err := s.ArchiverStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.ArchivedCount != 0 || before.LastArchivedWAL != "" || !before.LastArchivedTime.IsZero() || before.FailedCount != 0 || before.StatsReset.IsZero() {
		t.Errorf("a fresh server's archiver: %+v", before)
	}
	pos, err := s.CurrentWAL(ctx, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := wal.SegmentForLSN(1, pos.LSN, 16<<20); pos.Segment != want || pos.LSN == 0 {
		t.Errorf("CurrentWAL = %+v, want segment %v", pos, want)
	}
	name, err := s.SwitchWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if name != pos.Segment.Name(16<<20) {
		t.Errorf("SwitchWAL finished %s, want the current segment %s", name, pos.Segment.Name(16<<20))
	}
	st := waitArchiver(t, s, func(st ArchiverStats) bool { return st.LastArchivedWAL == name })
	if st.ArchivedCount != 1 || st.LastArchivedTime.IsZero() || time.Since(st.LastArchivedTime) > time.Minute {
		t.Errorf("after one switch: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(archive, name)); err != nil {
		t.Errorf("the switched segment was not archived: %v", err)
	}
	after, err := s.CurrentWAL(ctx, 16<<20)
	if err != nil || after.Segment.No != pos.Segment.No+1 {
		t.Errorf("after the switch CurrentWAL = %+v, %v; want the next segment", after, err)
	}

	// A failing archive_command shows in the statistics.
	setConf(t, p, s, map[string]string{"archive_command": "false"})
	failing, err := s.SwitchWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st = waitArchiver(t, s, func(st ArchiverStats) bool { return st.FailedCount > 0 })
	if st.LastFailedWAL != failing || st.LastFailedTime.Before(st.LastArchivedTime) || st.LastArchivedWAL != name {
		t.Errorf("after a failure: %+v, want the last failure at %s", st, failing)
	}
}

// waitArchiver polls pg_stat_archiver until done says so (bounded).
func waitArchiver(t *testing.T, s *Session, done func(ArchiverStats) bool) ArchiverStats {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := s.ArchiverStats(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		if done(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_stat_archiver never got there: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
