package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "walsnap.yaml")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	p := writeFile(t, `
repo: s3://bucket/prod/db1
s3:
  endpoint: http://127.0.0.1:9000
  path_style: true
  sse: aws:kms
  sse_kms_key_id: alias/walsnap
compression: zstd:3
push:
  concurrency: 8
  timeout: 90s
fetch:
  prefetch: 0
`, 0o600)
	c := Default()
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Repo.String() != "s3://bucket/prod/db1" || c.Repo.Bucket != "bucket" || c.Repo.Prefix != "prod/db1" || !c.S3.PathStyle || c.S3.SSE != SSEKMS || c.Compression.String() != "zstd:3" ||
		c.Push.Concurrency != 8 || c.Push.Timeout != 90*time.Second || c.Fetch.Prefetch != 0 {
		t.Fatalf("unexpected config: %+v", c)
	}
	// Defaults not mentioned in the file survive.
	if c.Push.Ahead != 16 || c.Fetch.Concurrency != 4 || c.S3.MaxAttempts != 5 {
		t.Fatalf("defaults lost: %+v", c)
	}
}

func TestLoadFileRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"unknown key":    {"repo: file:///x\ncompresion: zstd\n", 0o600, "compresion"},
		"nested unknown": {"s3:\n  endpont: x\n", 0o600, "endpont"},
		"bad type":       {"push:\n  concurrency: many\n", 0o600, "many"},
		"world writable": {"repo: file:///x\n", 0o666, "insecure config file: mode -rw-rw-rw- makes it writable by group or others; run chmod go-w on it"},
		"group writable": {"repo: file:///x\n", 0o620, "insecure config file: mode -rw--w---- makes it writable by group or others"},
		"two documents":  {"repo: s3://bucket/db1\n---\nrepo: file:///tmp/evil\n", 0o600, "more than one YAML document"},
		"empty first":    {"---\n---\nrepo: file:///tmp/evil\n", 0o600, "more than one YAML document"},
		"trailing ---":   {"repo: s3://bucket/db1\n---\n", 0o600, "more than one YAML document"},
	} {
		t.Run(name, func(t *testing.T) {
			c := Default()
			err := c.LoadFile(writeFile(t, tc.body, tc.mode))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadFile error = %v, want mention of %q", err, tc.want)
			}
		})
	}
	c := Default()
	if err := c.LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if FileExists(filepath.Join(t.TempDir(), "missing.yaml")) {
		t.Fatal("FileExists on a missing file")
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	for _, body := range []string{"", "# nothing yet\n", "---\n"} {
		c := Default()
		if err := c.LoadFile(writeFile(t, body, 0o600)); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Fatalf("%q changed settings: %+v", body, c)
		}
	}
}

