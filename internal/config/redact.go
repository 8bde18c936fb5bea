package config

import "strings"

// redacted replaces hidden parts of a URL in messages.
const redacted = "REDACTED"

// Redact returns a repository URL or endpoint in a form fit for messages,
// which under archive_command end up in PostgreSQL's server log: any
// userinfo ("KEY:SECRET@"), query ("?secret=...") and fragment are replaced
// by REDACTED, and everything else is kept so the message still says which
// setting is wrong.
//
// It works on the raw text and never needs the URL to parse: a refused URL
// is often one that does not, and a secret may well contain the characters
// that end a URL part (an AWS secret key contains "/" and "+"). So it errs
// on the side of hiding:
//   - everything after the first "?" or "#" is hidden;
//   - if an "@" comes before that, everything between "scheme://" and the
//     last such "@" is hidden, even when it may be a path ("file:///a@b"
//     shows as "file://REDACTED@b": a valid URL of that kind is never
//     refused, and a mistyped one may hide a credential);
//   - if an "@" comes after the first "?" or "#", the text cannot be split
//     safely and everything after "scheme://" is hidden.
func Redact(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 && isScheme(raw[:i]) {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	q := strings.IndexAny(rest, "?#")
	at := strings.LastIndexByte(rest, '@')
	if q >= 0 && at > q {
		return prefix + redacted
	}
	if at >= 0 {
		rest = redacted + rest[at:]
		q = strings.IndexAny(rest, "?#")
	}
	if q >= 0 {
		rest = rest[:q+1] + redacted
	}
	return prefix + rest
}

// isScheme reports whether s is a URL scheme (RFC 3986: a letter, then
// letters, digits, "+", "-" or ".").
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}
