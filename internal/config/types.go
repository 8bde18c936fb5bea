package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"gopkg.in/yaml.v3"
)

// Typed setting values. Each is parsed once, where the setting is read
// (YAML file, environment, flag, or the JSON handed to a helper process),
// through its UnmarshalText; everything after that uses the typed value.

// Location is a parsed repository URL: s3://bucket/prefix or
// file:///absolute/path.
type Location struct {
	Scheme string // "s3" or "file"
	Bucket string // s3
	Prefix string // s3: the key prefix, without leading or trailing slash
	Dir    string // file: the absolute, clean directory
	raw    string
}

// ParseLocation parses a repository URL. Its errors never show
// credentials (see Redact).
func ParseLocation(s string) (Location, error) {
	scheme, loc, err := ParseRepo(s)
	if err != nil {
		return Location{}, err
	}
	l := Location{Scheme: scheme, raw: s}
	switch scheme {
	case "s3":
		l.Bucket, l.Prefix, _ = strings.Cut(loc, "/")
	case "file":
		l.Dir = loc
	}
	return l, nil
}

// IsZero reports whether no repository is set.
func (l Location) IsZero() bool { return l.Scheme == "" }

// String is the URL as given.
func (l Location) String() string { return l.raw }

// MarshalText writes the URL as given.
func (l Location) MarshalText() ([]byte, error) { return []byte(l.raw), nil }

// UnmarshalText parses a repository URL; an empty one leaves no repository.
func (l *Location) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*l = Location{}
		return nil
	}
	parsed, err := ParseLocation(string(b))
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// SSE is the S3 server-side encryption of new objects.
type SSE string

// SSE values.
const (
	SSENone   SSE = ""        // the bucket's default
	SSEAES256 SSE = "AES256"  // SSE-S3
	SSEKMS    SSE = "aws:kms" // SSE-KMS (s3.sse_kms_key_id, or the account's default key)
)

// UnmarshalText checks an s3.sse value.
func (s *SSE) UnmarshalText(b []byte) error {
	switch v := SSE(b); v {
	case SSENone, SSEAES256, SSEKMS:
		*s = v
		return nil
	}
	return fmt.Errorf("s3.sse %q: want AES256 or aws:kms", b)
}

// Checksums says which S3 requests carry checksums.
type Checksums string

// Checksums values.
const (
	// ChecksumsWhenSupported: CRC checksums on every upload and download
	// that supports them.
	ChecksumsWhenSupported Checksums = "when_supported"
	// ChecksumsWhenRequired: only where an API requires one, for
	// S3-compatible stores that reject the newer checksums.
	ChecksumsWhenRequired Checksums = "when_required"
)

// UnmarshalText checks an s3.checksums value.
func (c *Checksums) UnmarshalText(b []byte) error {
	switch v := Checksums(b); v {
	case ChecksumsWhenSupported, ChecksumsWhenRequired:
		*c = v
		return nil
	}
	return fmt.Errorf("s3.checksums %q: want when_required or when_supported", b)
}

// LogFormat is the format of log lines.
type LogFormat string

// LogFormat values.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// UnmarshalText checks a log.format value.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch v := LogFormat(b); v {
	case LogText, LogJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("log.format %q: want text or json", b)
}

// LogLevel is the lowest level logged: debug, info, warn or error.
type LogLevel slog.Level

// MarshalText writes the level's name.
func (l LogLevel) MarshalText() ([]byte, error) {
	return []byte(strings.ToLower(slog.Level(l).String())), nil
}

// UnmarshalText checks a log.level value.
func (l *LogLevel) UnmarshalText(b []byte) error {
	for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if strings.EqualFold(string(b), lv.String()) {
			*l = LogLevel(lv)
			return nil
		}
	}
	return fmt.Errorf("log.level %q: want debug, info, warn or error", b)
}