// TestSecondDocumentRefused: a second YAML document would be ignored, so a
// file with one is refused whole, and nothing of it is applied.
func TestSecondDocumentRefused(t *testing.T) {
	c := Default()
	err := c.LoadFile(writeFile(t, "repo: s3://bucket/db1\ncompression: gzip\n---\nrepo: file:///tmp/evil\n", 0o600))
	if !errors.Is(err, ErrMultipleDocuments) {
		t.Fatalf("LoadFile = %v, want ErrMultipleDocuments", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("a refused file changed settings: %+v", c)
	}
	// One document with explicit markers is fine.
	if err := c.LoadFile(writeFile(t, "---\nrepo: s3://bucket/db1\n...\n", 0o600)); err != nil || c.Repo.String() != "s3://bucket/db1" {
		t.Fatalf("one marked document: %v, repo %q", err, c.Repo)
	}
}

func TestKeysCoverSet(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys {
		if seen[k.Name] {
			t.Fatalf("duplicate key %s", k.Name)
		}
		seen[k.Name] = true
		c := Default()
		val := map[Kind]string{String: "x", Int: "3", Bool: "true", Duration: "7s"}[k.Kind]
		// Typed values take only what they can parse.
		if v, ok := map[string]string{"repo": "s3://b/p", "s3.sse": "AES256", "s3.checksums": "when_required",
			"compression": "s2", "log.level": "debug", "log.format": "json", "backup.provider": "ebs", "ebs.volumes": "vol-0123456789abcdef0",
			"retention.window": "14d", "encryption.recipients": testRecipient}[k.Name]; ok {
			val = v
		}
		if err := c.Set(k.Name, val); err != nil {
			t.Errorf("Set(%s): %v", k.Name, err)
		}
		if reflect.DeepEqual(c, Default()) {
			t.Errorf("Set(%s, %s) changed nothing", k.Name, val)
		}
	}
	if got := (Key{Name: "s3.path_style"}).Flag(); got != "s3-path-style" {
		t.Errorf("Flag = %s", got)
	}
	if got := (Key{Name: "s3.path_style"}).Env(); got != "WALSNAP_S3_PATH_STYLE" {
		t.Errorf("Env = %s", got)
	}
	c := Default()
	if err := c.Set("nope", "1"); err == nil {
		t.Error("Set of an unknown key succeeded")
	}
	if err := c.Set("s3", "x"); err == nil {
		t.Error("Set of a whole section succeeded")
	}
	if err := c.Set("ebs.volumes", " vol-0123456789abcdef0, ,vol-1234abcd=/srv/pg "); err != nil ||
		!reflect.DeepEqual(c.EBS.Volumes, EBSVolumes{{ID: "vol-0123456789abcdef0"}, {ID: "vol-1234abcd", Mount: "/srv/pg"}}) {
		t.Errorf("ebs.volumes = %q, %v", c.EBS.Volumes, err)
	}
	if err := c.Set("push.concurrency", "x"); err == nil {
		t.Error("Set of a bad int succeeded")
	}
	if err := c.Set("push.timeout", "5"); err == nil {
		t.Error("Set of a duration without unit succeeded")
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config { c := Default(); c.Set("repo", "file:///var/lib/walsnap"); return c }
	if c := ok(); c.Validate() != nil {
		t.Fatal(c.Validate())
	}
	for name, tc := range map[string]struct {
		mut  func(*Config) error
		want error
		msg  string
	}{
		"no repo":         {func(c *Config) error { return c.Set("repo", "") }, ErrNoRepo, ""},
		"relative file":   {func(c *Config) error { return c.Set("repo", "file://rel/path") }, ErrBadRepo, ""},
		"ftp":             {func(c *Config) error { return c.Set("repo", "ftp://x/y") }, ErrBadRepo, ""},
		"s3 no bucket":    {func(c *Config) error { return c.Set("repo", "s3:///prefix") }, ErrBadRepo, ""},
		"s3 creds in url": {func(c *Config) error { return c.Set("repo", "s3://key:secret@bucket/p") }, ErrBadRepo, ""},
		"s3 port":         {func(c *Config) error { return c.Set("repo", "s3://bucket:9000/p") }, ErrBadRepo, "s3.endpoint"},
		"s3 fragment":     {func(c *Config) error { return c.Set("repo", "s3://bucket/p#x") }, ErrBadRepo, ""},
		"codec":           {func(c *Config) error { return c.Set("compression", "lzma") }, nil, "unknown codec"},
		"sse":             {func(c *Config) error { return c.Set("s3.sse", "aes") }, nil, "s3.sse"},
		"kms without sse": {func(c *Config) error { c.S3.SSEKMSKeyID = "k"; return nil }, nil, "requires"},
		"checksums":       {func(c *Config) error { return c.Set("s3.checksums", "always") }, nil, "checksums"},
		"concurrency":     {func(c *Config) error { c.Push.Concurrency = 0; return nil }, nil, "push.concurrency"},
		"timeout":         {func(c *Config) error { c.Fetch.Timeout = 0; return nil }, nil, "timeout"},
		"log level":       {func(c *Config) error { return c.Set("log.level", "loud") }, nil, "log.level"},
		"relative pgdata": {func(c *Config) error { c.PGData = "data"; return nil }, nil, "absolute"},
		"file query":      {func(c *Config) error { return c.Set("repo", "file:///var/lib/walsnap?x=1") }, ErrBadRepo, "query"},
		"endpoint scheme": {func(c *Config) error { c.S3.Endpoint = "127.0.0.1:9000"; return nil }, nil, "s3.endpoint"},
		"endpoint ftp":    {func(c *Config) error { c.S3.Endpoint = "ftp://minio:9000"; return nil }, nil, "want http://host[:port] or https://host[:port]"},
		"endpoint creds":  {func(c *Config) error { c.S3.Endpoint = "http://k:s@minio:9000"; return nil }, nil, "s3.endpoint \"http://REDACTED@minio:9000\": credentials"},
		"ebs endpoint":    {func(c *Config) error { c.EBS.Endpoint = "http://moto:5000?x=1"; return nil }, nil, "ebs.endpoint"},
	} {
		c := ok()
		err := tc.mut(&c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

func TestParseRepo(t *testing.T) {
	for in, want := range map[string][2]string{
		"s3://bucket":             {"s3", "bucket/"},
		"s3://bucket/a/b/":        {"s3", "bucket/a/b"},
		"file:///var/lib/walsnap": {"file", "/var/lib/walsnap"},
		"file:///a/../b/":         {"file", "/b"},
		"file:///srv/pg@15/repo":  {"file", "/srv/pg@15/repo"},
		"s3://bucket/a@b":         {"s3", "bucket/a@b"},
	} {
		s, l, err := ParseRepo(in)
		if err != nil || s != want[0] || l != want[1] {
			t.Errorf("ParseRepo(%q) = %q %q %v", in, s, l, err)
		}
	}
}

func TestUsedByFetch(t *testing.T) {
	used := map[string]bool{}
	for _, k := range Keys {
		used[k.Name] = k.UsedByFetch()
	}
	for _, name := range []string{"repo", "s3.endpoint", "s3.ca_file", "compression", "spool_dir", "fetch.prefetch", "log.level"} {
		if !used[name] {
			t.Errorf("%s is not passed to wal-fetch", name)
		}
	}
	for _, name := range []string{"pg.host", "backup.provider", "push.ahead", "command.restore", "ebs.region"} {
		if used[name] {
			t.Errorf("%s is passed to wal-fetch", name)
		}
	}
}
