// Package detach starts walsnap helper processes that outlive the command
// that starts them (the prefetcher, the backup holder), and carries the
// one-line readiness report a helper sends back once it is up.
package detach

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Start runs this very executable (resolved, not os.Args[0], which may be
// relative to a directory the child does not share) with args, in its own
// session, with env added to this process's environment, and does not
// wait for it. The child's stdout and stderr go to out; extra become its
// file descriptors 3, 4, ...
func Start(args, env []string, out *os.File, extra ...*os.File) (pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = extra
	// Not in the caller's directory (PostgreSQL's data directory): a
	// helper must never keep a volume busy that an operator unmounts.
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid = cmd.Process.Pid
	return pid, cmd.Process.Release()
}

// readyFD is the file descriptor on which StartReady's child reports.
const readyFD = 3

// StartReady is Start for a helper that reports with Ready once it is up
// (or could not get up): it waits for that report and returns its text,
// or the helper's error. A helper that exits without reporting is an
// error that points at out.
func StartReady(args, env []string, out *os.File) (pid int, report string, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, "", err
	}
	pid, err = Start(args, env, out, pw)
	pw.Close()
	if err != nil {
		pr.Close()
		return 0, "", err
	}
	line, _ := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	status, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch status {
	case "ok":
		return pid, rest, nil
	case "error":
		return pid, "", errors.New(rest)
	}
	return pid, "", fmt.Errorf("the helper (pid %d) exited without reporting; see %s", pid, out.Name())
}

var readyOnce sync.Once

// Ready is the helper's side of StartReady: it reports err, or success
// with report, once. Later calls do nothing (the descriptor is closed and
// its number may belong to another file by then).
func Ready(report string, err error) {
	readyOnce.Do(func() { ready(report, err) })
}

func ready(report string, err error) {
	f := os.NewFile(readyFD, "ready")
	if f == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(f, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		fmt.Fprintf(f, "ok %s\n", strings.ReplaceAll(report, "\n", " "))
	}
	f.Close()
}

// Yield lowers the CPU priority of this process, every thread of it, to
// the nice value nice; a thread already nicer is left as it is (an
// operator's lower priority stands). A thread the Go runtime starts later
// inherits the value from the thread that starts it. For a helper whose work is ahead of
// need (the standing prefetcher): where it competes for a core with
// PostgreSQL and the calls PostgreSQL makes, they run first, and the
// helper still has every cycle they leave.
func Yield(nice int) error {
	// Twice: a thread started while the first pass ran may have copied
	// its creator's old value.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// The kernel reports 20 - nice.
			if p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-p >= nice {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("set the priority of thread %d: %w", tid, err)
			}
		}
	}
	return nil
}
