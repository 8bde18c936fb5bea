package drill

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/wal"
	"github.com/walsnap/walsnap/restore"
)

// server is the scratch copy's server, once started.
type server struct {
	sockDir string
	port    int
	logFile string
}

// conn reaches the scratch copy's database db.
func (r *run) conn(db string) pg.ConnConfig {
	return pg.ConnConfig{Host: r.server.sockDir, Port: r.server.port, User: r.o.User, Database: db, ConnectTimeout: 10 * time.Second}
}

// protected are the server settings the drill sets for safety, which
// --set cannot change.
var protected = []string{"config_file", "data_directory", "hba_file", "ident_file", "external_pid_file", "listen_addresses",
	"port", "unix_socket_directories", "archive_mode", "archive_command", "archive_library", "restore_command",
	"synchronous_standby_names", "max_logical_replication_workers", "hot_standby"}

// CheckSet refuses a --set of a setting the drill sets for safety.
func CheckSet(name string) error {
	for _, p := range protected {
		if strings.EqualFold(name, p) {
			return fmt.Errorf("--set %s: the drill sets %s itself, to keep the scratch copy away from production", name, p)
		}
	}
	return nil
}

// serverSettings are the settings the scratch copy runs with, as -c
// options, which override every configuration file (postgresql.auto.conf
// too): its own data directory and authentication (a private socket,
// trusted: only its owner and root can reach the directory); no TCP
// listener (set by restore.Start); no archiving, so the promoted copy
// never pushes its timeline into the repository; no synchronous standby
// to wait for, no logical replication workers that would consume a
// publisher's slot; no hot standby, so that settings lower than the
// source's do not stop recovery (nothing connects before the promotion);
// the log on stderr, into the drill's log file; no pid file or
// statistics directory shared with the source (Debian points them into
// /var/run/postgresql). configFile, when set, is the configuration file
// to read; set are the user's --set, last.
func serverSettings(major int, pgdata, scratch, configFile string, set [][2]string) [][2]string {
	var s [][2]string
	if configFile != "" {
		s = append(s, [2]string{"config_file", configFile})
	}
	s = append(s,
		[2]string{"data_directory", pgdata},
		[2]string{"hba_file", filepath.Join(scratch, "pg_hba.conf")},
		[2]string{"ident_file", filepath.Join(scratch, "pg_ident.conf")},
		[2]string{"external_pid_file", ""},
		[2]string{"archive_mode", "off"},
		[2]string{"hot_standby", "off"},
		[2]string{"synchronous_standby_names", ""},
		[2]string{"max_logical_replication_workers", "0"},
		[2]string{"logging_collector", "off"},
		[2]string{"log_destination", "stderr"},
		[2]string{"ssl", "off"},
		[2]string{"cluster_name", "walsnap-drill"},
	)
	if major <= 14 {
		s = append(s, [2]string{"stats_temp_directory", "pg_stat_tmp"})
	}
	return append(s, set...)
}

