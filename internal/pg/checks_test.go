package pg

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/walsnap/walsnap/internal/testrig"
)

// TestCheck: a check passes when every statement that returns rows
// returns some, true in a boolean first column; false, NULL and no rows
// fail it, naming the statement; a statement's error is the server's.
// Databases lists those that take connections; LastReplayLSN is absent on
// a server that never recovered.
func TestCheck(t *testing.T) {
	p := testrig.StartPG(t, testrig.PGOptions{Major: 15})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE t AS SELECT generate_series(1, 10) AS id")
	s := connect(t, p, false, nil)
	ctx := ctxFor(t)
	for _, sql := range []string{
		"SELECT count(*) = 10 FROM t",
		"SET work_mem = '8MB'; SELECT count(*) AS n FROM t; SELECT id > 0 FROM t",
		"CREATE TEMP TABLE x (i int); SELECT true",
		"-- a comment only\nSELECT 'text first column'",
	} {
		if err := s.Check(ctx, sql); err != nil {
			t.Errorf("Check(%q) = %v", sql, err)
		}
	}
	for _, tc := range []struct {
		sql, want string
		failed    bool // ErrCheckFailed, not the server's error
	}{
		{"SELECT count(*) = 9 AS ten FROM t", "statement 1: ten is false in row 1", true},
		{"SELECT true; SELECT id < 10 FROM t", "statement 2: ?column? is false in row 10", true},
		{"SELECT NULL::boolean AS unknown", "unknown is NULL in row 1", true},
		{"SELECT 1; SELECT id FROM t WHERE id > 10", "statement 2 returned no rows", true},
		{"SELECT * FROM no_such_table", `relation "no_such_table" does not exist`, false},
		{"SELECT true; SELECT 1/0; SELECT false", "statement 2: ERROR: division by zero", false},
	} {
		err := s.Check(ctx, tc.sql)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrCheckFailed) != tc.failed {
			t.Errorf("Check(%q) = %v, want it to say %q (a failed check: %v)", tc.sql, err, tc.want, tc.failed)
		}
	}
	// The session survives a failed check.
	if err := s.Check(ctx, "SELECT true"); err != nil {
		t.Fatalf("after failed checks: %v", err)
	}
	dbs, err := s.Databases(ctx)
	if err != nil || !slices.Equal(dbs, []string{"app", "postgres", "template1"}) {
		t.Errorf("Databases = %v, %v", dbs, err)
	}
	if _, ok, err := s.LastReplayLSN(ctx); ok || err != nil {
		t.Errorf("LastReplayLSN of a primary: ok %v, %v", ok, err)
	}
}
