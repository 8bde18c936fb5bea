package config

import (
	"fmt"
	"log/slog"
	"strings"
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
