package restore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walsnap/walsnap/internal/pg"
)

// StartOptions configures starting a restored server and following its
// recovery.
type StartOptions struct {
	PGData    string
	Major     int    // PostgreSQL major of the backup, to find pg_ctl
	PGBin     string // directory of pg_ctl; "" = /usr/lib/postgresql/<major>/bin, else PATH
	Owner     string // user to run the server as when walsnap runs as root ("" = postgres)
	Port      int    // 0 = the port in the restored configuration
	SocketDir string // "" = the restored configuration's; also where walsnap connects
	LogFile   string // server log; "" = <pgdata>.walsnap-restore.log next to PGData
	Target    Target
	Standby   bool
	Out       io.Writer     // progress lines
	Timeout   time.Duration // 0 = no limit beyond ctx
}

// Outcome is how recovery ended.
type Outcome struct {
	State     string // promoted, paused, shutdown, standby
	ReplayLSN string
	Message   string
	LogFile   string
}

// Start starts the restored server with pg_ctl and follows recovery until
// the target is reached (paused, promoted or shut down per the target
// action), the server runs as a standby, or the server fails; then it
// returns the outcome or an error carrying the server's own messages.
func Start(ctx context.Context, o StartOptions) (*Outcome, error) {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	pgctl, err := findPGCtl(o.PGBin, o.Major)
	if err != nil {
		return nil, err
	}
	if o.LogFile == "" {
		o.LogFile = filepath.Clean(o.PGData) + ".walsnap-restore.log"
	}
	args := []string{"-D", o.PGData, "-l", o.LogFile, "-W", "start"}
	var opts []string
	if o.Port != 0 {
		opts = append(opts, "-p", strconv.Itoa(o.Port))
	}
	if o.SocketDir != "" {
		opts = append(opts, "-k", o.SocketDir)
	}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, " "))
	}
	cmd := exec.CommandContext(ctx, pgctl, args...)
	cred, err := credential(o.Owner)
	if err != nil {
		return nil, err
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			f.Close()
			os.Chown(o.LogFile, int(cred.Uid), int(cred.Gid))
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	fmt.Fprintf(o.Out, "server starting (log: %s); recovering to %s\n", o.LogFile, o.Target)
	return follow(ctx, o)
}

func findPGCtl(bin string, major int) (string, error) {
	if bin != "" {
		p := filepath.Join(bin, "pg_ctl")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("pg_ctl not found in --pg-bin %s", bin)
		}
		return p, nil
	}
	if p := fmt.Sprintf("/usr/lib/postgresql/%d/bin/pg_ctl", major); fileExists(p) {
		return p, nil
	}
	p, err := exec.LookPath("pg_ctl")
	if err != nil {
		return "", fmt.Errorf("pg_ctl for PostgreSQL %d not found: give --pg-bin", major)
	}
	return p, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func credential(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	uid, gid, err := pg.OSUser(name)
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	return &syscall.Credential{Uid: uid, Gid: gid}, nil
}

// follow polls the server until recovery has an outcome.
func follow(ctx context.Context, o StartOptions) (*Outcome, error) {
	out := &Outcome{LogFile: o.LogFile}
	var lastReport time.Time
	var sess *pg.Session
	defer func() {
		if sess != nil {
			sess.Close(context.Background())
		}
	}()
	// pg_ctl -W returns before the postmaster writes its pid file: the
	// server counts as gone only once it has been seen running.
	seen := false
	startBy := time.Now().Add(time.Minute)
	for {
		_, alive := pg.RunningPostmaster(o.PGData)
		seen = seen || alive
		if !alive && (seen || time.Now().After(startBy)) {
			// The server is gone: a shutdown at the target, or a failure.
			time.Sleep(200 * time.Millisecond)
			log := logTail(o.LogFile, 200)
			if o.Target.Action == ActionShutdown && strings.Contains(log, "recovery stopping") {
				out.State, out.Message = "shutdown", "target reached; the server shut down as asked (--target-action shutdown)"
				return out, nil
			}
			return nil, fmt.Errorf("the server stopped during recovery:\n%s", serverErrors(log))
		}
		if sess == nil {
			// The restored cluster's roles are the backed-up cluster's:
			// the connection defaults (PGUSER, else postgres) apply, not the
			// OS user running walsnap. Not accepting connections yet is
			// the normal state early in recovery.
			sess, _ = pg.Connect(ctx, pg.ConnConfig{Host: o.SocketDir, Port: o.Port, ConnectTimeout: 2 * time.Second})
		}
		if sess != nil {
			st, err := sess.Recovery(ctx)
			if err != nil {
				sess.Close(context.Background())
				sess = nil
			} else {
				if st.ReplayLSN != "" {
					out.ReplayLSN = st.ReplayLSN
				}
				switch {
				case !st.InRecovery:
					out.State, out.Message = "promoted", "target reached; the server was promoted and accepts writes"
					return out, nil
				case st.Paused:
					out.State, out.Message = "paused", "target reached; recovery is paused: check the data, then run SELECT pg_wal_replay_resume() to promote (or restore again with another target)"
					return out, nil
				case o.Standby && o.Target.Kind == TargetEnd:
					out.State, out.Message = "standby", "the server runs as a standby, replaying WAL from the repository"
					return out, nil
				}
				if time.Since(lastReport) > 5*time.Second {
					fmt.Fprintf(o.Out, "recovering: replayed up to %s (target: %s)\n", st.ReplayLSN, o.Target)
					lastReport = time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("recovery did not finish in time (last replayed %s); the server is still running, see %s", out.ReplayLSN, o.LogFile)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// logTail returns the last n lines of the server log.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// serverErrors picks the lines that explain a failure from a log tail.
func serverErrors(log string) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "FATAL") || strings.Contains(l, "PANIC") || strings.Contains(l, "ERROR") || strings.Contains(l, "DETAIL") || strings.Contains(l, "HINT") {
			keep = append(keep, "  "+l)
		}
	}
	if len(keep) == 0 {
		return log
	}
	if len(keep) > 15 {
		keep = keep[len(keep)-15:]
	}
	return strings.Join(keep, "\n")
}
