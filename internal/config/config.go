// Package config holds walsnap's settings and loads them, in increasing order
// of precedence, from built-in defaults, a YAML file, the environment
// (WALSNAP_*) and command-line flags.
//
// Every setting has one dotted key ("s3.endpoint") that names it in the YAML
// file; the matching environment variable (WALSNAP_S3_ENDPOINT) and flag
// (--s3-endpoint) are derived from the key, so the three never drift apart.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walsnap/walsnap/internal/compress"
)

// DefaultPath is read when no --config is given and the file exists.
const DefaultPath = "/etc/walsnap/walsnap.yaml"

// Config is the resolved configuration shared by every command.
type Config struct {
	Repo        string  `yaml:"repo" json:"repo"`
	S3          S3      `yaml:"s3" json:"s3"`
	Compression string  `yaml:"compression" json:"compression"`
	PGData      string  `yaml:"pgdata" json:"pgdata"`
	SpoolDir    string  `yaml:"spool_dir" json:"spool_dir"`
	Push        Push    `yaml:"push" json:"push"`
	Fetch       Fetch   `yaml:"fetch" json:"fetch"`
	Log         Log     `yaml:"log" json:"log"`
	PG          PG      `yaml:"pg" json:"pg"`
	Backup      Backup  `yaml:"backup" json:"backup"`
	Command     Command `yaml:"command" json:"command"`
	EBS         EBS     `yaml:"ebs" json:"ebs"`
}

// EBS configures the ebs provider: snapshots of the EBS volumes that hold
// the data directory, pg_wal and tablespaces.
type EBS struct {
	Region      string        `yaml:"region" json:"region"`
	Endpoint    string        `yaml:"endpoint" json:"endpoint"`
	InstanceID  string        `yaml:"instance_id" json:"instance_id"`
	Volumes     []string      `yaml:"volumes" json:"volumes"` // explicit volume ids; overrides discovery
	Freeze      bool          `yaml:"freeze" json:"freeze"`
	WaitTimeout time.Duration `yaml:"wait_timeout" json:"wait_timeout"`
}

// Command configures the command provider: snapshot systems walsnap does
// not drive itself (LVM, ZFS, btrfs, SAN arrays).
type Command struct {
	Snapshot string `yaml:"snapshot" json:"snapshot"` // run during the backup; prints snapshot references
	Restore  string `yaml:"restore" json:"restore"`   // run at restore with those references; puts the data in place
}

// PG says how backups reach the PostgreSQL server. The password comes only
// from PGPASSWORD or ~/.pgpass.
type PG struct {
	Host     string `yaml:"host" json:"host"`
	Port     int    `yaml:"port" json:"port"`
	User     string `yaml:"user" json:"user"`
	Database string `yaml:"database" json:"database"`
}

// Backup configures base backups and restores.
type Backup struct {
	Provider   string        `yaml:"provider" json:"provider"`
	Streams    int           `yaml:"streams" json:"streams"`
	LockTTL    time.Duration `yaml:"lock_ttl" json:"lock_ttl"`
	WALTimeout time.Duration `yaml:"wal_timeout" json:"wal_timeout"`
}

// S3 configures the S3 (or S3-compatible) repository backend.
type S3 struct {
	Endpoint     string `yaml:"endpoint" json:"endpoint"`
	Region       string `yaml:"region" json:"region"`
	PathStyle    bool   `yaml:"path_style" json:"path_style"`
	SSE          string `yaml:"sse" json:"sse"`
	SSEKMSKeyID  string `yaml:"sse_kms_key_id" json:"sse_kms_key_id"`
	StorageClass string `yaml:"storage_class" json:"storage_class"`
	Checksums    string `yaml:"checksums" json:"checksums"`
	CAFile       string `yaml:"ca_file" json:"ca_file"`
	MaxAttempts  int    `yaml:"max_attempts" json:"max_attempts"`
}

// Push configures wal-push.
type Push struct {
	Concurrency int           `yaml:"concurrency" json:"concurrency"`
	Ahead       int           `yaml:"ahead" json:"ahead"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
}

// Fetch configures wal-fetch.
type Fetch struct {
	Prefetch    int           `yaml:"prefetch" json:"prefetch"`
	Concurrency int           `yaml:"concurrency" json:"concurrency"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
}

