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
	"encoding"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walsnap/walsnap/internal/compress"
	"github.com/walsnap/walsnap/internal/manifest"
)

// Config is the resolved configuration shared by every command.
type Config struct {
	Repo        Location       `yaml:"repo" json:"repo"`
	S3          S3             `yaml:"s3" json:"s3"`
	Compression compress.Codec `yaml:"compression" json:"compression"`
	Encryption  Encryption     `yaml:"encryption" json:"encryption"`
	PGData      string         `yaml:"pgdata" json:"pgdata"`
	SpoolDir    string         `yaml:"spool_dir" json:"spool_dir"`
	Push        Push           `yaml:"push" json:"push"`
	Fetch       Fetch          `yaml:"fetch" json:"fetch"`
	Log         Log            `yaml:"log" json:"log"`
	PG          PG             `yaml:"pg" json:"pg"`
	Backup      Backup         `yaml:"backup" json:"backup"`
	Command     Command        `yaml:"command" json:"command"`
	EBS         EBS            `yaml:"ebs" json:"ebs"`
	Retention   Retention      `yaml:"retention" json:"retention"`
}

// EBS configures the ebs provider: snapshots of the EBS volumes that hold
// the data directory, pg_wal and tablespaces.
type EBS struct {
	Region      string        `yaml:"region" json:"region"`
	Endpoint    string        `yaml:"endpoint" json:"endpoint"`
	InstanceID  string        `yaml:"instance_id" json:"instance_id"`
	Volumes     EBSVolumes    `yaml:"volumes" json:"volumes"` // explicit volumes; overrides discovery
	Freeze      bool          `yaml:"freeze" json:"freeze"`
	WaitTimeout time.Duration `yaml:"wait_timeout" json:"wait_timeout"`
	// WindowTimeout bounds the backup window (the snapshot call and the
	// freeze), and the EC2 checks before it.
	WindowTimeout time.Duration `yaml:"window_timeout" json:"window_timeout"`
}

// Command configures the command provider: snapshot systems walsnap does
// not drive itself (LVM, ZFS, btrfs, SAN arrays).
type Command struct {
	Snapshot string `yaml:"snapshot" json:"snapshot"` // run during the backup; prints snapshot references
	Restore  string `yaml:"restore" json:"restore"`   // run at restore with those references; puts the data in place
	Verify   string `yaml:"verify" json:"verify"`     // run by verify with those references; exits 0 when they exist
	Delete   string `yaml:"delete" json:"delete"`     // run by delete with the references of an expired backup
	Cleanup  string `yaml:"cleanup" json:"cleanup"`   // run after a drill (and a failed restore): undoes what restore set up
}

// PG says how backups reach the PostgreSQL server. The password comes only
// from PGPASSWORD or ~/.pgpass.
//
// An empty (zero) setting takes the libpq environment variable (PGHOST,
// PGPORT, PGUSER, PGDATABASE), then PostgreSQL's usual default; package pg
// applies them.
type PG struct {
	Host     string `yaml:"host" json:"host"`
	Port     int    `yaml:"port" json:"port"`
	User     string `yaml:"user" json:"user"`
	Database string `yaml:"database" json:"database"`
}

// Backup configures base backups and restores.
type Backup struct {
	Provider   manifest.Provider `yaml:"provider" json:"provider"`
	Streams    int               `yaml:"streams" json:"streams"`
	LockTTL    time.Duration     `yaml:"lock_ttl" json:"lock_ttl"`
	WALTimeout time.Duration     `yaml:"wal_timeout" json:"wal_timeout"`
}

// S3 configures the S3 (or S3-compatible) repository backend.
type S3 struct {
	Endpoint     string    `yaml:"endpoint" json:"endpoint"`
	Region       string    `yaml:"region" json:"region"`
	PathStyle    bool      `yaml:"path_style" json:"path_style"`
	SSE          SSE       `yaml:"sse" json:"sse"`
	SSEKMSKeyID  string    `yaml:"sse_kms_key_id" json:"sse_kms_key_id"`
	StorageClass string    `yaml:"storage_class" json:"storage_class"`
	Checksums    Checksums `yaml:"checksums" json:"checksums"`
	CAFile       string    `yaml:"ca_file" json:"ca_file"`
	MaxAttempts  int       `yaml:"max_attempts" json:"max_attempts"`
}

