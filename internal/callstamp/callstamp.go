// Package callstamp fingerprints what walsnap's settings for a wal-push or
// wal-fetch call are resolved from: the command line (all but the file
// arguments), the environment that settings are read from, the working
// directory, and the content of every file the command line or the
// environment may name as the config file. Two calls with the same stamp
// resolve the same settings, so a record written by a helper that runs
// with one call's settings (the background archiver, the prefetcher) may
// answer another call with that stamp without resolving anything: that is
// how walsnap-pg serves a call without loading walsnap's configuration.
// A stamp that cannot be taken is "", which matches nothing.
//
// This package is linked into walsnap-pg; it imports nothing of walsnap's.
package callstamp

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DefaultConfigPath is the config file walsnap reads when none is named.
const DefaultConfigPath = "/etc/walsnap/walsnap.yaml"

// FrontEnd is the name of walsnap-pg, the front end for the commands
// PostgreSQL runs, which is installed in the same directory as walsnap
// and hands the calls it does not answer to the walsnap beside it.
const FrontEnd = "walsnap-pg"

// FrontEndBeside returns the front end installed beside the walsnap
// executable exe, or exe itself when there is none (an executable regular
// file named FrontEnd in exe's directory).
func FrontEndBeside(exe string) string {
	fe := filepath.Join(filepath.Dir(exe), FrontEnd)
	if fi, err := os.Stat(fe); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return fe
	}
	return exe
}

// Commands PostgreSQL runs, and how many file arguments each takes.
var fileArgs = map[string]int{"wal-push": 1, "wal-fetch": 2}

// Call is a wal-push or wal-fetch command line taken apart.
type Call struct {
	Command string   // "wal-push" or "wal-fetch"
	Files   []string // its file arguments (%p; %f %p)
	Stamp   string   // the settings' stamp, "" when it could not be taken
}

// Internal variables that walsnap passes to its own helpers: they are not
// settings of the call.
var internalEnv = []string{"WALSNAP_RESOLVED_CONFIG=", "WALSNAP_SETTINGS_CALL="}

// Parse takes apart argv (the whole command line, program name first) of
// a wal-push or wal-fetch call and stamps its settings. ok is false when
// argv is no such call: no command word, or too few arguments after it.
// The command is the first argument that is a command word; its file
// arguments are the last ones (flags cannot follow them).
func Parse(argv, environ []string, cwd string) (Call, bool) {
	if len(argv) < 2 {
		return Call{}, false
	}
	args := argv[1:]
	i := slices.IndexFunc(args, func(a string) bool { return fileArgs[a] > 0 })
	if i < 0 {
		return Call{}, false
	}
	c := Call{Command: args[i]}
	n := fileArgs[c.Command]
	if len(args)-1-i < n {
		return Call{}, false
	}
	prefix := args[:len(args)-n]
	c.Files = args[len(args)-n:]
	c.Stamp = stamp(prefix, environ, cwd)
	return c, true
}

// Inputs are what a call's settings are resolved from besides the
// environment (which a helper the call starts inherits): its command line
// and working directory. A helper keeps them to stamp the settings again
// later, and leaves when the stamp has changed.
type Inputs struct {
	Argv []string `json:"argv"`
	Cwd  string   `json:"cwd"`
}

// Stamp is the stamp of a call with these inputs in environ, taken now
// ("" when they are no wal-push or wal-fetch call).
func (in Inputs) Stamp(environ []string) string {
	c, ok := Parse(in.Argv, environ, in.Cwd)
	if !ok {
		return ""
	}
	return c.Stamp
}

// stamp hashes the inputs of the settings. Any difference makes another
// stamp: a false difference only costs a served call.
func stamp(prefix, environ []string, cwd string) string {
	h := sha256.New()
	field := func(kind, v string) {
		io.WriteString(h, kind)
		io.WriteString(h, strconv.Itoa(len(v)))
		io.WriteString(h, ":")
		io.WriteString(h, v)
	}
	field("cwd", cwd)
	for _, a := range prefix {
		field("arg", a)
	}
	var env []string
	for _, kv := range environ {
		if relevantEnv(kv) {
			env = append(env, kv)
		}
	}
	slices.Sort(env)
	for _, kv := range env {
		field("env", kv)
	}
	for _, path := range configCandidates(prefix, environ) {
		data, err := readSmall(path)
		switch {
		case err == nil:
			field("file", path)
			field("content", string(data))
		case os.IsNotExist(err):
			field("absent", path)
		default:
			return "" // a file that cannot be read: never served
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// relevantEnv reports whether a NAME=value entry can change settings:
// walsnap's own variables, libpq's and the AWS SDK's.
func relevantEnv(kv string) bool {
	for _, p := range internalEnv {
		if strings.HasPrefix(kv, p) {
			return false
		}
	}
	return strings.HasPrefix(kv, "WALSNAP_") || strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "AWS_")
}

// configCandidates lists every path that may be the config file: the
// default, $WALSNAP_CONFIG, and every argument (or the value after "=" of
// a flag argument), which covers --config FILE and --config=FILE however
// they are spelt. Arguments that are not files show up as absent.
func configCandidates(prefix, environ []string) []string {
	out := []string{DefaultConfigPath}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "WALSNAP_CONFIG="); ok && v != "" {
			out = append(out, v)
		}
	}
	for _, a := range prefix {
		if strings.HasPrefix(a, "-") {
			if _, v, ok := strings.Cut(a, "="); ok && v != "" {
				out = append(out, v)
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// maxConfig bounds what is read of one candidate file.
const maxConfig = 1 << 20

// readSmall reads a regular file of at most maxConfig bytes. Anything
// else that exists reads as a description that changes when it might
// matter: a directory or device as its kind (it is no config file), a
// bigger regular file as its size and modification time.
func readSmall(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return []byte("not a regular file: " + fi.Mode().Type().String()), nil
	case fi.Size() > maxConfig:
		return []byte("large file: " + strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxConfig+1))
}
