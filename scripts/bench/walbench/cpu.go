package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// markEnv names the work directory of the bench: a process whose command
// line contains it is part of the bench (walsnap, pgBackRest and their
// background workers, MinIO, this driver); any other is another job
// sharing the machine. A scan of /proc every 100 ms adds up the others'
// CPU; processes that live less than that are missed.
const markEnv = "WALBENCH_MARK"

const hz = 100 // USER_HZ, the unit of /proc CPU times

// sample measures CPU use during a run: the whole host, the MinIO process
// and other jobs.
type sample struct {
	cpu      cpuTimes
	minio    uint64
	minioPID int
	load     string
	at       time.Time
	others   *othersMeter
}

func startSample(minioPID int) sample {
	s := sample{minioPID: minioPID, at: time.Now()}
	s.cpu = procStat()
	s.minio = procCPU(minioPID)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		s.load = strings.Fields(string(b))[0]
	}
	s.others = startOthers()
	return s
}

// usage is the CPU use during a run.
type usage struct {
	text   string  // for the notes column
	others float64 // other jobs, % of one core; -1: unknown
	// CPU seconds (of one core) over the run.
	host, minio, otherJobs float64
}

// account breaks the host's CPU time of a run down, given the CPU time of
// the commands the driver ran and waited for.
func (u usage) account(calls time.Duration) string {
	rest := u.host - calls.Seconds() - u.minio - max(0, u.otherJobs)
	return fmt.Sprintf("host CPU %.2f s = calls %.2f s + MinIO %.2f s + other jobs (sampled) %.2f s + rest %.2f s "+
		"(detached workers such as walsnap's prefetcher or pgBackRest's async process, kernel, the driver, short-lived processes of other jobs)",
		u.host, calls.Seconds(), u.minio, max(0, u.otherJobs), rest)
}

// stop describes CPU use since s, in % of one core: host (of 100% × cores),
// other jobs, MinIO, and the 1-minute load average when the run began.
func (s sample) stop() usage {
	now := procStat()
	secs := time.Since(s.at).Seconds()
	host := now.pct(s.cpu, now.busy-s.cpu.busy)
	u := usage{text: fmt.Sprintf("host cpu %.0f%%/%d%%", host, 100*runtime.NumCPU()), others: -1, host: host / 100 * secs}
	if io := now.pct(s.cpu, now.iowait-s.cpu.iowait); io >= 5 {
		u.text += fmt.Sprintf(", iowait %.0f%%", io)
	}
	if st := now.pct(s.cpu, now.steal-s.cpu.steal); st >= 5 {
		u.text += fmt.Sprintf(", steal %.0f%%", st)
	}
	if s.others != nil {
		u.others = s.others.stop()
		u.otherJobs = u.others / 100 * secs
		u.text += fmt.Sprintf(" (other jobs %.0f%%)", u.others)
	}
	if s.minioPID > 0 {
		u.minio = float64(procCPU(s.minioPID)-s.minio) / hz
		u.text += fmt.Sprintf(", minio %.0f%%", 100*u.minio/secs)
	}
	u.text += ", load " + s.load
	return u
}

// othersMeter measures other jobs' CPU over a period.
type othersMeter struct {
	at    time.Time
	watch *othersWatch
}

// startOthers returns nil when WALBENCH_MARK is not set.
func startOthers() *othersMeter {
	mark := os.Getenv(markEnv)
	if mark == "" {
		return nil
	}
	return &othersMeter{at: time.Now(), watch: watchOthers(mark)}
}

// stop returns other jobs' CPU since start, in % of one core.
func (m *othersMeter) stop() float64 {
	return m.watch.stop() / time.Since(m.at).Seconds()
}

// othersWatch sums the CPU time of processes that are not the bench's.
type othersWatch struct {
	mark  string
	start uint64 // boot-relative start of the watch, jiffies
	seen  map[int]procSeen
	ticks uint64 // CPU of other processes since the watch began
	quit  chan chan uint64
}

type procSeen struct {
	startTime, cpu uint64
	other          bool
}

