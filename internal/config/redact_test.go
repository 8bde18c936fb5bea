package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"s3://bucket/prefix":                          "s3://bucket/prefix",
		"file:///var/lib/walsnap":                     "file:///var/lib/walsnap",
		"file:///srv/pg@15/repo":                      "file://REDACTED@15/repo",
		"https://minio.internal:9000":                 "https://minio.internal:9000",
		"s3://KEY:SECRET@bucket/x":                    "s3://REDACTED@bucket/x",
		"s3://KEY@bucket/x":                           "s3://REDACTED@bucket/x",
		"s3://bucket/x?secret=abc":                    "s3://bucket/x?REDACTED",
		"s3://bucket/x#abc":                           "s3://bucket/x#REDACTED",
		"s3://KEY:SECRET@bucket/x?token=t#f":          "s3://REDACTED@bucket/x?REDACTED",
		"s3://AKIA:wJalr/K7MD+ENG/bPx@bucket/x":       "s3://REDACTED@bucket/x",
		"s3://AKIA:a@b@bucket/x":                      "s3://REDACTED@bucket/x",
		"s3://KEY:se?cret@bucket/x":                   "s3://REDACTED",
		"s3://bucket/x?mail=a@b&secret=zzz":           "s3://REDACTED",
		"http://user:pass@127.0.0.1:9000/":            "http://REDACTED@127.0.0.1:9000/",
		"KEY:SECRET@bucket/x":                         "REDACTED@bucket/x",
		"s3:KEY:SECRET@bucket":                        "REDACTED@bucket",
		"/KEY:SECRET@bucket":                          "REDACTED@bucket",
		"file://KEY:SECRET@host/x":                    "file://REDACTED@host/x",
		"s3://bucket/x?":                              "s3://bucket/x?REDACTED",
		"":                                            "",
		"s3://KEY:SECRET@bucket:9000/p?X-Amz-Cred=c2": "s3://REDACTED@bucket:9000/p?REDACTED",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// secretParts are the strings no message may contain: every piece of the
// credentials and query values used below.
var secretParts = []string{"KEY", "SECRET", "CRET", "wJalr", "K7MD", "bPx", "sE9", "cR3t", "abc", "token", "zzz", "hunter2", "AKIA"}

func assertNoSecret(t *testing.T, what string, msg string) {
	t.Helper()
	for _, s := range secretParts {
		if strings.Contains(msg, s) {
			t.Errorf("%s: message %q contains %q", what, msg, s)
		}
	}
}

// TestRepoErrorsHideSecrets: under archive_command the message lands in
// PostgreSQL's log, so no refusal may echo credentials or query values.
func TestRepoErrorsHideSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"s3://KEY:SECRET@bucket/x": `bad repository URL "s3://REDACTED@bucket/x": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"s3://bucket/x?secret=abc": `bad repository URL "s3://bucket/x?REDACTED": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"s3://bucket/x#abc": `bad repository URL "s3://bucket/x#REDACTED": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		// An AWS secret key has "/" in it: the parser then sees a port.
		"s3://AKIA:wJalr/K7MD/bPx@bucket/x": `bad repository URL "s3://REDACTED@bucket/x": not a valid URL; ` +
			`credentials, query parameters and fragments do not belong in it`,
		"s3://AKIA:12/K7MD/bPx@bucket/x": `bad repository URL "s3://REDACTED@bucket/x": a bucket has no port; set s3.endpoint for the server`,
		"s3://KEY:sE9?cR3t@bucket/x": `bad repository URL "s3://REDACTED": not a valid URL; ` +
			`credentials, query parameters and fragments do not belong in it`,
		"s3:KEY:SECRET@bucket": `bad repository URL "REDACTED@bucket": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"ftp://KEY:SECRET@host/x": `bad repository URL "ftp://REDACTED@host/x": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"file:///var/lib/walsnap?token=hunter2": `bad repository URL "file:///var/lib/walsnap?REDACTED": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"file://KEY:SECRET@/var/lib/walsnap": `bad repository URL "file://REDACTED@/var/lib/walsnap": credentials, query parameters and fragments ` +
			`do not belong in the URL (credentials come from the AWS SDK's default chain)`,
		"s3://KEY:SE CRET@bucket/x": `bad repository URL "s3://REDACTED@bucket/x": not a valid URL; ` +
			`credentials, query parameters and fragments do not belong in it`,
	} {
		_, _, err := ParseRepo(in)
		if !errors.Is(err, ErrBadRepo) {
			t.Errorf("ParseRepo(%q) = %v, want ErrBadRepo", in, err)
			continue
		}
		if err.Error() != want {
			t.Errorf("ParseRepo(%q):\n got %s\nwant %s", in, err, want)
		}
		assertNoSecret(t, in, err.Error())
		// Validate reports the same.
		c := Default()
		if err := c.Set("repo", in); err == nil {
			t.Errorf("Validate accepted repo %q", in)
		} else {
			assertNoSecret(t, in, err.Error())
		}
	}
	// A URL with nothing to hide is shown whole, parser detail included.
	_, _, err := ParseRepo("s3://bucket:port/x")
	if want := `bad repository URL "s3://bucket:port/x": invalid port ":port" after host`; err == nil || err.Error() != want {
		t.Errorf("ParseRepo = %v, want %s", err, want)
	}
}

