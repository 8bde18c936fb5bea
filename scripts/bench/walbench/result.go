package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Result is one measured run: one row of the table.
type Result struct {
	ID        string  `json:"id"` // stable key, used by the targets
	Label     string  `json:"label"`
	Endpoint  string  `json:"endpoint"`
	Rep       int     `json:"rep"`
	Segments  int     `json:"segments"`
	RawBytes  int64   `json:"raw_bytes"`
	WallSec   float64 `json:"wall_s"`
	MBps      float64 `json:"mb_per_s"` // raw bytes / wall time, 10^6 bytes/s
	P50ms     float64 `json:"p50_ms"`   // per call (or request); -1: n/a
	P99ms     float64 `json:"p99_ms"`
	StoredMiB float64 `json:"stored_mib"` // -1: n/a
	Notes     string  `json:"notes"`
	OthersPct float64 `json:"others_pct"` // CPU of other jobs during the run, % of one core; -1: unknown
	// ServedP50ms is the p50 of the calls that did no transfer of their
	// own: pushes answered from the archiver's record, fetches served
	// from the prefetch spool (0: none).
	ServedP50ms float64  `json:"served_p50_ms,omitempty"`
	Details     []string `json:"details,omitempty"` // for the markdown's details section
}

// rowFlags are the flags every measuring command shares.
type rowFlags struct {
	id, label, endpoint, notes, out string
	rep, minioPID                   int
}

func (r *rowFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.id, "id", "", "row id (stable key for the targets)")
	fs.StringVar(&r.label, "label", "", "row label")
	fs.StringVar(&r.endpoint, "endpoint-label", "", "endpoint column")
	fs.StringVar(&r.notes, "notes", "", "notes column")
	fs.StringVar(&r.out, "out", "", "append the result as a JSON line to this file")
	fs.IntVar(&r.rep, "rep", 1, "repetition number")
	fs.IntVar(&r.minioPID, "minio-pid", 0, "MinIO process whose CPU use to report")
}

func (r *rowFlags) row(id, label string) *Result {
	return &Result{ID: id, Label: label, Endpoint: r.endpoint, Rep: r.rep, StoredMiB: -1, Notes: r.notes, OthersPct: -1}
}

// noisy is the share of one core other jobs may use during a run before
// the report flags it.
const noisy = 50

// addUsage records the CPU use of the run.
func (r *Result) addUsage(u usage) {
	r.Notes = join(r.Notes, u.text)
	r.OthersPct = u.others
}

// fill sets the throughput and latency columns.
func (r *Result) fill(segments int, raw int64, wall time.Duration, lat []time.Duration) {
	r.Segments, r.RawBytes, r.WallSec = segments, raw, wall.Seconds()
	r.MBps = float64(raw) / 1e6 / wall.Seconds()
	r.P50ms, r.P99ms = percentile(lat, 0.50), percentile(lat, 0.99)
}

// percentile is the nearest-rank percentile in milliseconds.
func percentile(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return -1
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return float64(s[max(0, i)].Microseconds()) / 1000
}

func (r *Result) append(path string) error {
	fmt.Printf("  %-40s %8.1f MB/s  p50 %7.1f ms  p99 %7.1f ms  %s\n", r.Label, r.MBps, r.P50ms, r.P99ms, r.Notes)
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b, _ := json.Marshal(r)
	_, err = f.Write(append(b, '\n'))
	return err
}

