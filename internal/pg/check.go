package pg

import (
	"context"
	"fmt"
	"strings"
)

// ArchivingError lists why a cluster cannot be backed up with walsnap. Each
// problem names the setting, its value and the fix.
type ArchivingError struct {
	Problems []string
}

func (e *ArchivingError) Error() string {
	return "PostgreSQL is not set up to archive WAL with walsnap: " + strings.Join(e.Problems, "; ")
}

// ExampleArchiveCommand is the archive_command the fixes suggest.
const ExampleArchiveCommand = "/usr/local/bin/walsnap-pg wal-push %p"

// confValue renders a value as a postgresql.conf string literal.
func confValue(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// CheckArchiving refuses (with an *ArchivingError) a cluster whose WAL is
// not archived by walsnap, which a walsnap backup could not be restored
// from:
//
//   - wal_level must be replica or logical;
//   - archive_mode must be on or always;
//   - archive_command must run walsnap wal-push with %p;
//   - on PostgreSQL 15+, archive_library must be empty (a library replaces
//     archive_command).
//
// A standby archives only with archive_mode = always. With archive_mode = on
// it archives nothing itself, which is fine when its primary archives into
// the same repository: CheckArchiving then returns warnings saying so (and
// about an archive_command that would not use walsnap after a promotion)
// instead of an error.
func (s *Session) CheckArchiving(ctx context.Context) (warnings []string, err error) {
	var walLevel, mode, command, library string
	var standby bool
	q := `SELECT current_setting('wal_level'), current_setting('archive_mode'),
		current_setting('archive_command'), pg_is_in_recovery()`
	if s.Major() >= 15 {
		q += ", current_setting('archive_library')"
		err = s.conn.QueryRow(ctx, q).Scan(&walLevel, &mode, &command, &standby, &library)
	} else {
		err = s.conn.QueryRow(ctx, q).Scan(&walLevel, &mode, &command, &standby)
	}
	if err != nil {
		return nil, fmt.Errorf("read archiving settings: %w", err)
	}
	var problems []string
	if walLevel != "replica" && walLevel != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %s: set wal_level = replica (or logical) in postgresql.conf and restart PostgreSQL", confValue(walLevel)))
	}
	switch mode {
	case "on", "always":
	default:
		problems = append(problems, fmt.Sprintf("archive_mode is %s: set archive_mode = on in postgresql.conf and restart PostgreSQL", confValue(mode)))
	}
	if len(problems) > 0 {
		// archive_command shows as "(disabled)" until archiving is active.
		return nil, &ArchivingError{Problems: problems}
	}
	if library != "" {
		problems = append(problems, fmt.Sprintf("archive_library is %s, which replaces archive_command: set archive_library = '' and archive_command = %s, then reload PostgreSQL",
			confValue(library), confValue(ExampleArchiveCommand)))
	}
	if !isWalsnapPush(command) {
		problems = append(problems, fmt.Sprintf("archive_command is %s: it must run walsnap wal-push with %%p, e.g. archive_command = %s, then reload PostgreSQL",
			confValue(command), confValue(ExampleArchiveCommand)))
	}
	if standby && mode == "on" {
		warnings = append(warnings, "this standby has archive_mode = on, so it archives no WAL itself: its primary must archive WAL with walsnap wal-push into the same repository (or set archive_mode = always here)")
		for _, p := range problems {
			warnings = append(warnings, "after a promotion this server would not archive with walsnap: "+p)
		}
		return warnings, nil
	}
	if len(problems) > 0 {
		return nil, &ArchivingError{Problems: problems}
	}
	return nil, nil
}

// isWalsnapPush reports whether an archive_command runs walsnap wal-push
// and passes it the file's path: it names "walsnap" and "wal-push" and has
// a %p placeholder (not the escaped "%%p").
func isWalsnapPush(command string) bool {
	if !strings.Contains(command, "walsnap") || !strings.Contains(command, "wal-push") {
		return false
	}
	for i := 0; i+1 < len(command); i++ {
		if command[i] == '%' {
			if command[i+1] == 'p' {
				return true
			}
			i++ // skip the escaped character ("%%", "%f", ...)
		}
	}
	return false
}