// replay writes the scratch copy's authentication and configuration,
// starts the server on a socket in its own directory and no TCP, follows
// recovery to the promotion, and records where it ended and what it read.
func (r *run) replay(ctx context.Context, p *drillresult.Phase) error {
	start := time.Now()
	sockDir, err := r.socketDir()
	r.server.sockDir = sockDir // made: the teardown removes it
	if err != nil {
		return err
	}
	r.server.port, r.server.logFile = pg.DefaultPort, filepath.Join(r.scratch, "server.log")
	configFile, note, err := r.writeConfig()
	if err != nil {
		return err
	}
	if note != "" {
		r.o.Log.Warn(note)
	}
	r.started = true
	out, err := restore.Start(ctx, restore.StartOptions{
		PGData:    r.dest.PGData,
		Major:     r.m.PGMajor(),
		PGBin:     filepath.Dir(r.pgctl),
		Owner:     r.o.Owner,
		Port:      r.server.port,
		SocketDir: r.server.sockDir,
		NoTCP:     true,
		Settings:  serverSettings(r.m.PGMajor(), r.dest.PGData, r.scratch, configFile, r.o.Set),
		User:      r.o.User,
		LogFile:   r.server.logFile,
		Target:    r.o.Target,
		Out:       r.o.Out,
		Timeout:   r.o.ReplayTimeout,
	})
	segments := restoredSegments(r.server.logFile)
	if err != nil {
		p.Detail = fmt.Sprintf("%d segments restored", segments)
		return r.explain(err)
	}
	if out.State != "promoted" {
		return fmt.Errorf("recovery ended %s, not promoted: %s", out.State, out.Message)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := pg.Connect(cctx, r.conn(pg.DefaultDatabase))
	if err != nil {
		return err
	}
	end, ok, err := s.LastReplayLSN(cctx)
	s.Close(context.WithoutCancel(cctx))
	if err != nil || !ok {
		return errors.Join(errors.New("the promoted server does not say where recovery ended"), err)
	}
	segSize := r.cat.Identity.SegmentSize
	// end is where the last record replayed ends: on a segment boundary
	// (after a WAL switch), that record is in the segment before.
	last := end
	if last > 0 && uint64(last)%segSize == 0 {
		last--
	}
	endSeg := wal.SegmentForLSN(r.timelineAt(uint64(last)/segSize), last, segSize)
	r.res.Reached = &drillresult.Reached{LSN: end.String(), Segment: endSeg.Name(segSize)}
	took := time.Since(start).Seconds()
	bytes := max(int64(end)-int64(r.m.StartLSN), 0)
	r.res.Replay = &drillresult.Replay{Segments: segments, Bytes: bytes, BytesPerSecond: float64(bytes) / max(took, 0.001)}
	p.Detail = fmt.Sprintf("%d segments restored, %s replayed at %s/s; promoted at %s (segment %s)",
		segments, manifest.Human(bytes), manifest.Human(int64(r.res.Replay.BytesPerSecond)), end, r.res.Reached.Segment)
	if r.o.Target.Kind == restore.TargetEnd && endSeg.No < r.endSeg {
		return fmt.Errorf("recovery ended at %s in segment %s, before the newest archived segment %s: it stopped short of the end of the WAL",
			end, endSeg.Name(segSize), wal.Segment{TLI: endSeg.TLI, No: r.endSeg}.Name(segSize))
	}
	return nil
}

// timelineAt is the timeline recovery reads segment number no from.
func (r *run) timelineAt(no uint64) uint32 {
	tli := r.m.Timeline
	for _, s := range r.spans {
		if s.First <= no {
			tli = s.TLI
		}
	}
	return tli
}

// explain adds to a failed recovery what the repository says of the WAL
// after the point the recovery needed for sure: a gap there is the
// likely reason it could not reach the target.
func (r *run) explain(err error) error {
	if r.o.Target.Kind == restore.TargetEnd {
		return err
	}
	segSize := r.cat.Identity.SegmentSize
	if reach := r.cat.Walk(r.spans, catalog.Open); len(reach.Gaps) > 0 {
		first, _ := reach.Gaps[0].Names(segSize)
		return fmt.Errorf("%w\n(the repository's WAL breaks off after %s: %s is missing)", err, reach.End.Name(segSize), first)
	}
	return err
}

// writeConfig writes the scratch copy's pg_hba.conf (the private socket,
// trusted) and empty pg_ident.conf, and chooses its configuration file:
// --server-config; else the data directory's postgresql.conf (no option
// needed); else an empty one, with a note that the source's settings are
// not known.
func (r *run) writeConfig() (configFile, note string, err error) {
	files := map[string]string{
		"pg_hba.conf":   "# walsnap drill: the socket directory is private to the server's owner and root\nlocal all all trust\n",
		"pg_ident.conf": "",
	}
	switch {
	case r.o.ServerConfig != "":
		configFile, err = filepath.Abs(r.o.ServerConfig)
		if err != nil {
			return "", "", err
		}
		if _, err := os.Stat(configFile); err != nil {
			return "", "", fmt.Errorf("--server-config: %w", err)
		}
	case fileExists(filepath.Join(r.dest.PGData, "postgresql.conf")):
	default:
		configFile = filepath.Join(r.scratch, "postgresql.conf")
		files["postgresql.conf"] = "# walsnap drill: the data directory has no postgresql.conf and no --server-config was given\n"
		note = "the restored data directory has no postgresql.conf (Debian keeps it in /etc/postgresql): the drill runs with PostgreSQL's defaults; give --server-config to use the source's settings"
	}
	for name, text := range files {
		path := filepath.Join(r.scratch, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return "", "", err
		}
		if err := r.own(path); err != nil {
			return "", "", err
		}
	}
	return configFile, note, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// restoredLine is the server's log line for a WAL file it restored.
var restoredLine = regexp.MustCompile(`restored log file "([0-9A-F]{24})" from archive`)

// restoredSegments counts the WAL segments the server's log says it
// restored from the repository.
func restoredSegments(logFile string) int {
	f, err := os.Open(logFile)
	if err != nil {
		return 0
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := restoredLine.FindStringSubmatch(sc.Text()); m != nil {
			seen[m[1]] = true
		}
	}
	return len(seen)
}
