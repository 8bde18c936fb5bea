package restore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	PGBin     string // directory of pg_ctl; "" = found (see findPGCtl)
	Owner     string // user to run the server as when walsnap runs as root ("" = postgres)
	Port      int    // 0 = the port in the restored configuration
	SocketDir string // "" = the restored configuration's; also where walsnap connects
	// NoTCP starts the server without a TCP listener (listen_addresses
	// empty): only the unix socket in SocketDir, which must be given.
	NoTCP bool
	// Settings are more server settings, as -c name=value (they override
	// every configuration file).
	Settings [][2]string
	// User is the role walsnap connects as to follow recovery ("" =
	// $PGUSER, else postgres).
	User    string
	LogFile string // server log; "" = <pgdata>.walsnap-restore.log next to PGData
	Target  Target
	Standby bool
	// Archiving says whether the server keeps the backup's archiving
	// (--archive-mode preserve), for the final message.
	Archiving bool
	Out       io.Writer     // progress lines
	Timeout   time.Duration // 0 = no limit beyond ctx
}

// Outcome is how recovery ended.
type Outcome struct {
	State     string // promoted, paused, shutdown, standby
	ReplayLSN string
	Message   string
	LogFile   string
	PGCtl     string // the pg_ctl that started the server
	Port      int    // the port it listens on (its socket's number)
	SocketDir string // where its socket is ("": the configured default)
}

// Start starts the restored server with pg_ctl and follows recovery until
// the target is reached (paused, promoted or shut down per the target
// action), the server runs as a standby, or the server fails; then it
// returns the outcome or an error carrying the server's own messages. It
// refuses a port that a server on this host already uses.
func Start(ctx context.Context, o StartOptions) (*Outcome, error) {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	pgctl, err := FindPGCtl(o.PGBin, o.Major)
	if err != nil {
		return nil, err
	}
	// The server's own options, for pg_ctl -o: the port and socket
	// directory given; those not given are the restored configuration's,
	// which walsnap reads to check the port and to connect.
	var opts []string
	if o.Port != 0 {
		opts = append(opts, "-p", strconv.Itoa(o.Port))
	} else {
		o.Port = configuredPort(o.PGData)
	}
	if o.SocketDir != "" {
		opts = append(opts, "-k", o.SocketDir)
	} else if o.NoTCP {
		return nil, errors.New("start without TCP: a socket directory is required")
	} else {
		o.SocketDir = configuredSocketDir(o.PGData)
	}
	settings := o.Settings
	if o.NoTCP {
		settings = append([][2]string{{"listen_addresses", ""}}, settings...)
	}
	for _, kv := range settings {
		// pg_ctl hands the options to /bin/sh.
		opts = append(opts, "-c", shellQuote(kv[0]+"="+kv[1]))
	}
	check := CheckPort
	if o.NoTCP {
		check = checkSocket
	}
	if err := check(o.Port, o.SocketDir); err != nil {
		return nil, fmt.Errorf("%w; the restored data directory %s is ready: restore again with --force and those flags, or start it yourself", err, o.PGData)
	}
	if o.LogFile == "" {
		o.LogFile = filepath.Clean(o.PGData) + ".walsnap-restore.log"
	}
	args := []string{"-D", o.PGData, "-l", o.LogFile, "-W", "start"}
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
	where := fmt.Sprintf("port %d", o.Port)
	if o.NoTCP {
		where = "socket " + filepath.Join(o.SocketDir, fmt.Sprintf(".s.PGSQL.%d", o.Port)) + ", no TCP"
	}
	fmt.Fprintf(o.Out, "server starting on %s (log: %s); recovering to %s\n", where, o.LogFile, o.Target)
	out, err := follow(ctx, o)
	if out != nil {
		out.PGCtl, out.Port, out.SocketDir = pgctl, o.Port, o.SocketDir
	}
	return out, err
}

// Stop stops the server of pgdata with pgctl, as owner when walsnap runs
// as root: a fast shutdown, then an immediate one when it is not down
// within wait. A server that is not running is no error.
func Stop(ctx context.Context, pgctl, pgdata, owner string, wait time.Duration) error {
	if _, running := pg.RunningPostmaster(pgdata); !running {
		return nil
	}
	cred, err := credential(owner)
	if err != nil {
		return err
	}
	var errs []error
	for _, mode := range []string{"fast", "immediate"} {
		cmd := exec.CommandContext(ctx, pgctl, "-D", pgdata, "-m", mode, "-w", "-t", strconv.Itoa(int(max(wait, time.Second).Seconds())), "stop")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		if _, running := pg.RunningPostmaster(pgdata); !running {
			return nil
		}
		errs = append(errs, fmt.Errorf("pg_ctl stop -m %s: %v: %s", mode, err, strings.TrimSpace(string(out))))
	}
	return errors.Join(errs...)
}