// Encryption configures client-side encryption of the repository's data
// objects with age (filippo.io/age): WAL files, timeline history and
// backup history files, and the files provider's parts.
type Encryption struct {
	// Recipients are the public keys new objects are encrypted to; with
	// none, new objects are stored unencrypted (and a repository that
	// expects encryption refuses the writer).
	Recipients Recipients `yaml:"recipients" json:"recipients"`
	// IdentityFile holds the private key(s) that decrypt; it is read when
	// an encrypted object is read, and checked like the config file and
	// for being readable by its owner (and group) only.
	IdentityFile string `yaml:"identity_file" json:"identity_file"`
}

// Identities reads and parses the identity file. Its errors never quote
// the file's content, and never match fs.ErrNotExist: a missing key must
// not pass for a missing object (wal-fetch exits 1 only for that).
func (e Encryption) Identities() ([]age.Identity, error) {
	if e.IdentityFile == "" {
		return nil, errors.New("encryption.identity_file is not set")
	}
	data, err := ReadSecretFile("encryption.identity_file", e.IdentityFile)
	if err != nil {
		return nil, errors.New(err.Error())
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("encryption.identity_file %s: %v (want age identities, AGE-SECRET-KEY-1..., as age-keygen writes them)", e.IdentityFile, err)
	}
	return ids, nil
}

// Recipients is the encryption.recipients setting: age recipients, each
// given as a public key (age1...) or as the absolute path of a recipients
// file (one public key a line, # comments), as age -R reads it. A file
// must be one only trusted users can change (the config file's rule):
// whoever can add a recipient can read everything archived after.
type Recipients struct {
	items []string // as given
	list  []age.Recipient
}

// ParseRecipients parses the items of encryption.recipients.
func ParseRecipients(items []string) (Recipients, error) {
	r := Recipients{}
	for _, item := range items {
		if filepath.IsAbs(item) {
			data, err := readTrustedFile("encryption.recipients file", item, false)
			if err != nil {
				return Recipients{}, err
			}
			list, err := age.ParseRecipients(bytes.NewReader(data))
			if err != nil {
				return Recipients{}, fmt.Errorf("encryption.recipients file %s: %v", item, err)
			}
			r.list = append(r.list, list...)
		} else {
			if strings.HasPrefix(strings.ToUpper(item), "AGE-SECRET-KEY-") {
				return Recipients{}, errors.New("encryption.recipients: an age secret key (AGE-SECRET-KEY-...) is given where a recipient belongs; " +
					"give its public key (age-keygen -y FILE prints it) and keep the secret key off this host")
			}
			list, err := age.ParseRecipients(strings.NewReader(item))
			if err != nil {
				return Recipients{}, fmt.Errorf("encryption.recipients %q: want an age public key (age1...) or the absolute path of a recipients file", item)
			}
			r.list = append(r.list, list...)
		}
		r.items = append(r.items, item)
	}
	if len(r.list) > 0 {
		// age refuses some mixes (post-quantum with classic recipients):
		// say so now rather than at the first upload.
		if _, err := age.Encrypt(io.Discard, r.list...); err != nil {
			return Recipients{}, fmt.Errorf("encryption.recipients: %v", err)
		}
	}
	return r, nil
}

// List returns the parsed recipients (none: no encryption).
func (r Recipients) List() []age.Recipient { return r.list }

// MarshalText writes the items as given, comma-separated.
func (r Recipients) MarshalText() ([]byte, error) { return []byte(strings.Join(r.items, ",")), nil }

// UnmarshalText parses comma-separated items; empty means none.
func (r *Recipients) UnmarshalText(b []byte) error {
	var items []string
	for item := range strings.SplitSeq(string(b), ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	parsed, err := ParseRecipients(items)
	if err != nil {
		return err
	}
	*r = parsed
	return nil
}

// UnmarshalYAML takes a YAML list of items as well as a string of
// comma-separated ones.
func (r *Recipients) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return fmt.Errorf("encryption.recipients: %w", err)
		}
		return r.UnmarshalText([]byte(s))
	}
	var items []string
	if err := n.Decode(&items); err != nil {
		return fmt.Errorf("encryption.recipients: %w", err)
	}
	parsed, err := ParseRecipients(items)
	if err != nil {
		return err
	}
	*r = parsed
	return nil
}
