package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/pg"
)

// checkTimeout bounds each check but pg_amcheck, whose time grows with
// what it reads.
const checkTimeout = 10 * time.Minute

// checks runs the checks of the promoted copy, all of them even when one
// fails: every database accepts connections; pg_amcheck (when the
// binary of the backup's major is there) on the catalogs or on
// everything; each --check-sql file. It fails when any check fails.
func (r *run) checks(ctx context.Context) error {
	r.check("promoted", func() (string, error) {
		return fmt.Sprintf("consistent, recovered to %s and promoted at %s", r.o.Target, r.res.Reached.LSN), nil
	})
	r.check("connections", func() (string, error) { return r.connections(ctx) })
	r.check("pg_amcheck", func() (string, error) { return r.amcheck(ctx) })
	for _, c := range r.o.CheckSQL {
		r.check("check-sql "+c.Name, func() (string, error) { return r.checkSQL(ctx, c) })
	}
	var failed []string
	for _, c := range r.res.Checks {
		if c.Status == drillresult.Fail {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// errSkip is a check that did not run; its text says why.
type errSkip string

func (e errSkip) Error() string { return string(e) }

// check runs one check, times it, records and prints its verdict.
func (r *run) check(name string, f func() (string, error)) {
	start := time.Now()
	detail, err := f()
	c := drillresult.Check{Name: name, Status: drillresult.Pass, Detail: detail}
	var skip errSkip
	switch {
	case errors.As(err, &skip):
		c.Status, c.Detail = drillresult.Skip, skip.Error()
	case err != nil:
		c.Status, c.Detail = drillresult.Fail, err.Error()
	}
	c.Seconds = time.Since(start).Seconds()
	r.res.Checks = append(r.res.Checks, c)
	r.printf("check %s: %s (%s) %s\n", name, c.Status, seconds(c.Seconds), c.Detail)
}

// connections connects to every database that allows connections.
func (r *run) connections(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	s, err := pg.Connect(ctx, r.conn(pg.DefaultDatabase))
	if err != nil {
		return "", err
	}
	dbs, err := s.Databases(ctx)
	s.Close(context.WithoutCancel(ctx))
	if err != nil {
		return "", err
	}
	var refused []string
	for _, db := range dbs {
		s, err := pg.Connect(ctx, r.conn(db))
		if err == nil {
			_, err = s.InRecovery(ctx)
			s.Close(context.WithoutCancel(ctx))
		}
		if err != nil {
			refused = append(refused, fmt.Sprintf("%s: %v", db, err))
		}
	}
	if len(refused) > 0 {
		return "", fmt.Errorf("%d of %d databases refuse: %s", len(refused), len(dbs), strings.Join(refused, "; "))
	}
	return fmt.Sprintf("%d databases accept connections (%s)", len(dbs), strings.Join(dbs, ", ")), nil
}

// amcheck runs pg_amcheck of the backup's major (next to its pg_ctl)
// on every database: the system catalogs (pg_catalog, with their TOAST
// tables and indexes), or everything with AmcheckAll. It installs the
// amcheck extension where it is missing: the copy is thrown away.
func (r *run) amcheck(ctx context.Context) (string, error) {
	if r.o.Amcheck == AmcheckNone {
		return "", errSkip("--amcheck none")
	}
	bin := filepath.Join(filepath.Dir(r.pgctl), "pg_amcheck")
	if _, err := os.Stat(bin); err != nil {
		return "", errSkip(fmt.Sprintf("no pg_amcheck next to %s (PostgreSQL 14 and later ship it, in the client package)", r.pgctl))
	}
	args := []string{"--host", r.server.sockDir, "--port", strconv.Itoa(r.server.port), "--username", r.o.User,
		"--all", "--install-missing", "--no-password"}
	what := "every relation of every database"
	if r.o.Amcheck == AmcheckCatalogs {
		args = append(args, "--schema", "pg_catalog")
		what = "the catalogs of every database"
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pg_amcheck on %s: %v: %s", what, err, lastLines(string(out), 10))
	}
	return "no corruption found in " + what, nil
}

// checkSQL runs a --check-sql file in the check database.
func (r *run) checkSQL(ctx context.Context, c SQLCheck) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	s, err := pg.Connect(ctx, r.conn(r.o.CheckDatabase))
	if err != nil {
		return "", err
	}
	defer s.Close(context.WithoutCancel(ctx))
	if err := s.Check(ctx, c.SQL); err != nil {
		return "", fmt.Errorf("in database %s: %w", r.o.CheckDatabase, err)
	}
	return "every statement passed in database " + r.o.CheckDatabase, nil
}

// lastLines is the last n lines of s, on one line.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
