// Package freeze suspends writes to filesystems while a block-level
// snapshot is taken (FIFREEZE, as fsfreeze(8) does) and resumes them
// (FITHAW), with a watchdog that never leaves a filesystem frozen for
// longer than a bound.
//
// A frozen filesystem blocks every writer, this process included: between
// Freeze and Thaw do nothing that may write to it (not even a log line, if
// the log is on it).
package freeze

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The ioctls of linux/fs.h, _IOWR('X', 119, int) and _IOWR('X', 120, int);
// golang.org/x/sys/unix does not define them. Their encoding is the same on
// every Linux architecture.
const (
	ioctlFreeze = 0xc0045877 // FIFREEZE
	ioctlThaw   = 0xc0045878 // FITHAW
)

// Freezer freezes and thaws the filesystem mounted at a mount point.
type Freezer interface {
	Freeze(mountPoint string) error
	Thaw(mountPoint string) error
}

// Kernel is the real Freezer: the FIFREEZE and FITHAW ioctls, which need
// CAP_SYS_ADMIN.
type Kernel struct{}

// Freeze flushes the filesystem mounted at mountPoint and blocks new
// writes to it until Thaw. A filesystem already frozen is an error (EBUSY).
func (Kernel) Freeze(mountPoint string) error { return ioctl(mountPoint, ioctlFreeze, "freeze") }

// Thaw lets writes to the filesystem mounted at mountPoint resume. A
// filesystem that is not frozen is an error (EINVAL).
func (Kernel) Thaw(mountPoint string) error { return ioctl(mountPoint, ioctlThaw, "thaw") }

func ioctl(mountPoint string, req uint, what string) error {
	f, err := os.OpenFile(mountPoint, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, mountPoint, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), req, 0); err != nil {
		return fmt.Errorf("%s %s: %w", what, mountPoint, err)
	}
	return nil
}

// ErrLimit is the cause of a watchdog thaw when the freeze lasted its
// limit.
var ErrLimit = errors.New("freeze lasted its time limit")

// Held is a set of filesystems frozen by Hold. Its Thaw must be called
// (defer it); the watchdog thaws them earlier when the context ends or the
// time limit passes.
type Held struct {
	f      Freezer
	mounts []string      // frozen, in freezing order
	stop   chan struct{} // closed by Thaw
	once   sync.Once     // closes stop
	done   chan struct{} // closed when the watchdog has exited

	mu       sync.Mutex
	thawed   bool
	thawErr  error
	watchdog error // why the watchdog thawed, or nil
}

// Hold freezes mountPoints in order with f. If one fails, those already
// frozen are thawed and the error returned. Otherwise a watchdog thaws
// them all, in reverse order, as soon as ctx ends or limit has passed,
// unless Thaw comes first.
func Hold(ctx context.Context, f Freezer, mountPoints []string, limit time.Duration) (*Held, error) {
	h := &Held{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	for _, mp := range mountPoints {
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(fmt.Errorf("freeze %s: %w", mp, context.Cause(ctx)), h.thaw(nil))
		}
		if err := f.Freeze(mp); err != nil {
			return nil, errors.Join(err, h.thaw(nil))
		}
		h.mounts = append(h.mounts, mp)
	}
	go h.watch(ctx, limit)
	return h, nil
}

// watch thaws the filesystems when ctx ends or limit passes, unless Thaw
// stops it first.
func (h *Held) watch(ctx context.Context, limit time.Duration) {
	defer close(h.done)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-h.stop:
	case <-ctx.Done():
		h.thaw(context.Cause(ctx))
	case <-t.C:
		h.thaw(ErrLimit)
	}
}

// thaw thaws the frozen filesystems in reverse order, once, going on past
// failures; cause records a watchdog thaw.
func (h *Held) thaw(cause error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.thawed {
		return h.thawErr
	}
	h.thawed, h.watchdog = true, cause
	var errs []error
	for i := len(h.mounts) - 1; i >= 0; i-- {
		errs = append(errs, h.f.Thaw(h.mounts[i]))
	}
	h.thawErr = errors.Join(errs...)
	return h.thawErr
}

// Thaw thaws the filesystems (unless the watchdog already has) and stops
// the watchdog. It returns the thaw errors, whoever thawed. Calling it
// again is harmless.
func (h *Held) Thaw() error {
	err := h.thaw(nil)
	h.once.Do(func() { close(h.stop) })
	<-h.done
	return err
}

// Early reports why the watchdog thawed the filesystems before Thaw (the
// context's cause, or ErrLimit), or nil if it did not.
func (h *Held) Early() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchdog
}