// Push configures wal-push.
type Push struct {
	Concurrency int           `yaml:"concurrency" json:"concurrency"`
	Ahead       int           `yaml:"ahead" json:"ahead"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
	Linger      time.Duration `yaml:"linger" json:"linger"`
}

// Fetch configures wal-fetch.
type Fetch struct {
	Prefetch    int           `yaml:"prefetch" json:"prefetch"`
	Concurrency int           `yaml:"concurrency" json:"concurrency"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`
}

// Log configures logging to stderr.
type Log struct {
	Level  LogLevel  `yaml:"level" json:"level"`
	Format LogFormat `yaml:"format" json:"format"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		Compression: compress.Default,
		S3:          S3{Checksums: ChecksumsWhenSupported, MaxAttempts: 5},
		Push:        Push{Concurrency: 4, Ahead: 16, Timeout: 5 * time.Minute, Linger: 5 * time.Minute},
		Fetch:       Fetch{Prefetch: 8, Concurrency: 4, Timeout: 5 * time.Minute},
		Log:         Log{Level: LogLevel(slog.LevelInfo), Format: LogText},
		Backup:      Backup{Provider: manifest.ProviderFiles, Streams: 2, LockTTL: 24 * time.Hour, WALTimeout: 10 * time.Minute},
		EBS:         EBS{WaitTimeout: 6 * time.Hour, WindowTimeout: time.Minute},
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

// UsedByFetch reports whether wal-fetch (and its prefetcher) reads the
// setting: a restore passes these on in the restore_command it writes.
func (k Key) UsedByFetch() bool {
	return k.Name == "repo" || k.Name == "spool_dir" || k.Name == "compression" || k.Name == "encryption.identity_file" ||
		strings.HasPrefix(k.Name, "s3.") || strings.HasPrefix(k.Name, "fetch.") || strings.HasPrefix(k.Name, "log.")
}

// Env is the environment variable of the key: "WALSNAP_S3_PATH_STYLE".
func (k Key) Env() string {
	return "WALSNAP_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k.Name))
}

// Keys lists every setting, in the order --help shows them.
var Keys = []Key{
	{"repo", String, "repository URL: s3://bucket/prefix or file:///absolute/path"},
	{"s3.endpoint", String, "S3 endpoint URL for S3-compatible stores (default: AWS)"},
	{"s3.region", String, "S3 region; setting it saves a request per call (default: the AWS SDK chain (AWS_REGION, ~/.aws/config), else the bucket's own region, asked from this instance's (IMDS))"},
	{"s3.path_style", Bool, "use path-style S3 addressing (MinIO and most S3-compatible stores)"},
	{"s3.sse", String, "server-side encryption: AES256 or aws:kms"},
	{"s3.sse_kms_key_id", String, "KMS key id/ARN for s3.sse=aws:kms"},
	{"s3.storage_class", String, "S3 storage class for new objects (default: the bucket's)"},
	{"s3.checksums", String, "request checksums: when_required or when_supported"},
	{"s3.ca_file", String, "PEM CA bundle to trust for a TLS endpoint"},
	{"s3.max_attempts", Int, "attempts per S3 call before giving up"},
	{"compression", String, "codec for new objects: zstd, zstd:<1-22>, s2, gzip, gzip:<1-9>, none"},
	{"encryption.recipients", String, "client-side encryption (age) of new WAL and backup objects: the recipients, comma-separated, each a public key (age1...) or the absolute path of a recipients file; the database host needs only these, never the identity. Once a repository holds encrypted objects it refuses writers without recipients (default: off)"},
	{"encryption.identity_file", String, "age identity file (private key, from age-keygen) that decrypts the repository's encrypted objects: needed only where WAL is fetched, backups restored or verify --deep checks content; mode 0600, or 0640 with group postgres"},
	{"pgdata", String, "PostgreSQL data directory (default: $PGDATA)"},
	{"spool_dir", String, "directory for push-ahead records and prefetched WAL (default: pg_wal/.walsnap)"},
	{"push.concurrency", Int, "wal-push: segments the background archiver uploads at once"},
	{"push.ahead", Int, "wal-push: how many .ready files the background archiver may archive ahead of PostgreSQL (0 disables it)"},
	{"push.timeout", Duration, "wal-push: deadline for one call"},
	{"push.linger", Duration, "wal-push: how long a background archiver that PostgreSQL's own calls started stays while its server runs and no new WAL is ready; while it stays it uploads each file the moment a call asks, and the call only confirms its record"},
	{"fetch.prefetch", Int, "wal-fetch: segments prefetched after each one served (0 disables prefetch)"},
	{"fetch.concurrency", Int, "wal-fetch: prefetch downloads at once"},
	{"fetch.timeout", Duration, "wal-fetch: deadline for one call"},
	{"log.level", String, "log level: debug, info, warn, error"},
	{"log.format", String, "log format: text or json"},
	{"pg.host", String, "PostgreSQL host or unix socket directory, for backups (default: $PGHOST, else /var/run/postgresql)"},
	{"pg.port", Int, "PostgreSQL port (default: $PGPORT, else 5432)"},
	{"pg.user", String, "PostgreSQL user for backups, a superuser or one with pg_backup_start/stop rights; password from PGPASSWORD or ~/.pgpass (default: $PGUSER, else postgres)"},
	{"pg.database", String, "database to connect to (default: $PGDATABASE, else postgres)"},
	{"backup.provider", String, "backup provider: files, ebs or command"},
	{"backup.streams", Int, "files provider: concurrent copy streams (backup and restore)"},
	{"backup.lock_ttl", Duration, "how long a crashed backup's repository lock can block others"},
	{"backup.wal_timeout", Duration, "how long a backup waits for its last WAL segment to be archived"},
	{"command.snapshot", String, "command provider: shell command that snapshots the volumes (see README)"},
	{"command.restore", String, "command provider: shell command that restores the snapshots (see README)"},
	{"command.delete", String, "command provider: shell command that deletes an expired backup's snapshots (see README; unset: delete only prints them)"},
	{"command.verify", String, "command provider: shell command that walsnap verify runs to check that a backup's snapshots exist (see README)"},
	{"command.cleanup", String, "command provider: shell command that removes what command.restore set up, run at the end of walsnap drill and after a failed restore (see README)"},
	{"ebs.region", String, "ebs provider: EC2 region (default: from the AWS SDK chain or IMDS)"},
	{"ebs.endpoint", String, "ebs provider: EC2 endpoint URL for EC2-compatible APIs"},
	{"ebs.instance_id", String, "ebs provider: this instance's id (default: from IMDS)"},
	{"ebs.volumes", String, "ebs provider: volumes to snapshot instead of discovering them, comma-separated, each an id or id=mount point (a mount point is needed where walsnap cannot map PostgreSQL's directories to volumes)"},
	{"ebs.freeze", Bool, "ebs provider: fsfreeze the PostgreSQL filesystems around the snapshot call"},
	{"ebs.wait_timeout", Duration, "ebs provider: how long to wait for snapshots to complete"},
	{"ebs.window_timeout", Duration, "ebs provider: deadline of the backup window (snapshot call and freeze), past which the backup is aborted; also bounds the EC2 checks before it"},
	{"retention.full", Int, "delete: keep the newest N complete backups (with retention.window, a backup either keeps is kept)"},
	{"retention.window", String, "delete: keep what restores to any point in this past span, e.g. 14d or 36h: the backups after its start and the newest one before"},
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
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		// Typed values parse themselves, and their errors name the setting.
		return u.UnmarshalText([]byte(value))
	}
	var err error
	switch p := v.Addr().Interface().(type) {
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
		if v.Kind() != reflect.String {
			return fmt.Errorf("setting %q is not a single value", key)
		}
		v.SetString(value)
	}
	if err != nil {
		return fmt.Errorf("setting %s=%q: %w", key, value, err)
	}
	return nil
}

