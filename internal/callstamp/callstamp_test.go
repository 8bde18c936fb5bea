package callstamp

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	env := []string{"WALSNAP_REPO=s3://b/p", "HOME=/var/lib/postgresql"}
	for _, tc := range []struct {
		argv    []string
		command string
		files   []string
	}{
		{[]string{"walsnap-pg", "wal-push", "pg_wal/000000010000000000000001"}, "wal-push", []string{"pg_wal/000000010000000000000001"}},
		{[]string{"/usr/bin/walsnap", "--config", "/x.yaml", "wal-fetch", "--fetch-prefetch", "4", "00000002.history", "pg_wal/RECOVERYXLOG"},
			"wal-fetch", []string{"00000002.history", "pg_wal/RECOVERYXLOG"}},
	} {
		c, ok := Parse(tc.argv, env, "/data")
		if !ok || c.Command != tc.command || !slices.Equal(c.Files, tc.files) || len(c.Stamp) != 64 {
			t.Errorf("Parse(%q) = %+v, %v", tc.argv, c, ok)
		}
	}
	for _, argv := range [][]string{
		{"walsnap"},
		{"walsnap", "backup"},
		{"walsnap", "wal-fetch", "onlyone"},
		{"walsnap", "--config", "x", "wal-push"},
	} {
		if c, ok := Parse(argv, env, "/data"); ok {
			t.Errorf("Parse(%q) = %+v, want no call", argv, c)
		}
	}
}

// TestStampFollowsSettings: the stamp is the same for the same inputs,
// whatever the file arguments and unrelated environment, and changes with
// anything the settings are resolved from.
func TestStampFollowsSettings(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "walsnap.yaml")
	if err := os.WriteFile(cfg, []byte("repo: s3://a/p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := func(extra ...string) []string {
		return append(append([]string{"walsnap-pg", "--config", cfg}, extra...), "wal-push", "pg_wal/000000010000000000000001")
	}
	env := []string{"AWS_REGION=eu-west-1", "PGDATA=/data", "TERM=xterm"}
	stamp := func(argv, env []string, cwd string) string {
		t.Helper()
		c, ok := Parse(argv, env, cwd)
		if !ok || c.Stamp == "" {
			t.Fatalf("Parse(%q): %+v %v", argv, c, ok)
		}
		return c.Stamp
	}
	base := stamp(argv(), env, "/data")
	other := argv()
	other[len(other)-1] = "pg_wal/000000010000000000000002"
	same := map[string]string{
		"another file":          stamp(other, env, "/data"),
		"another program name":  stamp(append([]string{"/usr/local/bin/walsnap"}, argv()[1:]...), env, "/data"),
		"unrelated environment": stamp(argv(), append(slices.Clone(env), "LANG=C", "WALSNAP_SETTINGS_CALL=x", "WALSNAP_RESOLVED_CONFIG={}"), "/data"),
		"environment order":     stamp(argv(), []string{env[2], env[1], env[0]}, "/data"),
	}
	for what, s := range same {
		if s != base {
			t.Errorf("%s changed the stamp", what)
		}
	}
	differ := map[string]string{
		"a flag":             stamp(argv("--repo", "s3://b/p"), env, "/data"),
		"a WALSNAP_ setting": stamp(argv(), append(slices.Clone(env), "WALSNAP_REPO=s3://b/p"), "/data"),
		"a PG variable":      stamp(argv(), append(slices.Clone(env), "PGHOST=/tmp"), "/data"),
		"an AWS variable":    stamp(argv(), append(slices.Clone(env), "AWS_PROFILE=x"), "/data"),
		"the directory":      stamp(argv(), env, "/other"),
		"the command":        stamp([]string{"walsnap-pg", "--config", cfg, "wal-fetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"}, env, "/data"),
	}
	if err := os.WriteFile(cfg, []byte("repo: s3://b/p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	differ["the config file's content"] = stamp(argv(), env, "/data")
	named := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(named, []byte("repo: s3://a/p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withEnvFile := stamp(argv(), append(slices.Clone(env), "WALSNAP_CONFIG="+named), "/data")
	if err := os.WriteFile(named, []byte("repo: s3://c/p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if stamp(argv(), append(slices.Clone(env), "WALSNAP_CONFIG="+named), "/data") == withEnvFile {
		t.Error("the content of the file WALSNAP_CONFIG names does not change the stamp")
	}
	for what, s := range differ {
		if s == base {
			t.Errorf("%s did not change the stamp", what)
		}
	}
}

// TestStampUnreadableConfig: a config file that cannot be read (here: a
// path through a regular file, ENOTDIR) gives no stamp, so nothing is
// served on a guess.
func TestStampUnreadableConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, ok := Parse([]string{"walsnap-pg", "--config=" + filepath.Join(file, "walsnap.yaml"), "wal-push", "pg_wal/000000010000000000000001"}, nil, "/")
	if !ok || c.Stamp != "" {
		t.Fatalf("unreadable config: %+v %v", c, ok)
	}
}
