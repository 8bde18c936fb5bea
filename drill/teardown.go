package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/blockdev"
	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/restore"
)

// Teardown bounds.
const (
	stopWait = time.Minute // for each pg_ctl stop
	// unusedWait bounds the wait for the processes that use the scratch
	// directory to leave once the server has stopped (walsnap wal-fetch's
	// standing prefetcher leaves with its server).
	unusedWait = time.Minute
)

// teardown removes everything the drill built, even after a signal: it
// stops the server, waits until no process uses the scratch directory,
// removes what the provider built (EBS volumes unmounted, detached and
// deleted; command.cleanup), unmounts whatever is still mounted below the
// scratch directory, and removes it and the socket directory. Nothing is
// removed while a process still uses it, nor through a mount.
func (r *run) teardown(ctx context.Context, p *drillresult.Phase) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	var did []string
	defer func() { p.Detail = strings.Join(did, "; ") }()
	stop := func() error {
		if !r.started {
			return nil
		}
		if _, running := pg.RunningPostmaster(r.dest.PGData); !running {
			return nil
		}
		if err := restore.Stop(ctx, r.pgctl, r.dest.PGData, r.o.Owner, stopWait); err != nil {
			return fmt.Errorf("teardown: stop the server: %w (the scratch copy in %s is left)", err, r.scratch)
		}
		did = append(did, "server stopped")
		return nil
	}
	if err := stop(); err != nil {
		return err
	}
	// A server interrupted as it started writes its pid file only now:
	// it is stopped while the drill waits for its directory.
	if err := waitUnused(ctx, r.scratch, unusedWait, func() { stop() }); err != nil {
		return fmt.Errorf("teardown: %w (the scratch copy in %s is left)", err, r.scratch)
	}
	if r.server.sockDir != "" {
		if err := os.RemoveAll(r.server.sockDir); err != nil {
			return fmt.Errorf("teardown: %w", err)
		}
	}
	if b := r.built; b != nil {
		if err := b.Undo(ctx); err != nil {
			return fmt.Errorf("teardown: %w (the scratch directory %s is left)", err, r.scratch)
		}
		switch {
		case len(b.Volumes) > 0:
			did = append(did, fmt.Sprintf("volumes %s unmounted, detached and deleted", strings.Join(b.Volumes, ", ")))
		case b.Cleanup != "":
			did = append(did, "command.cleanup ran")
		}
	}
	unmounted, err := unmountBelow(r.scratch)
	if len(unmounted) > 0 {
		did = append(did, "unmounted "+strings.Join(unmounted, ", "))
		if r.m.Provider == manifest.ProviderCommand && (r.built == nil || r.built.Cleanup == "") {
			r.o.Log.Warn("command.cleanup is not set: what command.restore set up beyond its mounts (a loop device, a clone) is left", "unmounted", unmounted)
		}
	}
	if err != nil {
		return fmt.Errorf("teardown: %w (the scratch directory %s is left)", err, r.scratch)
	}
	if err := os.RemoveAll(r.scratch); err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	did = append(did, "scratch directory removed")
	return nil
}

// unmountBelow unmounts every filesystem mounted at or below dir, deepest
// first, and returns their mount points. It fails when one stays.
func unmountBelow(dir string) ([]string, error) {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, mp := range mounts {
		if err := unix.Unmount(mp, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			continue
		}
		done = append(done, mp)
	}
	if left, err := mountsBelow(dir); err != nil || len(left) > 0 {
		errs = append(errs, err)
		if len(left) > 0 {
			errs = append(errs, fmt.Errorf("still mounted below %s: %s", dir, strings.Join(left, ", ")))
		}
	}
	return done, errors.Join(errs...)
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open(blockdev.DefaultMountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := blockdev.ParseMountinfo(f)
	if err != nil {
		return nil, err
	}
	var below []string
	for _, m := range mounts {
		if within(m.MountPoint, dir) && !slices.Contains(below, m.MountPoint) {
			below = append(below, m.MountPoint)
		}
	}
	slices.SortStableFunc(below, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return below, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// waitUnused waits until no process has its working directory, its root
// or an open file at or below dir, for at most wait; then it names the
// processes that still do. each, when set, runs at every look.
func waitUnused(ctx context.Context, dir string, wait time.Duration, each func()) error {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if each != nil {
			each()
		}
		users := fsutil.ProcessesUsing(dir)
		if len(users) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still use %s after %s: %s", dir, wait, strings.Join(users, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes still use %s: %s: %w", dir, strings.Join(users, "; "), context.Cause(ctx))
		case <-tick.C:
		}
	}
}