// Get returns a setting's value in the text form Set reads: "" for an
// empty value, durations without trailing zero units ("5m", "24h"), lists
// comma-separated.
func (c Config) Get(key string) (string, error) {
	v := reflect.ValueOf(c)
	for _, name := range strings.Split(key, ".") {
		f, ok := fieldByTag(v, name)
		if !ok {
			return "", fmt.Errorf("unknown setting %q", key)
		}
		v = f
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		return string(b), err
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return shortDuration(x), nil
	case []string:
		return strings.Join(x, ","), nil
	case bool, int, string:
		return fmt.Sprint(x), nil
	}
	if v.Kind() == reflect.String {
		return v.String(), nil
	}
	return "", fmt.Errorf("setting %q is not a single value", key)
}

// shortDuration writes d as time.Duration does, without the zero units it
// ends with: 5m, 24h, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// DefaultText is the key's built-in default as help shows it, or "" when
// the default is empty, zero or false: the key's usage then says what
// applies (a libpq variable, the SDK's chain, or "off").
func (k Key) DefaultText() string {
	v, err := Default().Get(k.Name)
	if err != nil {
		panic(err) // every key names a field of Config (TestKeysCoverSet)
	}
	if v == "0" || v == "false" {
		return ""
	}
	return v
}

// Help returns the key's usage and the default that help shows for it,
// once: the built-in default (DefaultText), else what the usage's closing
// "(default: ...)" says applies, such as a libpq variable or the SDK's
// chain, which the usage returned then leaves out.
func (k Key) Help() (usage, def string) {
	usage, def = SplitDefault(k.Usage)
	if d := k.DefaultText(); d != "" {
		def = d
	}
	return usage, def
}