func TestEndpointErrorsHideSecrets(t *testing.T) {
	creds := "credentials, query parameters and fragments do not belong in the URL (credentials come from the AWS SDK's default chain)"
	for in, want := range map[string]string{
		"http://KEY:SECRET@127.0.0.1:9000": `s3.endpoint "http://REDACTED@127.0.0.1:9000": ` + creds,
		"https://minio:9000/?token=abc":    `s3.endpoint "https://minio:9000/?REDACTED": ` + creds,
		"https://minio:9000/#abc":          `s3.endpoint "https://minio:9000/#REDACTED": ` + creds,
		"http://AKIA:wJalr/K7MD@minio":     `s3.endpoint "http://REDACTED@minio": not a valid URL; credentials, query parameters and fragments do not belong in it`,
		"KEY:SECRET@minio:9000":            `s3.endpoint "REDACTED@minio:9000": ` + creds,
		"minio:9000":                       `s3.endpoint "minio:9000": want http://host[:port] or https://host[:port]`,
		"http:///path":                     `s3.endpoint "http:///path": want http://host[:port] or https://host[:port]`,
	} {
		for _, key := range []string{"s3.endpoint", "ebs.endpoint"} {
			c := Default()
			c.Set("repo", "s3://bucket/x")
			if key == "s3.endpoint" {
				c.S3.Endpoint = in
			} else {
				c.EBS.Endpoint = in
			}
			err := c.Validate()
			want := strings.Replace(want, "s3.endpoint", key, 1)
			if err == nil || err.Error() != want {
				t.Errorf("%s %q: Validate:\n got %v\nwant %s", key, in, err, want)
				continue
			}
			assertNoSecret(t, in, err.Error())
		}
	}
	for _, ok := range []string{"", "http://127.0.0.1:9000", "https://s3.eu-west-1.amazonaws.com", "https://minio.internal:9000/"} {
		if err := CheckEndpoint("s3.endpoint", ok); err != nil {
			t.Errorf("CheckEndpoint(%q) = %v", ok, err)
		}
	}
}

// FuzzRedact: whatever the input, a credential between "://" and "@" and
// anything after "?" or "#" never shows.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"s3://k:s@b/x", "s3://b/x?q=1", "s3://b/x#f", "file:///a@b", "k:s@b", "s3://k:s/x@b?y@z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		const secret = "\x00SECRET\x00"
		if strings.Contains(s, "SECRET") {
			t.Skip()
		}
		for _, in := range []string{
			"s3://" + s + ":" + secret + "@bucket/x",
			"s3://bucket/" + s + "?" + secret,
			"s3://bucket/" + s + "#" + secret,
			s + "://k:" + secret + "@" + s,
		} {
			if got := Redact(in); strings.Contains(got, secret) {
				t.Fatalf("Redact(%q) = %q", in, got)
			}
			if _, _, err := ParseRepo(in); err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("ParseRepo(%q) = %v", in, err)
			}
		}
	})
}

// FuzzParseLocation: a repository URL is outside input (flags, the
// environment, the config file). Parsing never panics; an accepted URL
// keeps its text and names a bucket or an absolute directory; a refused
// one never echoes what looks like credentials.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"s3://bucket/prod/db1", "file:///var/lib/walsnap", "s3://k:s@b/x", "s3://b/x?secret=1", "file://rel", "s3://b:9000/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocation(s)
		if err != nil {
			// A secret (userinfo of some length) is never in the message.
			if u := strings.Index(s, "://"); u >= 0 {
				if at := strings.LastIndex(s, "@"); at > u+3 {
					// (Unless the rest of the URL holds the same text: the
					// message may name the host.)
					secret := s[u+3 : at]
					if len(secret) >= 8 && !strings.ContainsAny(secret, "/?#") && !strings.Contains(s[at+1:], secret) && strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q echoes the userinfo of %q", err, s)
					}
				}
			}
			return
		}
		if l.String() != s {
			t.Fatalf("String() = %q, want %q", l.String(), s)
		}
		switch l.Scheme {
		case "s3":
			if l.Bucket == "" {
				t.Fatalf("s3 location without a bucket: %+v", l)
			}
		case "file":
			if !filepath.IsAbs(l.Dir) {
				t.Fatalf("file location not absolute: %+v", l)
			}
		default:
			t.Fatalf("scheme %q", l.Scheme)
		}
	})
}
