package freeze_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/freeze"
	"github.com/walsnap/walsnap/internal/testrig"
)

// recorder is a Freezer that records its calls and fails on request.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  string // "freeze /b": that call fails
}

func (r *recorder) do(op, mp string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op+" "+mp)
	if r.fail == op+" "+mp {
		return fmt.Errorf("%s %s: refused", op, mp)
	}
	return nil
}

func (r *recorder) Freeze(mp string) error { return r.do("freeze", mp) }
func (r *recorder) Thaw(mp string) error   { return r.do("thaw", mp) }

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestHold(t *testing.T) {
	mps := []string{"/a", "/b", "/c"}
	all := []string{"freeze /a", "freeze /b", "freeze /c", "thaw /c", "thaw /b", "thaw /a"}

	t.Run("thaw in reverse order, once", func(t *testing.T) {
		r := &recorder{}
		h, err := freeze.Hold(t.Context(), r, mps, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Thaw(); err != nil {
			t.Fatal(err)
		}
		if err := h.Thaw(); err != nil {
			t.Fatal(err)
		}
		if got := r.log(); !slices.Equal(got, all) {
			t.Errorf("calls %v, want %v", got, all)
		}
		if err := h.Early(); err != nil {
			t.Errorf("Early = %v", err)
		}
	})
	t.Run("a failed freeze thaws the others", func(t *testing.T) {
		r := &recorder{fail: "freeze /c"}
		if _, err := freeze.Hold(t.Context(), r, mps, time.Hour); err == nil || !strings.Contains(err.Error(), "/c") {
			t.Fatalf("Hold = %v, want the failure of /c", err)
		}
		want := []string{"freeze /a", "freeze /b", "freeze /c", "thaw /b", "thaw /a"}
		if got := r.log(); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("thaw goes on past failures", func(t *testing.T) {
		r := &recorder{fail: "thaw /b"}
		h, err := freeze.Hold(t.Context(), r, mps, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Thaw(); err == nil || !strings.Contains(err.Error(), "/b") {
			t.Errorf("Thaw = %v, want the failure of /b", err)
		}
		if got := r.log(); !slices.Equal(got, all) {
			t.Errorf("calls %v, want %v", got, all)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		r := &recorder{}
		ctx, cancel := context.WithCancelCause(t.Context())
		h, err := freeze.Hold(ctx, r, mps, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		stopped := errors.New("SIGTERM")
		cancel(stopped)
		waitFor(t, "the watchdog's thaw", func() bool { return len(r.log()) == len(all) })
		if err := h.Thaw(); err != nil {
			t.Fatal(err)
		}
		if got := r.log(); !slices.Equal(got, all) {
			t.Errorf("calls %v, want %v", got, all)
		}
		if err := h.Early(); !errors.Is(err, stopped) {
			t.Errorf("Early = %v, want the context's cause", err)
		}
	})
	t.Run("time limit", func(t *testing.T) {
		r := &recorder{}
		h, err := freeze.Hold(t.Context(), r, mps, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the watchdog's thaw", func() bool { return len(r.log()) == len(all) })
		if err := h.Early(); !errors.Is(err, freeze.ErrLimit) {
			t.Errorf("Early = %v, want freeze.ErrLimit", err)
		}
		h.Thaw()
		if got := r.log(); !slices.Equal(got, all) {
			t.Errorf("calls %v, want %v", got, all)
		}
	})
	t.Run("context already ended", func(t *testing.T) {
		r := &recorder{}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := freeze.Hold(ctx, r, mps, time.Hour); !errors.Is(err, context.Canceled) {
			t.Errorf("Hold = %v, want context.Canceled", err)
		}
		if got := r.log(); len(got) != 0 {
			t.Errorf("calls %v, want none", got)
		}
	})
}

// loopExt4 mounts a fresh ext4 filesystem on a loop device and returns its
// mount point; everything is undone when t ends.
func loopExt4(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testrig.Unavailable(t, "freezing a filesystem needs root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrig.Unavailable(t, "%s: %v", tool, err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run("mkfs.ext4", "-q", "-F", img)
	dev := run("losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	run("mount", "-t", "ext4", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

func TestKernelFreeze(t *testing.T) {
	mnt := loopExt4(t)
	var k freeze.Kernel
	if err := k.Freeze(mnt); err != nil {
		t.Fatal(err)
	}
	thawed := false
	t.Cleanup(func() { // before the unmount: cleanups run last first
		if !thawed {
			k.Thaw(mnt)
		}
	})
	if err := k.Freeze(mnt); err == nil {
		t.Error("freezing a frozen filesystem succeeded")
	}

	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(filepath.Join(mnt, "during"), []byte("x"), 0o644) }()
	select {
	case err := <-wrote:
		t.Fatalf("a write to the frozen filesystem returned (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}

	if err := k.Thaw(mnt); err != nil {
		t.Fatal(err)
	}
	thawed = true
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("write after thaw: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not complete after the thaw")
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "during")); err != nil || string(b) != "x" {
		t.Errorf("file written during the freeze: %q, %v", b, err)
	}
	if err := k.Thaw(mnt); err == nil {
		t.Error("thawing a thawed filesystem succeeded")
	}
	if err := k.Freeze(filepath.Join(mnt, "missing")); err == nil {
		t.Error("freezing a missing directory succeeded")
	}
}

func TestHoldKernelContextEnds(t *testing.T) {
	mnt := loopExt4(t)
	ctx, cancel := context.WithCancel(t.Context())
	h, err := freeze.Hold(ctx, freeze.Kernel{}, []string{mnt}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Thaw() })
	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(filepath.Join(mnt, "during"), []byte("x"), 0o644) }()
	select {
	case err := <-wrote:
		t.Fatalf("a write to the frozen filesystem returned (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel() // as SIGINT/SIGTERM do to walsnap's context
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watchdog did not thaw the filesystem when the context ended")
	}
	if err := h.Thaw(); err != nil {
		t.Errorf("Thaw after the watchdog: %v", err)
	}
}
