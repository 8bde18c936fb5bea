// Package buildinfo says which walsnap this is: its version and commit, set
// at link time (the Makefile passes -ldflags "-X ...=..."), else taken from
// the Go build information, and the Go release that built it. Manifests and
// the repository identity record the version, so a repository tells which
// walsnap wrote it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/walsnap/walsnap/internal/buildinfo.version=1.2.3
// -X github.com/walsnap/walsnap/internal/buildinfo.commit=abc1234".
var (
	version string
	commit  string
)

// Version is walsnap's version: the one set at link time, else the main
// module's version from the build information (go install ...@v1.2.3),
// else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Commit is the source commit: the one set at link time, else the VCS
// revision the go command recorded (with "-dirty" for local changes), else
// "unknown".
func Commit() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// GoVersion is the Go release that built walsnap.
func GoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.GoVersion != "" {
		return bi.GoVersion
	}
	return runtime.Version()
}
