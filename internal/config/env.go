package config

import (
	"fmt"
	"sort"
	"strings"
)

// EnvPrefix starts the name of every environment variable walsnap reads.
const EnvPrefix = "WALSNAP_"

// OtherEnv lists the WALSNAP_* environment variables that are not settings
// (those are Key.Env() of each of Keys) but are known to walsnap, its
// scripts or its tests, so their presence is no mistake. A variable with
// EnvPrefix that is in neither list draws a warning (see UnknownEnv).
// Add a name here when you introduce one.
var OtherEnv = []string{
	// walsnap itself
	"WALSNAP_CONFIG",          // --config
	"WALSNAP_RESOLVED_CONFIG", // settings handed to a detached child (prefetcher, backup holder)
	"WALSNAP_SETTINGS_CALL",   // the command line and directory of the call that started a helper (callstamp.Inputs)

	// set by the command provider for its snapshot and restore scripts,
	// which may well run walsnap (WALSNAP_PGDATA is also the pgdata setting)
	"WALSNAP_BACKUP_ID",
	"WALSNAP_BACKUP_LABEL",
	"WALSNAP_START_LSN",
	"WALSNAP_MOUNT_POINTS",
	"WALSNAP_TABLESPACES",
	"WALSNAP_SNAPSHOTS",
	"WALSNAP_SOURCE_PGDATA",

	// read by the shipped hook scripts (scripts/n2w, scripts/dlm)
	"WALSNAP_SSH",
	"WALSNAP_SUDO",
	"WALSNAP_HOLD_TIMEOUT",
	"WALSNAP_SNAPSHOT_IDS",

	// the test rig and the scripts under scripts/ (CI, bench, demo)
	"WALSNAP_RIG",
	"WALSNAP_BIN",
	"WALSNAP_PG_MAJORS",
	"WALSNAP_PG_ROOT",
	"WALSNAP_TESTRIG_HELPER_ADDR",
	"WALSNAP_TEST_WORKDIR",
	"WALSNAP_TEST_S3_ENDPOINT",
	"WALSNAP_TEST_S3_ACCESS_KEY",
	"WALSNAP_TEST_S3_SECRET_KEY",
	"WALSNAP_TEST_S3_REGION",
	"WALSNAP_TEST_S3_KMS_KEY_ID",
	"WALSNAP_TEST_MOTO_ENDPOINT",
	"WALSNAP_TEST_SAVE_LABELS",
	"WALSNAP_FS_KILLED_WRITER_ROOT", // internal/storage/fs tests: a writer process to SIGKILL
	"WALSNAP_SOAK",                  // archive fault tests: run the long soak
	"WALSNAP_SOAK_DURATION",
	"WALSNAP_SOAK_SEGMENTS",
}

// testEnvPrefix is reserved for test knobs: WALSNAP_TEST_* never warns, so
// a new test setting needs no entry in OtherEnv.
const testEnvPrefix = "WALSNAP_TEST_"

// EnvWarning is one unknown WALSNAP_* environment variable.
type EnvWarning struct {
	Name string // the variable, e.g. a misspelt setting
	Near string // the known variable it most likely misspells, or ""
}

func (w EnvWarning) String() string {
	if w.Near != "" {
		return fmt.Sprintf("unknown environment variable %s ignored (did you mean %s?)", w.Name, w.Near)
	}
	return fmt.Sprintf("unknown environment variable %s ignored", w.Name)
}

// knownEnv is every WALSNAP_* variable that is known: the settings' and
// OtherEnv.
func knownEnv() []string {
	known := make([]string, 0, len(Keys)+len(OtherEnv))
	for _, k := range Keys {
		known = append(known, k.Env())
	}
	return append(known, OtherEnv...)
}

// UnknownEnv returns the WALSNAP_* variables in environ (as from
// os.Environ) that walsnap does not know, sorted by name, each with the
// known variable it most likely misspells: a misspelt setting would
// otherwise be ignored without a word.
func UnknownEnv(environ []string) []EnvWarning {
	known := knownEnv()
	isKnown := make(map[string]bool, len(known))
	for _, k := range known {
		isKnown[k] = true
	}
	seen := map[string]bool{}
	var out []EnvWarning
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || isKnown[name] || strings.HasPrefix(name, testEnvPrefix) || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, EnvWarning{Name: name, Near: nearest(name, known)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nearest returns the known variable closest to name, compared without
// EnvPrefix, when the match is obvious (see Nearest).
func nearest(name string, known []string) string {
	short := make([]string, len(known))
	for i, k := range known {
		short[i] = strings.TrimPrefix(k, EnvPrefix)
	}
	if n := Nearest(strings.TrimPrefix(name, EnvPrefix), short); n != "" {
		return EnvPrefix + n
	}
	return ""
}

// Nearest returns the one candidate closest to name when the match is
// obvious: at most two edits (a swap of neighbours counts as one) apart, at
// most one edit for names of four characters or fewer, and no other
// candidate as close; "" otherwise. It names what a mistyped setting,
// variable or command most likely meant.
func Nearest(name string, candidates []string) string {
	best, bestD, tie := "", 1<<30, false
	for _, k := range candidates {
		d := editDistance(name, k)
		switch {
		case d < bestD:
			best, bestD, tie = k, d, false
		case d == bestD && k != best:
			tie = true
		}
	}
	limit := 2
	if len(name) <= 4 {
		limit = 1
	}
	if tie || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of adjacent characters.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
