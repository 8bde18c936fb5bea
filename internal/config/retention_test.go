package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"14d": 14 * day, "1d12h": 36 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute, "2d30m": 2*day + 30*time.Minute,
	} {
		w, err := ParseWindow(in)
		if err != nil || w.Duration() != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", in, w.Duration(), err, want)
		}
	}
	for _, bad := range []string{"", "0d", "0", "-1d", "1.5d", "d", "14days", "x", "-3h", "1d-2h"} {
		if w, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) = %v, accepted", bad, w.Duration())
		}
	}
	for d, want := range map[time.Duration]string{14 * day: "14d", 36 * time.Hour: "1d12h", 90 * time.Minute: "1h30m", 0: ""} {
		if got := Window(d).String(); got != want {
			t.Errorf("Window(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRetentionSettings: the policy from the file, the environment and
// the command line, and refused values.
func TestRetentionSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "walsnap.yaml")
	os.WriteFile(path, []byte("repo: file:///srv/repo\nretention:\n  full: 3\n  window: 14d\ncommand:\n  delete: rm-snap\n"), 0o600)
	c := Default()
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if c.Retention.Full != 3 || c.Retention.Window.Duration() != 14*day || c.Command.Delete != "rm-snap" || c.Validate() != nil {
		t.Fatalf("from the file: %+v %q %v", c.Retention, c.Command.Delete, c.Validate())
	}
	if err := c.LoadEnv([]string{"WALSNAP_RETENTION_WINDOW=36h", "WALSNAP_RETENTION_FULL=0"}); err != nil {
		t.Fatal(err)
	}
	if c.Retention.Full != 0 || c.Retention.Window.Duration() != 36*time.Hour {
		t.Fatalf("from the environment: %+v", c.Retention)
	}
	if err := c.Set("retention.window", "fortnight"); err == nil {
		t.Error("retention.window fortnight accepted")
	}
	c.Retention.Full = -1
	if err := c.Validate(); err == nil {
		t.Error("retention.full -1 accepted")
	}
	os.WriteFile(path, []byte("retention:\n  window: 2 weeks\n"), 0o600)
	d := Default()
	if err := d.LoadFile(path); err == nil {
		t.Error("a bad window in the file was accepted")
	}
}
