package pg

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultOSUser is the operating-system user PostgreSQL runs as unless
// told otherwise.
const DefaultOSUser = "postgres"

// OSUser resolves the operating-system user that runs (or will run) the
// server: name, or DefaultOSUser when name is "".
func OSUser(name string) (uid, gid uint32, err error) {
	if name == "" {
		name = DefaultOSUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("operating-system user %q: %w", name, err)
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(id), uint32(g), nil
}

// ProcessAlive reports whether a process with this pid exists (also when
// it belongs to another user).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// RunningPostmaster reports the live postmaster that runs on the data
// directory dir, from its postmaster.pid. A postmaster.pid copied with a
// snapshot image names another data directory (its second line), or a
// process that is gone, so it does not count.
func RunningPostmaster(dir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	lines := strings.SplitN(string(data), "\n", 3)
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 || len(lines) < 2 || !sameDir(strings.TrimSpace(lines[1]), dir) {
		return 0, false
	}
	return pid, ProcessAlive(pid)
}

// sameDir compares two directory paths after resolving symlinks.
func sameDir(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

// CalledByArchiver reports whether this process runs for a PostgreSQL
// archiver, as its archive_command: one of its nearest ancestors (the
// archiver runs the command through /bin/sh, which a wrapper script may
// add to) shows the archiver's process title, "postgres: archiver ..." or
// "postgres: <cluster_name>: archiver ...".
func CalledByArchiver() bool {
	pid := os.Getppid()
	for range 4 {
		if pid <= 1 {
			return false
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			return false
		}
		if isArchiverTitle(string(cmdline)) {
			return true
		}
		if pid = parentOf(pid); pid <= 0 {
			return false
		}
	}
	return false
}

// isArchiverTitle reports whether a /proc cmdline is the process title of
// a PostgreSQL archiver.
func isArchiverTitle(cmdline string) bool {
	title, ok := strings.CutPrefix(cmdline, "postgres: ")
	if !ok {
		return false
	}
	for _, w := range strings.Fields(strings.ReplaceAll(title, "\x00", " ")) {
		if w == "archiver" {
			return true
		}
	}
	return false
}

// parentOf returns the parent process id of pid (from /proc), 0 if gone.
func parentOf(pid int) int {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