// cmdReport prints the table and the targets and writes them as markdown.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "results, one JSON line per run")
	md := fs.String("md", "", "markdown output")
	meta := fs.String("meta", "", "file of setup lines to include")
	fs.Parse(args)
	rows, err := readRows(*in)
	if err != nil {
		return err
	}
	table := summarize(rows)
	byID := map[string]*Result{}
	for _, r := range table {
		byID[r.ID] = r
	}
	targets := evalTargets(byID)

	fmt.Println()
	fmt.Println(textTable(table))
	fmt.Println("Targets:")
	for _, t := range targets {
		fmt.Println("  " + t)
	}
	if *md == "" {
		return nil
	}
	var b strings.Builder
	b.WriteString("# walsnap benchmark\n\n")
	if *meta != "" {
		if m, err := os.ReadFile(*meta); err == nil {
			for l := range strings.Lines(string(m)) {
				b.WriteString("- " + l)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("| run | endpoint | MB/s | p50 ms | p99 ms | stored MiB | notes |\n|---|---|--:|--:|--:|--:|---|\n")
	for _, r := range table {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Label, r.Endpoint, num(r.MBps), num(r.P50ms), num(r.P99ms), num(r.StoredMiB), strings.ReplaceAll(r.Notes, "|", "/"))
	}
	b.WriteString("\nMB/s = 10^6 bytes of raw (uncompressed) WAL per second of wall time; p50/p99 are per call " +
		"(per request for the raw rows), nearest rank. Host cpu is the whole machine over the run; " +
		"\"load\" is the 1-minute load average when the run began. \"other jobs\" is the CPU of processes outside the bench " +
		"(this machine is shared), sampled every 100 ms; ⚠ marks a row where they took ≥ 50% of a core.\n\n## Targets\n\n")
	for _, t := range targets {
		b.WriteString("- " + t + "\n")
	}
	b.WriteString("\n## Details\n\n")
	for _, r := range table {
		if len(r.Details) == 0 {
			continue
		}
		fmt.Fprintf(&b, "**%s** (%s)\n\n", r.Label, r.Endpoint)
		for _, d := range r.Details {
			b.WriteString("- " + d + "\n")
		}
		b.WriteString("\n")
	}
	return os.WriteFile(*md, []byte(b.String()), 0o644)
}

func readRows(path string) ([]*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []*Result
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rows = append(rows, &r)
	}
	return rows, sc.Err()
}