// pgBinLayouts are where PostgreSQL's programs of one major version live:
// Debian and Ubuntu's packages, then PGDG's RPMs (RHEL and its kin).
var pgBinLayouts = []string{"/usr/lib/postgresql/%d/bin", "/usr/pgsql-%d/bin"}

// FindPGCtl returns the pg_ctl of PostgreSQL major: in bin when given
// (--pg-bin); else in the packaged layouts (/usr/lib/postgresql/N/bin,
// /usr/pgsql-N/bin); else in `pg_config --bindir`, then on PATH, when
// that one is of the same major.
func FindPGCtl(bin string, major int) (string, error) {
	return findPGCtl(bin, major, pgBinLayouts)
}

func findPGCtl(bin string, major int, layouts []string) (string, error) {
	if bin != "" {
		p := filepath.Join(bin, "pg_ctl")
		if !fileExists(p) {
			return "", fmt.Errorf("pg_ctl not found in --pg-bin %s", bin)
		}
		return p, nil
	}
	var looked []string
	for _, l := range layouts {
		dir := fmt.Sprintf(l, major)
		if p := filepath.Join(dir, "pg_ctl"); fileExists(p) {
			return p, nil
		}
		looked = append(looked, dir)
	}
	var candidates []string
	if pgconfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgconfig, "--bindir").Output(); err == nil {
			candidates = append(candidates, filepath.Join(strings.TrimSpace(string(out)), "pg_ctl"))
		}
	}
	looked = append(looked, "pg_config --bindir")
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		candidates = append(candidates, p)
	}
	looked = append(looked, "PATH")
	for _, p := range candidates {
		if !fileExists(p) {
			continue
		}
		got, err := pgCtlMajor(p)
		if err != nil {
			looked = append(looked, fmt.Sprintf("%s (%v)", p, err))
			continue
		}
		if got == major {
			return p, nil
		}
		looked = append(looked, fmt.Sprintf("%s (PostgreSQL %d)", p, got))
	}
	return "", fmt.Errorf("pg_ctl for PostgreSQL %d not found (looked in %s): give --pg-bin", major, strings.Join(looked, ", "))
}

