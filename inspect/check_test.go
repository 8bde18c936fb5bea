package inspect

import (
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/pg"
)

// TestCheckSettings: the verdict on each archiving setting.
func TestCheckSettings(t *testing.T) {
	good := pg.ArchiveSettings{WALLevel: "replica", ArchiveMode: "on", ArchiveCommand: "/usr/local/bin/walsnap wal-push %p", ArchiveTimeout: time.Minute}
	for _, c := range []struct {
		name   string
		edit   func(*pg.ArchiveSettings)
		check  string
		status string
		msg    string
	}{
		{"good", func(*pg.ArchiveSettings) {}, "archive_command", Pass, "live test"},
		{"minimal", func(a *pg.ArchiveSettings) { a.WALLevel = "minimal" }, "wal_level", Fail, "wal_level = replica"},
		{"archive off", func(a *pg.ArchiveSettings) { a.ArchiveMode = "off"; a.ArchiveCommand = "(disabled)" }, "archive_mode", Fail, "archive_mode = on"},
		{"archive off, command", func(a *pg.ArchiveSettings) { a.ArchiveMode = "off" }, "archive_command", Fail, "not in force"},
		{"standby on", func(a *pg.ArchiveSettings) { a.InRecovery = true }, "archive_mode", Warn, "its primary"},
		{"standby always", func(a *pg.ArchiveSettings) { a.InRecovery = true; a.ArchiveMode = "always" }, "archive_mode", Pass, "always"},
		{"cp", func(a *pg.ArchiveSettings) { a.ArchiveCommand = "cp %p /mnt/%f" }, "archive_command", Fail, "does not run walsnap wal-push"},
		{"library", func(a *pg.ArchiveSettings) { a.ArchiveLibrary = "basic_archive" }, "archive_command", Fail, "archive_library"},
		{"other repo", func(a *pg.ArchiveSettings) { a.ArchiveCommand = "walsnap --repo s3://other/db wal-push %p" }, "archive_command", Fail, "archives into s3://other/db"},
		{"same repo", func(a *pg.ArchiveSettings) { a.ArchiveCommand = "walsnap --repo=s3://b/db wal-push %p" }, "archive_command", Pass, ""},
		{"walsnap-pg", func(a *pg.ArchiveSettings) { a.ArchiveCommand = "/usr/local/bin/walsnap-pg wal-push %p" }, "archive_command", Pass, ""},
		{"no timeout", func(a *pg.ArchiveSettings) { a.ArchiveTimeout = 0 }, "archive_timeout", Warn, "archive_timeout = 60"},
		{"long timeout", func(a *pg.ArchiveSettings) { a.ArchiveTimeout = 10 * time.Minute }, "archive_timeout", Warn, "10m0s"},
		{"timeout", func(*pg.ArchiveSettings) {}, "archive_timeout", Pass, "1m0s"},
	} {
		a := good
		c.edit(&a)
		k := &checker{o: CheckOptions{RepoURL: "s3://b/db"}}
		k.settings(a)
		var line CheckLine
		for _, l := range k.lines {
			if l.Check == c.check {
				line = l
			}
		}
		if line.Status != c.status || !strings.Contains(line.Message, c.msg) {
			t.Errorf("%s: %s = %+v, want %s mentioning %q", c.name, c.check, line, c.status, c.msg)
		}
		if len(k.lines) != 4 {
			t.Errorf("%s: %d lines, want one per setting", c.name, len(k.lines))
		}
	}
	if !Failed([]CheckLine{{Status: Pass}, {Status: Fail}}) || Failed([]CheckLine{{Status: Warn}}) {
		t.Error("Failed")
	}
}