// summarize keeps one row per id, in first-seen order: with repetitions,
// the one with the median throughput among the passes that other jobs left
// alone (all passes if none was), noting the range.
func summarize(rows []*Result) []*Result {
	var order []string
	groups := map[string][]*Result{}
	for _, r := range rows {
		if _, ok := groups[r.ID]; !ok {
			order = append(order, r.ID)
		}
		groups[r.ID] = append(groups[r.ID], r)
	}
	var out []*Result
	for _, id := range order {
		all := groups[id]
		g := slices.DeleteFunc(slices.Clone(all), func(r *Result) bool { return r.OthersPct >= noisy })
		if len(g) == 0 {
			g = all
		}
		slices.SortFunc(g, func(a, b *Result) int { return cmpFloat(a.MBps, b.MBps) })
		m := *g[(len(g)-1)/2]
		switch {
		case len(all) == 1 || m.MBps < 0:
		case len(g) == len(all):
			m.Notes = fmt.Sprintf("median of %d (%.0f–%.0f MB/s); %s", len(g), g[0].MBps, g[len(g)-1].MBps, m.Notes)
		default:
			m.Notes = fmt.Sprintf("median of %d undisturbed of %d passes (%.0f–%.0f MB/s); %s", len(g), len(all), g[0].MBps, g[len(g)-1].MBps, m.Notes)
		}
		if m.OthersPct >= noisy {
			m.Notes = "⚠ noisy; " + m.Notes
		}
		out = append(out, &m)
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func num(v float64) string {
	switch {
	case v < 0:
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func textTable(rows []*Result) string {
	head := []string{"run", "endpoint", "MB/s", "p50 ms", "p99 ms", "stored MiB", "notes"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Label, r.Endpoint, num(r.MBps), num(r.P50ms), num(r.P99ms), num(r.StoredMiB), r.Notes})
	}
	width := make([]int, len(head))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for n, row := range cells {
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			switch {
			case i == len(row)-1:
				b.WriteString(c)
			case i >= 2:
				b.WriteString(pad + c + "  ")
			default:
				b.WriteString(c + pad + "  ")
			}
		}
		b.WriteString("\n")
		if n == 0 {
			for i := range head {
				b.WriteString(strings.Repeat("-", width[i]) + "  ")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// evalTargets checks the goals against the summarized rows.
func evalTargets(byID map[string]*Result) []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	// warn flags a comparison with a run disturbed by other jobs.
	warn := func(ids ...string) string {
		for _, id := range ids {
			if byID[id].OthersPct >= noisy {
				return fmt.Sprintf(" ⚠ %s ran while other jobs used %.0f%% of a core", byID[id].Label, byID[id].OthersPct)
			}
		}
		return ""
	}
	missing := func(what string, ids ...string) bool {
		for _, id := range ids {
			if byID[id] == nil {
				out = append(out, fmt.Sprintf("n/a   %s (no %s row)", what, id))
				return true
			}
		}
		return false
	}

	// best is the better of walsnap's row and walsnap-pg's (the front end
	// for archive_command and restore_command) by better, and its id.
	best := func(better func(a, b *Result) bool, ids ...string) string {
		var out string
		for _, id := range ids {
			if byID[id] != nil && (out == "" || better(byID[id], byID[out])) {
				out = id
			}
		}
		return out
	}
	faster := func(a, b *Result) bool { return a.MBps > b.MBps }
	quicker := func(a, b *Result) bool {
		return a.ServedP50ms > 0 && (b.ServedP50ms == 0 || a.ServedP50ms < b.ServedP50ms)
	}

	what := "backlog drain ≥ 1.5× pgBackRest async push (same TLS MinIO)"
	if id := best(faster, "walsnap-push-backlog-tls", "walsnap-pg-push-backlog-tls"); !missing(what, cmp.Or(id, "walsnap-push-backlog-tls"), "pgb-push-async-tls") {
		w, p := byID[id].MBps, byID["pgb-push-async-tls"].MBps
		out = append(out, fmt.Sprintf("%s  %s: %s %.0f MB/s vs 1.5 × %.0f = %.0f MB/s (%.2f×)%s", verdict(w >= 1.5*p), what, byID[id].Label, w, p, 1.5*p, w/p,
			warn(id, "pgb-push-async-tls")))
	}

	what = "backlog drain ≥ 80% of raw PUT (plain-HTTP MinIO; ceiling = the better of sequential and 4-concurrent)"
	if !missing(what, "walsnap-push-backlog-http", "raw-put-1-http", "raw-put-4-http") {
		w := byID["walsnap-push-backlog-http"].MBps
		s, c := byID["raw-put-1-http"].MBps, byID["raw-put-4-http"].MBps
		ceil, which := s, "sequential"
		if c > s {
			ceil, which = c, "4-concurrent"
		}
		out = append(out, fmt.Sprintf("%s  %s: %.0f MB/s vs 0.8 × %.0f (%s) = %.0f MB/s (%.0f%%; sequential %.0f, 4-concurrent %.0f MB/s)%s",
			verdict(w >= 0.8*ceil), what, w, ceil, which, 0.8*ceil, 100*w/ceil, s, c,
			warn("walsnap-push-backlog-http", "raw-put-1-http", "raw-put-4-http")))
	}

	what = "sequential fetch with prefetch ≥ 1.5× pgBackRest async archive-get (same TLS MinIO)"
	if id := best(faster, "walsnap-fetch-prefetch-tls", "walsnap-pg-fetch-prefetch-tls"); !missing(what, cmp.Or(id, "walsnap-fetch-prefetch-tls"), "pgb-get-async-tls") {
		w, p := byID[id].MBps, byID["pgb-get-async-tls"].MBps
		out = append(out, fmt.Sprintf("%s  %s: %s %.0f MB/s vs 1.5 × %.0f = %.0f MB/s (%.2f×)%s", verdict(w >= 1.5*p), what, byID[id].Label, w, p, 1.5*p, w/p,
			warn(id, "pgb-get-async-tls")))
	}

	what = "a prefetched fetch call p50 ≤ 5 ms"
	if id := best(quicker, "walsnap-fetch-prefetch-tls", "walsnap-pg-fetch-prefetch-tls", "walsnap-pg-fetch-paced-tls"); !missing(what, cmp.Or(id, "walsnap-fetch-prefetch-tls")) {
		r := byID[id]
		out = append(out, fmt.Sprintf("%s  %s: %s p50 %.1f ms%s", verdict(r.ServedP50ms > 0 && r.ServedP50ms <= 5), what, r.Label, r.ServedP50ms, warn(id)))
	}

	what = "a push call answered from the archiver's record p50 ≤ 5 ms"
	if id := best(quicker, "walsnap-push-backlog-tls", "walsnap-pg-push-backlog-tls", "walsnap-pg-push-paced-tls"); !missing(what, cmp.Or(id, "walsnap-push-backlog-tls")) {
		r := byID[id]
		out = append(out, fmt.Sprintf("%s  %s: %s p50 %.1f ms%s", verdict(r.ServedP50ms > 0 && r.ServedP50ms <= 5), what, r.Label, r.ServedP50ms, warn(id)))
	}

	what = "one-at-a-time push p50 ≤ 35 ms per 16 MiB segment"
	lower := func(a, b *Result) bool { return a.P50ms < b.P50ms }
	if id := best(lower, "walsnap-push-single-http", "walsnap-pg-push-single-http"); !missing(what, cmp.Or(id, "walsnap-push-single-http")) {
		r := byID[id]
		out = append(out, fmt.Sprintf("%s  %s: %s p50 %.1f ms (p99 %.1f ms), plain-HTTP MinIO%s", verdict(r.P50ms <= 35), what, r.Label, r.P50ms, r.P99ms,
			warn(id)))
	}
	return out
}
