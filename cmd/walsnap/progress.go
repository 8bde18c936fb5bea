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

// newProgress returns a progress callback that redraws one line on w when
// w is a terminal, at most twice a second; nil otherwise (cron, systemd).
func newProgress(w *os.File, verb string) func(done, total int64) {
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
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		fmt.Fprintf(w, "\r%s %s of %s (%.0f%%)   ", verb, manifest.Human(done), manifest.Human(total), pct)
		if done >= total {
			io.WriteString(w, "\n")
		}
	}
}