// SplitDefault splits a usage text that ends in "(default: X)" into the
// text before it and X; a usage without one comes back whole, with "".
func SplitDefault(usage string) (rest, def string) {
	head, tail, ok := strings.Cut(usage, " (default: ")
	if !ok || !strings.HasSuffix(tail, ")") || strings.Contains(tail, " (default: ") {
		return usage, ""
	}
	return head, strings.TrimSuffix(tail, ")")
}

// LoadEnv applies the settings' environment variables (Key.Env) found in
// environ (as from os.Environ) over c. An empty variable counts as unset.
// On error c is unchanged.
func (c *Config) LoadEnv(environ []string) error {
	next := *c
	for _, k := range Keys {
		v, ok := lookupEnv(environ, k.Env())
		if !ok || v == "" {
			continue
		}
		if err := next.Set(k.Name, v); err != nil {
			return fmt.Errorf("%s: %w", k.Env(), err)
		}
	}
	*c = next
	return nil
}

// DefaultFromPostgres fills the settings still empty from PostgreSQL's
// own environment, as every PostgreSQL tool reads it: pgdata from PGDATA
// (made absolute). It comes beneath the file, WALSNAP_* and the flags, so
// it runs after them; pg.host, pg.port, pg.user and pg.database take
// PGHOST, PGPORT, PGUSER and PGDATABASE the same way in package pg.
func (c *Config) DefaultFromPostgres(environ []string) error {
	if c.PGData != "" {
		return nil
	}
	v, ok := lookupEnv(environ, "PGDATA")
	if !ok || v == "" {
		return nil
	}
	abs, err := filepath.Abs(v)
	if err != nil {
		return fmt.Errorf("PGDATA %q: %w", v, err)
	}
	c.PGData = abs
	return nil
}

// lookupEnv finds name in environ; the last occurrence wins, as in
// os.Getenv.
func lookupEnv(environ []string, name string) (string, bool) {
	val, found := "", false
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val, found = v, true
		}
	}
	return val, found
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

// LoadFile reads a YAML config file over c. Unknown keys are errors, so a
// typo cannot silently leave a default in place; so is a second YAML
// document, which would be ignored. The file must be one that only root and
// the user running walsnap can change (see readConfigFile). On error c is
// unchanged.
func (c *Config) LoadFile(path string) error {
	data, err := readConfigFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	next := *c
	if err := dec.Decode(&next); err != nil {
		if errors.Is(err, io.EOF) { // empty, or only comments
			return nil
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, ErrMultipleDocuments)
	}
	*c = next
	return nil
}

// Sentinel validation errors.
var (
	ErrNoRepo  = errors.New("no repository configured (set repo in the config file, WALSNAP_REPO or --repo)")
	ErrBadRepo = errors.New("bad repository URL")
)

