package fsutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcessesUsing lists the processes, but this one, whose working
// directory, root or an open file is dir or below it, each as its pid and
// command line: what keeps a directory from being removed, or a
// filesystem from being unmounted.
func ProcessesUsing(dir string) []string {
	procs, _ := os.ReadDir("/proc")
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		base := filepath.Join("/proc", p.Name())
		links := []string{filepath.Join(base, "cwd"), filepath.Join(base, "root")}
		if fds, err := os.ReadDir(filepath.Join(base, "fd")); err == nil {
			for _, fd := range fds {
				links = append(links, filepath.Join(base, "fd", fd.Name()))
			}
		}
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
				cmdline, _ := os.ReadFile(filepath.Join(base, "cmdline"))
				out = append(out, p.Name()+" "+strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
				break
			}
		}
	}
	return out
}
