package restore

import "strings"

// CommandLine builds a restore_command that runs the walsnap executable
// exe with configFile (if any) and flags, then "wal-fetch %f %p", each word
// quoted for /bin/sh (PostgreSQL runs it with the shell).
func CommandLine(exe, configFile string, flags []string) string {
	parts := []string{exe}
	if configFile != "" {
		parts = append(parts, "--config", configFile)
	}
	parts = append(parts, flags...)
	parts = append(parts, "wal-fetch", "%f", "%p")
	for i, p := range parts {
		parts[i] = shellQuote(p)
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for /bin/sh unless it is plainly safe.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("%/-_.=:,+@", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