// Validate checks the settings and returns the first problem found.
func (c *Config) Validate() error {
	if c.Repo.IsZero() {
		return ErrNoRepo
	}
	if err := CheckEndpoint("s3.endpoint", c.S3.Endpoint); err != nil {
		return err
	}
	if err := CheckEndpoint("ebs.endpoint", c.EBS.Endpoint); err != nil {
		return err
	}
	if c.Compression.Name() == "" {
		return errors.New("compression: not set")
	}
	if c.S3.SSEKMSKeyID != "" && c.S3.SSE != SSEKMS {
		return errors.New("s3.sse_kms_key_id requires s3.sse: aws:kms")
	}
	if c.S3.Checksums == "" {
		return errors.New("s3.checksums: not set")
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
	if c.Push.Timeout <= 0 || c.Push.Linger <= 0 || c.Fetch.Timeout <= 0 || c.Backup.LockTTL <= 0 || c.Backup.WALTimeout <= 0 {
		return errors.New("push.timeout, push.linger, fetch.timeout, backup.lock_ttl and backup.wal_timeout must be positive")
	}
	if c.PG.Port < 0 || c.PG.Port > 65535 {
		return fmt.Errorf("pg.port %d: want 1-65535", c.PG.Port)
	}
	if _, err := manifest.ParseConfigurable(string(c.Backup.Provider)); err != nil {
		return err
	}
	if c.Backup.Provider == manifest.ProviderCommand && c.Command.Snapshot == "" {
		return errors.New("backup.provider command needs command.snapshot")
	}
	if err := c.EBS.Volumes.check(); err != nil {
		return err
	}
	if c.EBS.WindowTimeout <= 0 {
		return errors.New("ebs.window_timeout must be positive")
	}
	if c.Retention.Full < 0 {
		return fmt.Errorf("retention.full = %d: want 0 (not set) or more", c.Retention.Full)
	}
	if c.Log.Format == "" {
		return errors.New("log.format: not set")
	}
	for _, p := range []struct{ name, v string }{{"pgdata", c.PGData}, {"spool_dir", c.SpoolDir}, {"s3.ca_file", c.S3.CAFile}, {"encryption.identity_file", c.Encryption.IdentityFile}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return fmt.Errorf("%s %q: must be an absolute path", p.name, p.v)
		}
	}
	return nil
}

// ParseRepo splits a repository URL into its scheme ("s3" or "file") and
// location: bucket/prefix for s3, an absolute directory for file. Its
// errors show the URL only as Redact shows it.
func ParseRepo(repo string) (scheme, location string, err error) {
	shown := Redact(repo)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: "+format, append([]any{ErrBadRepo, shown}, args...)...)
	}
	u, err := url.Parse(repo)
	if err != nil {
		// The parser's message quotes parts of the URL.
		if shown != repo {
			return "", "", bad("not a valid URL; credentials, query parameters and fragments do not belong in it")
		}
		return "", "", bad("%v", errors.Unwrap(err))
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(u.Opaque, "@") {
		return "", "", bad("credentials, query parameters and fragments do not belong in the URL " +
			"(credentials come from the AWS SDK's default chain)")
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return "", "", bad("missing bucket (want s3://bucket/prefix)")
		}
		if u.Port() != "" {
			return "", "", bad("a bucket has no port; set s3.endpoint for the server")
		}
		return "s3", u.Host + "/" + strings.Trim(u.Path, "/"), nil
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return "", "", bad("want file:///absolute/path")
		}
		return "file", filepath.Clean(u.Path), nil
	}
	return "", "", bad("scheme must be s3:// or file://")
}

// CheckEndpoint checks the endpoint URL of setting name (s3.endpoint,
// ebs.endpoint): empty, or http(s)://host[:port][/path] without
// credentials, query or fragment. Its errors show the URL only as Redact
// shows it.
func CheckEndpoint(name, endpoint string) error {
	if endpoint == "" {
		return nil
	}
	shown := Redact(endpoint)
	u, err := url.Parse(endpoint)
	switch {
	case err != nil && shown != endpoint:
		return fmt.Errorf("%s %q: not a valid URL; credentials, query parameters and fragments do not belong in it", name, shown)
	case err != nil:
		return fmt.Errorf("%s %q: %v", name, shown, errors.Unwrap(err))
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(u.Opaque, "@"):
		return fmt.Errorf("%s %q: credentials, query parameters and fragments do not belong in the URL "+
			"(credentials come from the AWS SDK's default chain)", name, shown)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%s %q: want http://host[:port] or https://host[:port]", name, shown)
	}
	return nil
}

// FileExists reports whether the default config file is present.
func FileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
