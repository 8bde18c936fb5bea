// Package shellcmd runs operator-supplied shell commands (snapshot and
// restore hooks) so that they can always be stopped cleanly.
package shellcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// KillGrace is how long a stopped command has to finish its traps (for
// example to thaw a frozen filesystem) before it is killed.
const KillGrace = 10 * time.Second

// Run runs script with /bin/sh -c, env added to walsnap's own environment,
// in its own process group. When ctx ends the group gets SIGTERM, so that
// the script's traps can undo what must not stay, and whatever is left of
// it SIGKILL after KillGrace.
func Run(ctx context.Context, script string, env []string, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = KillGrace
	err := cmd.Run()
	if ctx.Err() != nil {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	return err
}