// pgCtlMajor asks a pg_ctl for its major version ("pg_ctl (PostgreSQL) 15.10 ...").
func pgCtlMajor(pgctl string) (int, error) {
	out, err := exec.Command(pgctl, "--version").Output()
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(out), "(PostgreSQL) ")
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if !ok || end <= 0 {
		return 0, fmt.Errorf("unexpected --version output %q", strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(rest[:end])
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

// defaultSocketDirs are where PostgreSQL's sockets usually are when the
// configuration names none: Debian's and PGDG's directory, and upstream's.
var defaultSocketDirs = []string{"/var/run/postgresql", "/tmp"}

// checkSocket refuses a port whose unix socket in socketDir a server
// already answers on.
func checkSocket(port int, socketDir string) error {
	sock := filepath.Join(socketDir, fmt.Sprintf(".s.PGSQL.%d", port))
	if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("a server already answers on %s", sock)
	}
	return nil
}

// CheckPort refuses a port on which a server on this host already answers,
// over TCP on the loopback addresses or on its unix socket in socketDir
// ("" = the usual directories): a restored copy started on it would
// collide with that server (typically the running source).
func CheckPort(port int, socketDir string) error {
	dirs := defaultSocketDirs
	if socketDir != "" {
		dirs = []string{socketDir}
	}
	var where []string
	for _, d := range dirs {
		where = append(where, "unix:"+filepath.Join(d, fmt.Sprintf(".s.PGSQL.%d", port)))
	}
	where = append(where, "tcp:"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "tcp:"+net.JoinHostPort("::1", strconv.Itoa(port)))
	for _, w := range where {
		network, addr, _ := strings.Cut(w, ":")
		conn, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		return fmt.Errorf("port %d is in use on this host (a server answers on %s): a copy restored next to a running server "+
			"needs a free --port and its own --socket-dir (e.g. --port 5433 --socket-dir /tmp)", port, addr)
	}
	return nil
}

// configuredPort is the port the restored configuration names
// (postgresql.conf, then postgresql.auto.conf), else PostgreSQL's default.
func configuredPort(pgdata string) int {
	if p, err := strconv.Atoi(confSetting(pgdata, "port")); err == nil && p > 0 {
		return p
	}
	return pg.DefaultPort
}

// configuredSocketDir is the first unix_socket_directories entry of the
// restored configuration, or "" (the server's built-in default).
func configuredSocketDir(pgdata string) string {
	first, _, _ := strings.Cut(confSetting(pgdata, "unix_socket_directories"), ",")
	return strings.TrimSpace(first)
}

// confSetting reads a setting from postgresql.conf and postgresql.auto.conf
// in pgdata, the last one winning as in PostgreSQL; "" when absent.
// Included files are not followed.
func confSetting(pgdata, name string) string {
	val := ""
	for _, f := range []string{"postgresql.conf", "postgresql.auto.conf"} {
		data, err := os.ReadFile(filepath.Join(pgdata, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			line, _, _ = strings.Cut(line, "#")
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				k, v, ok = strings.Cut(strings.TrimSpace(line), " ")
			}
			if ok && strings.EqualFold(strings.TrimSpace(k), name) {
				val = strings.Trim(strings.TrimSpace(v), "'")
			}
		}
	}
	return val
}

// postmasterStatus is the status line of postmaster.pid (PostgreSQL 10+):
// "starting", "ready", "standby" or "stopping"; "" without one.
func postmasterStatus(pgdata string) string {
	data, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 8 {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// follow polls the server until recovery has an outcome. It connects only
// once the postmaster says it accepts connections (standby or ready), so
// that the server's log gets no "not yet accepting connections" lines from
// it; until then it reports the WAL files restored so far.
func follow(ctx context.Context, o StartOptions) (*Outcome, error) {
	out := &Outcome{LogFile: o.LogFile}
	lastReport := time.Now() // the first report comes after 5 s: a short recovery needs none
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
		status := postmasterStatus(o.PGData)
		if sess == nil && (status == "standby" || status == "ready") {
			// The restored cluster's roles are the backed-up cluster's:
			// the connection defaults (PGUSER, else postgres) apply, not the
			// OS user running walsnap.
			sess, _ = pg.Connect(ctx, pg.ConnConfig{Host: o.SocketDir, Port: o.Port, User: o.User, ConnectTimeout: 2 * time.Second})
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
					out.State, out.Message = "promoted", "target reached; the server was promoted and accepts writes; "+archivingNote(o.Archiving)
					return out, nil
				case st.Paused:
					out.State, out.Message = "paused", pausedMessage(o.Archiving)
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
		} else if time.Since(lastReport) > 5*time.Second && alive {
			msg := "recovering: the server accepts no connections yet (not yet consistent, or hot_standby is off)"
			if f := lastRestored(o.LogFile); f != "" {
				msg += "; last WAL file restored " + f
			}
			fmt.Fprintln(o.Out, msg)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			why := "recovery did not finish in time"
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "interrupted while recovering"
			}
			return nil, fmt.Errorf("%s (last replayed %s); the server is still running, see %s", why, out.ReplayLSN, o.LogFile)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// archivingNote says whether the server archives into the repository.
func archivingNote(archiving bool) string {
	if archiving {
		return "it archives its new timeline into the repository (--archive-mode preserve)"
	}
	return "it does not archive into the repository (archive_mode = off; to replace the primary, restore with --archive-mode preserve)"
}

// pausedMessage explains a recovery paused at its target, and how to look
// at the data without waiting on the locks the paused replay still holds.
func pausedMessage(archiving bool) string {
	return "target reached; recovery is paused. The paused server still holds the locks of the transactions it " +
		"replayed but did not see end, such as the one after the target that dropped or rewrote a table: a query " +
		"on such a table waits until recovery resumes (SET lock_timeout = '5s' first to find out safely). To inspect " +
		"without that, restore a throwaway copy with --target-action promote, or stop before that transaction with " +
		"--target-inclusive=false or an earlier --target-lsn. SELECT pg_wal_replay_resume() promotes this server; " +
		"after that " + archivingNote(archiving)
}

// lastRestored is the WAL file the server last reported restored from the
// archive, from its log; "" when none is found.
func lastRestored(logFile string) string {
	const marker = `restored log file "`
	tail := logTail(logFile, 50)
	i := strings.LastIndex(tail, marker)
	if i < 0 {
		return ""
	}
	name, _, _ := strings.Cut(tail[i+len(marker):], `"`)
	return name
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

// connectionNoise are the messages a server logs when a client connects
// before it accepts connections: not the server's own errors.
var connectionNoise = []string{"not yet accepting connections", "the database system is starting up",
	"Consistent recovery state has not been yet reached", "the database system is shutting down"}

// serverErrors picks the lines that explain a failure from a log tail,
// leaving out clients' refused connection attempts.
func serverErrors(log string) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if slices.ContainsFunc(connectionNoise, func(n string) bool { return strings.Contains(l, n) }) {
			continue
		}
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