// Log configures logging to stderr.
type Log struct {
	Level  string `yaml:"level" json:"level"`
	Format string `yaml:"format" json:"format"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		Compression: compress.Default.String(),
		S3:          S3{Checksums: "when_supported", MaxAttempts: 5},
		Push:        Push{Concurrency: 4, Ahead: 16, Timeout: 5 * time.Minute},
		Fetch:       Fetch{Prefetch: 8, Concurrency: 4, Timeout: 5 * time.Minute},
		Log:         Log{Level: "info", Format: "text"},
		PG:          PG{Host: "/var/run/postgresql", Port: 5432, User: "postgres", Database: "postgres"},
		Backup:      Backup{Provider: "files", Streams: 2, LockTTL: 24 * time.Hour, WALTimeout: 10 * time.Minute},
		EBS:         EBS{WaitTimeout: 6 * time.Hour},
	}
}

// Kind is the type of a setting's value.
type Kind int

// Kinds of settings.
const (
	String Kind = iota
	Int
	Bool
	Duration
)

// Key describes one setting.
type Key struct {
	Name  string // dotted YAML key, e.g. "s3.endpoint"
	Kind  Kind
	Usage string
}

// Flag is the command-line flag name of the key: "s3-path-style".
func (k Key) Flag() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(k.Name)
}

// Env is the environment variable of the key: "WALSNAP_S3_PATH_STYLE".
func (k Key) Env() string {
	return "WALSNAP_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k.Name))
}

// Keys lists every setting, in the order --help shows them.
var Keys = []Key{
	{"repo", String, "repository URL: s3://bucket/prefix or file:///absolute/path"},
	{"s3.endpoint", String, "S3 endpoint URL for S3-compatible stores (default: AWS)"},
	{"s3.region", String, "S3 region (default: from the AWS SDK chain, else us-east-1)"},
	{"s3.path_style", Bool, "use path-style S3 addressing (MinIO and most S3-compatible stores)"},
	{"s3.sse", String, "server-side encryption: AES256 or aws:kms"},
	{"s3.sse_kms_key_id", String, "KMS key id/ARN for s3.sse=aws:kms"},
	{"s3.storage_class", String, "S3 storage class for new objects (default: the bucket's)"},
	{"s3.checksums", String, "request checksums: when_required or when_supported"},
	{"s3.ca_file", String, "PEM CA bundle to trust for a TLS endpoint"},
	{"s3.max_attempts", Int, "attempts per S3 call before giving up"},
	{"compression", String, "codec for new objects: zstd, zstd:<1-22>, s2, gzip, gzip:<1-9>, none"},
	{"pgdata", String, "PostgreSQL data directory"},
	{"spool_dir", String, "directory for push-ahead records and prefetched WAL (default: pg_wal/.walsnap)"},
	{"push.concurrency", Int, "wal-push: segments uploaded at once"},
	{"push.ahead", Int, "wal-push: most .ready files pushed ahead per call (0 disables push-ahead)"},
	{"push.timeout", Duration, "wal-push: deadline for one call"},
	{"fetch.prefetch", Int, "wal-fetch: segments prefetched after each one served (0 disables prefetch)"},
	{"fetch.concurrency", Int, "wal-fetch: prefetch downloads at once"},
	{"fetch.timeout", Duration, "wal-fetch: deadline for one call"},
	{"log.level", String, "log level: debug, info, warn, error"},
	{"log.format", String, "log format: text or json"},
	{"pg.host", String, "PostgreSQL host or unix socket directory, for backups"},
	{"pg.port", Int, "PostgreSQL port"},
	{"pg.user", String, "PostgreSQL user for backups (superuser or pg_backup_start/stop rights); password from PGPASSWORD or ~/.pgpass"},
	{"pg.database", String, "database to connect to"},
	{"backup.provider", String, "backup provider: files, ebs or command"},
	{"backup.streams", Int, "files provider: concurrent copy streams (backup and restore)"},
	{"backup.lock_ttl", Duration, "how long a crashed backup's repository lock can block others"},
	{"backup.wal_timeout", Duration, "how long a backup waits for its last WAL segment to be archived"},
	{"command.snapshot", String, "command provider: shell command that snapshots the volumes (see README)"},
	{"command.restore", String, "command provider: shell command that restores the snapshots (see README)"},
	{"ebs.region", String, "ebs provider: EC2 region (default: from the AWS SDK chain or IMDS)"},
	{"ebs.endpoint", String, "ebs provider: EC2 endpoint URL for EC2-compatible APIs"},
	{"ebs.instance_id", String, "ebs provider: this instance's id (default: from IMDS)"},
	{"ebs.volumes", String, "ebs provider: comma-separated volume ids to snapshot, instead of discovering them"},
	{"ebs.freeze", Bool, "ebs provider: fsfreeze the PostgreSQL filesystems around the snapshot call"},
	{"ebs.wait_timeout", Duration, "ebs provider: how long to wait for snapshots to complete"},
}

// Set assigns a setting by its dotted key from its text form. The key is
// the path of YAML tags through Config, so the file, the environment and
// the flags can never name a setting differently.
func (c *Config) Set(key, value string) error {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(key, ".") {
		f, ok := fieldByTag(v, name)
		if !ok {
			return fmt.Errorf("unknown setting %q", key)
		}
		v = f
	}
	var err error
	switch p := v.Addr().Interface().(type) {
	case *string:
		*p = value
	case *bool:
		*p, err = strconv.ParseBool(value)
	case *int:
		*p, err = strconv.Atoi(value)
	case *time.Duration:
		*p, err = time.ParseDuration(value)
	case *[]string: // comma-separated
		*p = nil
		for _, item := range strings.Split(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p = append(*p, item)
			}
		}
	default:
		return fmt.Errorf("setting %q is not a single value", key)
	}
	if err != nil {
		return fmt.Errorf("setting %s=%q: %w", key, value, err)
	}
	return nil
}

// fieldByTag finds the field of struct v whose yaml tag is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// ErrInsecureFile is returned when a config file may be changed by users
// other than its owner: anyone who can edit it can redirect the archive.
var ErrInsecureFile = errors.New("config file is writable by group or others")

// LoadFile reads a YAML config file over c. Unknown keys are errors, so a
// typo cannot silently leave a default in place.
func (c *Config) LoadFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("config %s (mode %v): %w; run chmod go-w on it", path, fi.Mode().Perm(), ErrInsecureFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Sentinel validation errors.
var (
	ErrNoRepo  = errors.New("no repository configured (set repo in the config file, WALSNAP_REPO or --repo)")
	ErrBadRepo = errors.New("bad repository URL")
)

// Validate checks the settings and returns the first problem found.
func (c *Config) Validate() error {
	if c.Repo == "" {
		return ErrNoRepo
	}
	if _, _, err := ParseRepo(c.Repo); err != nil {
		return err
	}
	if _, err := compress.Parse(c.Compression); err != nil {
		return err
	}
	switch c.S3.SSE {
	case "", "AES256", "aws:kms":
	default:
		return fmt.Errorf("s3.sse %q: want AES256 or aws:kms", c.S3.SSE)
	}
	if c.S3.SSEKMSKeyID != "" && c.S3.SSE != "aws:kms" {
		return errors.New("s3.sse_kms_key_id requires s3.sse: aws:kms")
	}
	switch c.S3.Checksums {
	case "when_required", "when_supported":
	default:
		return fmt.Errorf("s3.checksums %q: want when_required or when_supported", c.S3.Checksums)
	}
	for _, n := range []struct {
		name string
		v    int
		min  int
	}{
		{"s3.max_attempts", c.S3.MaxAttempts, 1},
		{"push.concurrency", c.Push.Concurrency, 1},
		{"push.ahead", c.Push.Ahead, 0},
		{"fetch.prefetch", c.Fetch.Prefetch, 0},
		{"fetch.concurrency", c.Fetch.Concurrency, 1},
		{"backup.streams", c.Backup.Streams, 1},
	} {
		if n.v < n.min || n.v > 1024 {
			return fmt.Errorf("%s = %d: want %d-1024", n.name, n.v, n.min)
		}
	}
	if c.Push.Timeout <= 0 || c.Fetch.Timeout <= 0 || c.Backup.LockTTL <= 0 || c.Backup.WALTimeout <= 0 {
		return errors.New("push.timeout, fetch.timeout, backup.lock_ttl and backup.wal_timeout must be positive")
	}
	if c.PG.Port < 1 || c.PG.Port > 65535 {
		return fmt.Errorf("pg.port %d: want 1-65535", c.PG.Port)
	}
	switch c.Backup.Provider {
	case "files":
	case "command":
		if c.Command.Snapshot == "" {
			return errors.New("backup.provider command needs command.snapshot")
		}
	case "ebs":
	default:
		return fmt.Errorf("backup.provider %q: want files, ebs or command", c.Backup.Provider)
	}
	for _, v := range c.EBS.Volumes {
		if !strings.HasPrefix(v, "vol-") {
			return fmt.Errorf("ebs.volumes: %q is not a volume id (vol-...)", v)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	for _, p := range []struct{ name, v string }{{"pgdata", c.PGData}, {"spool_dir", c.SpoolDir}, {"s3.ca_file", c.S3.CAFile}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return fmt.Errorf("%s %q: must be an absolute path", p.name, p.v)
		}
	}
	return nil
}

// ParseRepo splits a repository URL into its scheme ("s3" or "file") and
// location: bucket/prefix for s3, an absolute directory for file.
func ParseRepo(repo string) (scheme, location string, err error) {
	u, err := url.Parse(repo)
	if err != nil {
		return "", "", fmt.Errorf("%w %q: %v", ErrBadRepo, repo, err)
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return "", "", fmt.Errorf("%w %q: missing bucket (want s3://bucket/prefix)", ErrBadRepo, repo)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return "", "", fmt.Errorf("%w %q: credentials, query parameters and fragments do not belong in the URL", ErrBadRepo, repo)
		}
		if u.Port() != "" {
			return "", "", fmt.Errorf("%w %q: a bucket has no port; set s3.endpoint for the server", ErrBadRepo, repo)
		}
		return "s3", u.Host + "/" + strings.Trim(u.Path, "/"), nil
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return "", "", fmt.Errorf("%w %q: want file:///absolute/path", ErrBadRepo, repo)
		}
		return "file", filepath.Clean(u.Path), nil
	}
	return "", "", fmt.Errorf("%w %q: scheme must be s3:// or file://", ErrBadRepo, repo)
}

// FileExists reports whether the default config file is present.
func FileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
