package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// driveFlags are shared by archive and restore.
type driveFlags struct {
	corpus, pgdata, cmd, user, log, waitLocks string
	segments                                  int
	walsnap, paced                            bool
}

func (d *driveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.corpus, "corpus", "", "directory of WAL segments")
	fs.IntVar(&d.segments, "segments", 64, "segments to use (the last N of the corpus)")
	fs.StringVar(&d.pgdata, "pgdata", "", "fake PGDATA: the command runs here, WAL goes to pg_wal/ (created)")
	fs.StringVar(&d.cmd, "cmd", "", "command run by /bin/sh -c per segment; %p and %f as in PostgreSQL")
	fs.StringVar(&d.user, "user", "", "run the command as this user (and give it pg_wal)")
	fs.StringVar(&d.log, "log", "", "append the commands' stdout and stderr here")
	fs.StringVar(&d.waitLocks, "wait-locks", "", "after the run, wait until no process holds a flock on these files (globs, comma-separated)")
	fs.BoolVar(&d.walsnap, "walsnap", false, "the command is walsnap: break its log lines down in the details")
	fs.BoolVar(&d.paced, "paced", false, "walsnap only: before each call but the first, wait (untimed, up to 10 s) until walsnap's helper has the file ready "+
		"(the archiver's record, the prefetcher's commit), as when PostgreSQL calls no faster than the helpers work; MB/s then counts the calls only")
}

// awaitHelper waits, up to 10 s, until path exists (a walsnap helper's
// record of the file the next call is for).
func awaitHelper(path string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
}

var segName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// pickSegments returns the last n WAL segment names of the corpus, which
// must be consecutive (16 MiB segments).
func pickSegments(dir string, n int) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if segName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) < n {
		return nil, fmt.Errorf("corpus %s has %d segments, want %d", dir, len(names), n)
	}
	names = names[len(names)-n:]
	for i := 1; i < len(names); i++ {
		if names[i] != nextSegment(names[i-1]) {
			return nil, fmt.Errorf("corpus %s: %s does not follow %s", dir, names[i], names[i-1])
		}
	}
	return names, nil
}

// nextSegment names the segment after name, for 16 MiB segments.
func nextSegment(name string) string {
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	if seg++; seg == 0x100 {
		log, seg = log+1, 0
	}
	return fmt.Sprintf("%s%08X%08X", name[:8], log, seg)
}

// caller runs one archive or restore command the way PostgreSQL does:
// /bin/sh -c, from PGDATA, waiting for the shell only. Output goes straight
// to the log file (not a pipe), so a detached child that keeps stderr open
// does not hold the call up.
type caller struct {
	tmpl, dir string
	// title, when set, is the shell's argv[0]: PostgreSQL's archiver runs
	// archive_command under its process title, which walsnap looks for.
	title string
	cred  *syscall.Credential
	env   []string
	log   *os.File
}

