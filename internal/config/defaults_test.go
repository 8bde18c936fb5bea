package config

import (
	"strings"
	"testing"
)

// TestGetReadsWhatSetWrites: for every key, Get returns the text that Set
// takes back to the same value, on the defaults and after a Set.
func TestGetReadsWhatSetWrites(t *testing.T) {
	for _, k := range Keys {
		c := Default()
		v, err := c.Get(k.Name)
		if err != nil {
			t.Fatalf("Get(%s): %v", k.Name, err)
		}
		d := Default()
		if v != "" {
			if err := d.Set(k.Name, v); err != nil {
				t.Errorf("Set(%s, Get = %q): %v", k.Name, v, err)
			}
		}
		if again, _ := d.Get(k.Name); again != v {
			t.Errorf("%s: Get %q, after Set(Get) %q", k.Name, v, again)
		}
	}
	c := Default()
	c.Set("ebs.volumes", "vol-0123456789abcdef0,vol-1234abcd=/srv/pg")
	c.Set("backup.lock_ttl", "90m")
	for key, want := range map[string]string{"ebs.volumes": "vol-0123456789abcdef0,vol-1234abcd=/srv/pg", "backup.lock_ttl": "1h30m", "push.timeout": "5m",
		"ebs.wait_timeout": "6h", "log.level": "info", "compression": "zstd:1", "s3.sse": "", "pg.port": "0"} {
		if got, err := c.Get(key); got != want || err != nil {
			t.Errorf("Get(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
	if _, err := c.Get("s3"); err == nil {
		t.Error("Get of a section succeeded")
	}
	if _, err := c.Get("nope"); err == nil {
		t.Error("Get of an unknown key succeeded")
	}
}

// TestDefaultsShownOnce: help shows a key's default once, either as its
// DefaultText (the real built-in value) or, for a key without one, in its
// usage (what applies instead); never both, never a misleading zero.
func TestDefaultsShownOnce(t *testing.T) {
	want := map[string]string{"push.concurrency": "4", "push.ahead": "16", "fetch.prefetch": "8", "fetch.concurrency": "4",
		"s3.max_attempts": "5", "backup.streams": "2", "push.timeout": "5m", "push.linger": "5m", "fetch.timeout": "5m", "backup.lock_ttl": "24h",
		"backup.wal_timeout": "10m", "ebs.wait_timeout": "6h", "ebs.window_timeout": "1m", "compression": "zstd:1", "s3.checksums": "when_supported",
		"log.level": "info", "log.format": "text", "backup.provider": "files"}
	for _, k := range Keys {
		d := k.DefaultText()
		if d != want[k.Name] {
			t.Errorf("%s: DefaultText %q, want %q", k.Name, d, want[k.Name])
		}
		if d != "" && strings.Contains(k.Usage, "default") {
			t.Errorf("%s: usage %q names a default besides the real one (%s)", k.Name, k.Usage, d)
		}
	}
	// Keys without a built-in default say what applies instead, and help
	// shows that as their default.
	for name, want := range map[string]string{"pg.port": "$PGPORT, else 5432", "pg.host": "$PGHOST, else /var/run/postgresql",
		"pg.user": "$PGUSER, else postgres", "pg.database": "$PGDATABASE, else postgres", "pgdata": "$PGDATA",
		"push.concurrency": "4", "s3.path_style": ""} {
		for _, k := range Keys {
			if k.Name != name {
				continue
			}
			usage, def := k.Help()
			if def != want || strings.Contains(usage, "default:") {
				t.Errorf("%s: Help() = %q, %q; want the default %q, shown once", name, usage, def, want)
			}
		}
	}
}

func TestLoadEnv(t *testing.T) {
	c := Default()
	err := c.LoadEnv([]string{"WALSNAP_PUSH_CONCURRENCY=2", "WALSNAP_PUSH_CONCURRENCY=7", "WALSNAP_REPO=file:///r",
		"WALSNAP_S3_PATH_STYLE=true", "WALSNAP_FETCH_PREFETCH=", "OTHER=1"})
	if err != nil || c.Push.Concurrency != 7 || c.Repo.Dir != "/r" || !c.S3.PathStyle || c.Fetch.Prefetch != 8 {
		t.Fatalf("LoadEnv: %+v %v", c, err)
	}
	before := c
	err = c.LoadEnv([]string{"WALSNAP_PUSH_AHEAD=3", "WALSNAP_PUSH_TIMEOUT=5"})
	if err == nil || !strings.HasPrefix(err.Error(), "WALSNAP_PUSH_TIMEOUT: ") || c.Push.Ahead != before.Push.Ahead {
		t.Fatalf("a bad variable: %v, push.ahead %d (want unchanged)", err, c.Push.Ahead)
	}
}

func TestDefaultFromPostgres(t *testing.T) {
	c := Default()
	if err := c.DefaultFromPostgres([]string{"PGDATA=/srv/pg/data"}); err != nil || c.PGData != "/srv/pg/data" {
		t.Fatalf("PGDATA: %q %v", c.PGData, err)
	}
	c.PGData = "/etc/given"
	if err := c.DefaultFromPostgres([]string{"PGDATA=/srv/pg/data"}); err != nil || c.PGData != "/etc/given" {
		t.Fatalf("PGDATA over a set pgdata: %q %v", c.PGData, err)
	}
	c = Default()
	if err := c.DefaultFromPostgres([]string{"PGDATA=rel/data"}); err != nil || !strings.HasSuffix(c.PGData, "/rel/data") || c.PGData[0] != '/' {
		t.Fatalf("relative PGDATA: %q %v", c.PGData, err)
	}
	c = Default()
	if err := c.DefaultFromPostgres([]string{"PGHOST=/tmp"}); err != nil || c.PGData != "" {
		t.Fatalf("no PGDATA: %q %v", c.PGData, err)
	}
}

func TestNearestCommand(t *testing.T) {
	cmds := []string{"wal-push", "wal-fetch", "backup", "backup-list", "restore", "backup-start", "backup-stop", "version", "help"}
	for in, want := range map[string]string{"backpu": "backup", "restroe": "restore", "wal-psuh": "wal-push", "verison": "version",
		"backup-lst": "backup-list", "frobnicate": "", "hepl": "help", "bkp": ""} {
		if got := Nearest(in, cmds); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
}
