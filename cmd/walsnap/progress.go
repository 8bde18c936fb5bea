package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/manifest"
)

// newProgress returns a progress callback that redraws "<verb> X of Y
// (N%)" in bytes on w when w is a terminal, at most twice a second; nil
// otherwise (cron, systemd).
func newProgress(w *os.File, verb string) func(done, total int64) {
	return termProgress(w, func(done, total int64) string {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		return fmt.Sprintf("%s %s of %s (%.0f%%)", verb, manifest.Human(done), manifest.Human(total), pct)
	})
}

// countProgress is newProgress for counted things: "<verb> N of M <what>".
func countProgress(w *os.File, verb, what string) func(done, total int64) {
	return termProgress(w, func(done, total int64) string {
		return fmt.Sprintf("%s %d of %d %s", verb, done, total, what)
	})
}

// termProgress redraws the line render makes on w when w is a terminal,
// at most twice a second and at the end; nil when w is not a terminal.
func termProgress(w *os.File, render func(done, total int64) string) func(done, total int64) {
	if _, err := unix.IoctlGetTermios(int(w.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	var mu sync.Mutex
	var last time.Time
	return func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 500*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\r%s   ", render(done, total))
		if done >= total {
			io.WriteString(w, "\n")
		}
	}
}