func newCaller(d *driveFlags) (*caller, error) {
	if d.cmd == "" || d.pgdata == "" || d.corpus == "" || d.log == "" {
		return nil, errors.New("-cmd, -pgdata, -corpus and -log are required")
	}
	c := &caller{tmpl: d.cmd, dir: d.pgdata, env: os.Environ()}
	if d.user != "" {
		u, err := user.Lookup(d.user)
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		c.env = append(c.env, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	}
	f, err := os.OpenFile(d.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	c.log = f
	return c, nil
}

// own makes path belong to the command's user, if one was given.
func (c *caller) own(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// mkdir creates dirs (and parents) owned by the command's user.
func (c *caller) mkdir(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := c.own(d); err != nil {
			return err
		}
	}
	return nil
}

// call runs the command for one file and returns its wall and CPU time.
func (c *caller) call(i int, name, path string) (wall, cpu time.Duration, err error) {
	line := strings.NewReplacer("%p", path, "%f", name).Replace(c.tmpl)
	fmt.Fprintf(c.log, "### call %d %s\n", i, name)
	cmd := exec.Command("/bin/sh", "-c", line)
	if c.title != "" {
		cmd.Args[0] = c.title
	}
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = c.dir, c.env, c.log, c.log
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	t := time.Now()
	err = cmd.Run()
	wall = time.Since(t)
	code := -1
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
		code = ps.ExitCode()
	}
	fmt.Fprintf(c.log, "### end %d %s exit=%d ms=%.1f cpu_ms=%.1f\n", i, name, code, ms(wall), ms(cpu))
	if err != nil {
		err = fmt.Errorf("call %d (%s): %s: %w (output in %s)", i, name, line, err, c.log.Name())
	}
	return wall, cpu, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// link puts a corpus file at dst (hard link, else copy).
func link(src, dst string) error {
	if err := os.Link(src, dst); err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// cmdArchive emulates PostgreSQL's archiver over the corpus: in -mode
// single one segment arrives at a time (only it is in pg_wal, with a .ready
// file); in -mode backlog all are waiting. After each successful call the
// .ready file becomes .done, as PostgreSQL does.
func cmdArchive(args []string) error {
	fs := flag.NewFlagSet("archive", flag.ExitOnError)
	var d driveFlags
	d.register(fs)
	mode := fs.String("mode", "backlog", "single or backlog")
	var st s3Flags
	st.register(fs)
	var rf rowFlags
	rf.register(fs)
	fs.Parse(args)
	if *mode != "single" && *mode != "backlog" {
		return fmt.Errorf("-mode %q: want single or backlog", *mode)
	}
	c, err := newCaller(&d)
	if err != nil {
		return err
	}
	// Called as PostgreSQL's archiver calls archive_command: the shell
	// that runs the command shows the archiver's process title.
	c.title = "postgres: archiver (walbench)"
	defer c.log.Close()
	names, err := pickSegments(d.corpus, d.segments)
	if err != nil {
		return err
	}
	walDir := filepath.Join(d.pgdata, "pg_wal")
	status := filepath.Join(walDir, "archive_status")
	if err := c.mkdir(d.pgdata, walDir, status); err != nil {
		return err
	}
	stage := func(n string) error {
		if err := link(filepath.Join(d.corpus, n), filepath.Join(walDir, n)); err != nil {
			return err
		}
		ready := filepath.Join(status, n+".ready")
		if err := os.WriteFile(ready, nil, 0o600); err != nil {
			return err
		}
		return c.own(ready)
	}
	if *mode == "backlog" {
		for _, n := range names {
			if err := stage(n); err != nil {
				return err
			}
		}
	}

	var lat, cpu []time.Duration
	var raw int64
	smp := startSample(rf.minioPID)
	start := time.Now()
	for i, n := range names {
		if *mode == "single" {
			if err := stage(n); err != nil {
				return err
			}
		}
		if d.paced && i > 0 {
			awaitHelper(filepath.Join(walDir, ".walsnap", "pushed", n))
		}
		wall, cp, err := c.call(i, n, "pg_wal/"+n)
		if err != nil {
			return err
		}
		lat, cpu = append(lat, wall), append(cpu, cp)
		if err := os.Rename(filepath.Join(status, n+".ready"), filepath.Join(status, n+".done")); err != nil {
			return err
		}
		fi, err := os.Stat(filepath.Join(walDir, n))
		if err != nil {
			return err
		}
		raw += fi.Size()
	}
	wall := time.Since(start)
	if *mode == "single" || d.paced {
		// Segments arrive at PostgreSQL's pace: count only the calls.
		wall = sum(lat)
	}
	use := smp.stop()
	if err := waitLocks(d.waitLocks); err != nil {
		return err
	}

	row := rf.row(rf.id, rf.label)
	row.fill(len(names), raw, wall, lat)
	row.addUsage(use)
	if st.bucket != "" {
		b, n, err := st.storedBytes(context.Background())
		if err != nil {
			return err
		}
		row.StoredMiB = float64(b) / (1 << 20)
		row.Details = append(row.Details, fmt.Sprintf("stored: %d objects, %d bytes under s3://%s/%s (raw %d bytes, ratio %.1f)", n, b, st.bucket, st.prefix, raw, float64(raw)/float64(max(1, b))))
	}
	row.Details = append(row.Details, cpuDetail(lat, cpu), use.account(sum(cpu)))
	if d.walsnap {
		details, served := pushDetails(d.log, lat)
		row.Details = append(row.Details, details...)
		if len(served) > 0 {
			row.ServedP50ms = percentile(served, 0.5)
		}
	}
	return row.append(rf.out)
}

// cmdRestore emulates recovery: restore_command for each segment in order
// into pg_wal/RECOVERYXLOG, which is read whole after the call (replay
// reads it; here it is compared byte for byte with the corpus) and removed
// before the next call, as PostgreSQL does. Keeping the restored files
// instead (as this did before) is no recovery's memory: on this VM a GiB
// of page cache kept makes every restored file's pages fresh host memory,
// 40-55 ms of kernel time per 16 MiB instead of ~15 (see the README).
func cmdRestore(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ExitOnError)
	var d driveFlags
	d.register(fs)
	var rf rowFlags
	rf.register(fs)
	fs.Parse(args)
	c, err := newCaller(&d)
	if err != nil {
		return err
	}
	defer c.log.Close()
	names, err := pickSegments(d.corpus, d.segments)
	if err != nil {
		return err
	}
	walDir := filepath.Join(d.pgdata, "pg_wal")
	if err := c.mkdir(d.pgdata, walDir); err != nil {
		return err
	}
	var lat, cpu []time.Duration
	var got, want []byte
	var raw int64
	xlog := filepath.Join(walDir, "RECOVERYXLOG")
	smp := startSample(rf.minioPID)
	start := time.Now()
	for i, n := range names {
		if d.paced && i > 0 {
			awaitHelper(filepath.Join(walDir, ".walsnap", "prefetch", n+".ok"))
		}
		wall, cp, err := c.call(i, n, "pg_wal/RECOVERYXLOG")
		if err != nil {
			return err
		}
		lat, cpu = append(lat, wall), append(cpu, cp)
		fi, err := os.Stat(xlog)
		if err != nil {
			return fmt.Errorf("call %d (%s) succeeded but: %w", i, n, err)
		}
		raw += fi.Size()
		if got, err = readInto(got, xlog); err != nil {
			return err
		}
		if want, err = readInto(want, filepath.Join(d.corpus, n)); err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("restored %s differs from the corpus", n)
		}
		if err := os.Remove(xlog); err != nil {
			return err
		}
	}
	wall := time.Since(start)
	if d.paced {
		wall = sum(lat)
	}
	use := smp.stop()
	if err := waitLocks(d.waitLocks); err != nil {
		return err
	}
	row := rf.row(rf.id, rf.label)
	row.fill(len(names), raw, wall, lat)
	row.addUsage(use)
	row.Details = append(row.Details, fmt.Sprintf("all %d restored files verified byte for byte against the corpus", len(names)), cpuDetail(lat, cpu), use.account(sum(cpu)))
	if d.walsnap {
		details, served := fetchDetails(d.log, lat)
		row.Details = append(row.Details, details...)
		if len(served) > 0 {
			row.ServedP50ms = percentile(served, 0.5)
		}
	}
	return row.append(rf.out)
}

// readInto reads the file at path into buf's memory (grown if need be).
func readInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	if int64(cap(buf)) < fi.Size() {
		buf = make([]byte, fi.Size())
	}
	buf = buf[:fi.Size()]
	_, err = io.ReadFull(f, buf)
	return buf, err
}