func watchOthers(mark string) *othersWatch {
	w := &othersWatch{mark: mark, seen: map[int]procSeen{}, quit: make(chan chan uint64)}
	w.start = uptimeTicks()
	w.scan(true)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				w.scan(false)
			case reply := <-w.quit:
				w.scan(false)
				reply <- w.ticks
				return
			}
		}
	}()
	return w
}

// stop ends the watch and returns the other jobs' CPU in %·s of one core.
func (w *othersWatch) stop() float64 {
	reply := make(chan uint64)
	w.quit <- reply
	return 100 * float64(<-reply) / hz
}

// scan adds the CPU other processes used since the last scan. A process
// first seen after the watch began counts from its start (one that lives
// less than a scan interval is missed). Kernel threads are not counted.
func (w *othersWatch) scan(initial bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cpu, started, ok := procTimes(pid)
		if !ok {
			continue
		}
		prev, known := w.seen[pid]
		if known && prev.startTime != started {
			known = false // pid reused
		}
		if !known {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			prev = procSeen{startTime: started, other: len(cmd) > 0 && !bytes.Contains(cmd, []byte(w.mark))}
			if initial || started < w.start {
				prev.cpu = cpu // count from now on
			}
		}
		if prev.other && !initial && cpu > prev.cpu {
			w.ticks += cpu - prev.cpu
		}
		prev.cpu = cpu
		w.seen[pid] = prev
	}
}

// procTimes returns utime+stime and the start time (jiffies since boot).
func procTimes(pid int) (cpu, started uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // from field 3 (state)
	if len(f) < 20 {
		return 0, 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	started, _ = strconv.ParseUint(f[19], 10, 64)
	return u + st, started, true
}

// procCPU returns utime+stime of a process in jiffies (0 if unknown).
func procCPU(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	cpu, _, _ := procTimes(pid)
	return cpu
}

func uptimeTicks() uint64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	secs, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return uint64(secs * hz)
}

// cpuTimes are /proc/stat jiffies summed over all CPUs.
type cpuTimes struct{ busy, iowait, steal, total uint64 }

// pct converts jiffies spent since then into % of one core.
func (t cpuTimes) pct(then cpuTimes, jiffies uint64) float64 {
	return 100 * float64(runtime.NumCPU()) * float64(jiffies) / float64(max(1, t.total-then.total))
}

func procStat() cpuTimes {
	var t cpuTimes
	f, err := os.Open("/proc/stat")
	if err != nil {
		return t
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range fields[1:min(len(fields), 9)] {
		n, _ := strconv.ParseUint(v, 10, 64)
		t.total += n
		switch i {
		case 3: // idle
		case 4:
			t.iowait += n
		case 7:
			t.steal += n
		default:
			t.busy += n
		}
	}
	return t
}

// cmdQuiet waits (up to -timeout) until other jobs use less than -max % of
// one core over -window, so that a run does not start in a burst of them.
func cmdQuiet(args []string) error {
	fs := flag.NewFlagSet("quiet", flag.ExitOnError)
	limit := fs.Float64("max", 50, "% of one core other jobs may use")
	timeout := fs.Duration("timeout", 45*time.Second, "give up waiting after this")
	window := fs.Duration("window", time.Second, "measuring window")
	verbose := fs.Bool("v", false, "print each measurement")
	fs.Parse(args)
	if startOthers() == nil {
		return fmt.Errorf("%s is not set", markEnv)
	}
	start := time.Now()
	for {
		m := startOthers()
		time.Sleep(*window)
		pct := m.stop()
		if *verbose {
			fmt.Printf("  other jobs: %.0f%% of a core\n", pct)
		}
		switch {
		case pct < *limit:
			if waited := time.Since(start); waited > 2*time.Second {
				fmt.Printf("  waited %.0f s for other jobs to calm down (now %.0f%% of a core)\n", waited.Seconds(), pct)
			}
			return nil
		case time.Since(start) >= *timeout:
			if *timeout > 0 {
				fmt.Printf("  other jobs still use %.0f%% of a core after %.0f s: going on; expect noise\n", pct, timeout.Seconds())
			}
			return nil
		}
	}
}