// cmdStartup times a command that does no I/O (e.g. "walsnap --help"): the
// floor of any per-segment call.
func cmdStartup(args []string) error {
	fs := flag.NewFlagSet("startup", flag.ExitOnError)
	cmdLine := fs.String("cmd", "", "command for /bin/sh -c")
	n := fs.Int("n", 30, "runs")
	var rf rowFlags
	rf.register(fs)
	fs.Parse(args)
	var lat, cpu []time.Duration
	smp := startSample(0)
	for range *n {
		cmd := exec.Command("/bin/sh", "-c", *cmdLine)
		t := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", *cmdLine, err)
		}
		lat = append(lat, time.Since(t))
		cpu = append(cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	}
	row := rf.row(rf.id, rf.label)
	row.P50ms, row.P99ms, row.MBps, row.Segments = percentile(lat, 0.5), percentile(lat, 0.99), -1, *n
	row.Notes = join(row.Notes, fmt.Sprintf("%d runs, cpu p50 %.1f ms", *n, percentile(cpu, 0.5)))
	row.addUsage(smp.stop())
	return row.append(rf.out)
}

// waitLocks waits until no process holds a flock on the files matching the
// comma-separated globs (background workers: walsnap's prefetcher,
// pgBackRest's async process), so that they do not run into the next
// measurement. It first gives a just-started worker time to take its lock.
func waitLocks(globs string) error {
	if globs == "" {
		return nil
	}
	time.Sleep(300 * time.Millisecond)
	deadline := time.Now().Add(2 * time.Minute)
	for g := range strings.SplitSeq(globs, ",") {
		files, _ := filepath.Glob(g)
		for _, f := range files {
			for locked(f) {
				if time.Now().After(deadline) {
					return fmt.Errorf("%s still locked after 2 minutes", f)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return nil
}

func locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func cpuDetail(lat, cpu []time.Duration) string {
	return fmt.Sprintf("%d calls; per call: wall p50 %.1f / p99 %.1f ms, CPU of the called process (user+sys, waited-for children only) p50 %.1f / p99 %.1f ms, total %.2f s",
		len(lat), percentile(lat, 0.5), percentile(lat, 0.99), percentile(cpu, 0.5), percentile(cpu, 0.99), sum(cpu).Seconds())
}

// logCall is one call's section of a command log: the walsnap slog lines
// between the driver's "### call" and "### end" markers.
type logCall struct {
	name  string
	lines []map[string]string
}

// readCalls splits a log into calls, keeping lines of the given walsnap
// command (cmd=...). Lines of detached children (the prefetcher) are
// returned separately.
func readCalls(path, command string) (calls []logCall, background []map[string]string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var cur *logCall
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "### call "); ok {
			calls = append(calls, logCall{name: strings.Fields(rest)[1]})
			cur = &calls[len(calls)-1]
			continue
		}
		kv := parseSlog(line)
		switch {
		case kv["cmd"] == command && cur != nil:
			cur.lines = append(cur.lines, kv)
		case kv["cmd"] != "":
			background = append(background, kv)
		}
	}
	return calls, background, sc.Err()
}

// parseSlog parses a slog text line (key=value, values possibly quoted).
func parseSlog(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(k, " \"") {
			return kv
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		kv[k] = v
		line = rest
	}
	return kv
}

func msOf(kv map[string]string) time.Duration {
	n, _ := strconv.Atoi(kv["ms"])
	return time.Duration(n) * time.Millisecond
}

// pushDetails breaks wal-push calls down from walsnap's per-file log lines
// (file, bytes_in, bytes_out, ms and the stages read_ms, sha256_ms,
// compress_ms, put_ms), those of the calls and those of the background
// archiver (cmd=wal-archiver).
func pushDetails(log string, lat []time.Duration) ([]string, []time.Duration) {
	calls, bg, err := readCalls(log, "wal-push")
	if err != nil || len(calls) != len(lat) {
		return []string{fmt.Sprintf("cannot break the log down (%v, %d calls logged, %d made)", err, len(calls), len(lat))}, nil
	}
	var own, ownFile, overhead, served []time.Duration
	var byFrontEnd []time.Duration
	var stages [4][]time.Duration
	var bytesIn, bytesOut, files, byArchiver, twice int
	count := func(kv map[string]string) {
		if kv["msg"] == "already archived" {
			twice++
		}
		if n, err := strconv.Atoi(kv["bytes_out"]); err == nil {
			o, _ := strconv.Atoi(kv["bytes_in"])
			bytesIn, bytesOut, files = bytesIn+o, bytesOut+n, files+1
		}
		for i, k := range []string{"read_ms", "sha256_ms", "compress_ms", "put_ms"} {
			if v, err := strconv.ParseFloat(kv[k], 64); err == nil {
				stages[i] = append(stages[i], time.Duration(v*float64(time.Millisecond)))
			}
		}
	}
	for i, c := range calls {
		for _, kv := range c.lines {
			if kv["file"] != c.name {
				continue
			}
			switch kv["msg"] {
			case "archived (by the background archiver)":
				served = append(served, lat[i])
				if kv["by"] == "walsnap-pg" {
					byFrontEnd = append(byFrontEnd, lat[i])
				}
			case "archived", "already archived":
				count(kv)
				own = append(own, lat[i])
				ownFile = append(ownFile, msOf(kv))
				overhead = append(overhead, lat[i]-msOf(kv))
			}
		}
	}
	for _, kv := range bg {
		if kv["cmd"] == "wal-archiver" && (kv["msg"] == "archived" || kv["msg"] == "already archived") {
			count(kv)
			byArchiver++
		}
	}
	out := []string{fmt.Sprintf("walsnap log: %d files uploaded (%d by PostgreSQL's own calls, %d by the background archiver; %d found already archived), %.1f MiB in → %.1f MiB out (ratio %.1f)",
		files, files-byArchiver, byArchiver, twice, float64(bytesIn)/(1<<20), float64(bytesOut)/(1<<20), float64(bytesIn)/float64(max(1, bytesOut)))}
	if len(stages[0]) > 0 {
		out = append(out, fmt.Sprintf("per file, p50: read %.1f ms, sha256 %.1f ms ∥ compress %.1f ms, PUT %.1f ms",
			percentile(stages[0], 0.5), percentile(stages[1], 0.5), percentile(stages[2], 0.5), percentile(stages[3], 0.5)))
	}
	if len(own) > 0 {
		out = append(out, fmt.Sprintf("%d calls uploaded their own file: call p50 %.1f / p99 %.1f ms = file p50 %.1f ms + outside the file p50 %.1f / p99 %.1f ms (exec, Go runtime, config, identity, spool sweep, exit)",
			len(own), percentile(own, 0.5), percentile(own, 0.99), percentile(ownFile, 0.5), percentile(overhead, 0.5), percentile(overhead, 0.99)))
	}
	if len(served) > 0 {
		out = append(out, fmt.Sprintf("%d calls returned from the archiver's record (no upload): call p50 %.1f / p99 %.1f ms, total %.2f s of the run%s",
			len(served), percentile(served, 0.5), percentile(served, 0.99), sum(served).Seconds(), frontEndShare(byFrontEnd)))
	}
	return out, served
}

// frontEndShare describes the calls walsnap-pg answered itself.
func frontEndShare(lat []time.Duration) string {
	if len(lat) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of them answered by walsnap-pg itself: p50 %.1f / p99 %.1f ms", len(lat), percentile(lat, 0.5), percentile(lat, 0.99))
}

// fetchDetails breaks wal-fetch calls down: served from the prefetch spool
// or downloaded by the call itself.
func fetchDetails(log string, lat []time.Duration) ([]string, []time.Duration) {
	calls, bg, err := readCalls(log, "wal-fetch")
	if err != nil || len(calls) != len(lat) {
		return []string{fmt.Sprintf("cannot break the log down (%v, %d calls logged, %d made)", err, len(calls), len(lat))}, nil
	}
	var pre, direct, directFile []time.Duration
	var byFrontEnd []time.Duration
	for i, c := range calls {
		for _, kv := range c.lines {
			switch kv["msg"] {
			case "restored (prefetched)":
				pre = append(pre, lat[i])
				if kv["by"] == "walsnap-pg" {
					byFrontEnd = append(byFrontEnd, lat[i])
				}
			case "restored":
				direct = append(direct, lat[i])
				directFile = append(directFile, msOf(kv))
			}
		}
	}
	var out []string
	if len(pre) > 0 {
		out = append(out, fmt.Sprintf("%d calls served from the prefetch spool: call p50 %.1f / p99 %.1f ms, total %.2f s%s",
			len(pre), percentile(pre, 0.5), percentile(pre, 0.99), sum(pre).Seconds(), frontEndShare(byFrontEnd)))
	}
	if len(direct) > 0 {
		out = append(out, fmt.Sprintf("%d calls downloaded their file: call p50 %.1f / p99 %.1f ms (logged download+verify+fsync p50 %.1f ms), total %.2f s",
			len(direct), percentile(direct, 0.5), percentile(direct, 0.99), percentile(directFile, 0.5), sum(direct).Seconds()))
	}
	warn := 0
	for _, kv := range bg {
		if kv["level"] == "WARN" || kv["level"] == "ERROR" {
			warn++
		}
	}
	if warn > 0 {
		out = append(out, fmt.Sprintf("prefetcher logged %d warnings/errors (see the log)", warn))
	}
	return out, pre
}
