// Package layering holds the test that enforces walsnap's package layering
// (DESIGN.md "Layout"; issue 8). It reads the import graph with go list and
// fails on any arrow that breaks a rule:
//
//  1. archive, basebackup, restore, inspect (verify, check, status),
//     retention (delete) and drill never import each other (what two of
//     them share lives in internal/), with one exception: drill imports
//     restore. A drill is a restore followed by checks; it uses restore's
//     backup choice, providers, recovery configuration and server start
//     as they are, so that what it proves is what a restore does.
//  2. internal/* never imports cmd/... or archive, basebackup, restore.
//  3. Only internal/repo and the storage packages import internal/storage
//     and its backends (test code may, to build a repository over a store
//     or tamper with stored objects): the repository layout has one owner.
//  4. Nothing below internal/repo imports it: of internal/*, only
//     internal/filebackup (a payload engine built on the repository),
//     internal/catalog (the model of a repository's contents),
//     internal/backuplock (the lock of backup and delete, a repository
//     lease) and the test kit internal/testrig use internal/repo.
//  5. Format and leaf packages stay leaves: internal/manifest imports only
//     internal/wal; internal/config only internal/compress and
//     internal/manifest (for the provider names); the storage
//     backends only internal/storage and internal/ctxio; internal/wal,
//     internal/compress, internal/fsutil, internal/ctxio, internal/shellcmd,
//     internal/detach, internal/freeze, internal/spool and
//     internal/drillresult import nothing of walsnap's.
//  6. cmd/walsnap wires flags to the packages above internal/repo; it never
//     touches storage, nor the repository model (internal/catalog), whose
//     questions inspect, retention and drill answer.
//  7. cmd/walsnap-pg, the front end PostgreSQL runs once per WAL file,
//     imports only the small spool packages (internal/callstamp,
//     internal/walrec, internal/spool, internal/fsutil, internal/wal):
//     its start-up is the cost of a served call. internal/walrec imports
//     only internal/wal, internal/fsutil and internal/spool, and
//     internal/callstamp nothing of walsnap's.
package layering

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/walsnap/walsnap/"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// graph lists the module's packages with their walsnap imports, by path
// relative to the module.
func graph(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := func(list []string) []string {
			var out []string
			for _, i := range list {
				if r, ok := strings.CutPrefix(i, module); ok {
					out = append(out, r)
				}
			}
			return out
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		p.Imports, p.TestImports, p.XTestImports = rel(p.Imports), rel(p.TestImports), rel(p.XTestImports)
		pkgs[p.ImportPath] = p
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

var top = []string{"archive", "basebackup", "restore", "inspect", "retention", "drill"}

// topImports are the only arrows between top-level packages (rule 1).
var topImports = map[string][]string{"drill": {"restore"}}

func isTop(p string) bool {
	return slices.ContainsFunc(top, func(t string) bool { return under(p, t) })
}

// below returns the module packages p depends on, transitively (non-test).
func below(pkgs map[string]pkg, p string) map[string]bool {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(q string) {
		for _, i := range pkgs[q].Imports {
			if !seen[i] {
				seen[i] = true
				walk(i)
			}
		}
	}
	walk(p)
	return seen
}

func TestLayering(t *testing.T) {
	pkgs := graph(t)
	for _, p := range violations(pkgs) {
		t.Error(p)
	}
	// The rules run on the real graph.
	if !below(pkgs, "internal/repo")["internal/storage"] || !slices.Contains(pkgs["cmd/walsnap"].Imports, "archive") {
		t.Fatalf("unexpected import graph")
	}
}

// TestRulesFire: each rule catches the arrow it forbids.
func TestRulesFire(t *testing.T) {
	base := func() map[string]pkg {
		return map[string]pkg{
			"cmd/walsnap":         {Imports: []string{"archive", "basebackup", "restore", "internal/config"}},
			"archive":             {Imports: []string{"internal/repo"}},
			"basebackup":          {Imports: []string{"internal/repo", "internal/filebackup"}},
			"restore":             {Imports: []string{"internal/repo"}},
			"inspect":             {Imports: []string{"internal/repo"}},
			"retention":           {Imports: []string{"internal/repo"}},
			"drill":               {Imports: []string{"restore", "internal/repo"}},
			"internal/filebackup": {Imports: []string{"internal/repo"}},
			"internal/repo":       {Imports: []string{"internal/storage", "internal/storage/fs", "internal/manifest", "internal/config"}},
			"internal/storage":    {},
			"internal/storage/fs": {Imports: []string{"internal/storage"}},
			"internal/manifest":   {Imports: []string{"internal/wal"}},
			"internal/wal":        {},
			"internal/config":     {Imports: []string{"internal/compress"}},
			"internal/compress":   {},
			"internal/pg":         {Imports: []string{"internal/manifest"}},
			"cmd/walsnap-pg":      {Imports: []string{"internal/walrec", "internal/callstamp"}},
			"internal/walrec":     {Imports: []string{"internal/wal"}},
			"internal/callstamp":  {},
		}
	}
	if v := violations(base()); len(v) != 0 {
		t.Fatalf("clean graph: %v", v)
	}
	for _, tc := range []struct{ rule, from, to string }{
		{"rule 1", "archive", "restore"},
		{"rule 1", "inspect", "basebackup"},
		{"rule 1", "restore", "inspect"},
		{"rule 1", "retention", "basebackup"},
		{"rule 1", "restore", "retention"},
		{"rule 1", "restore", "drill"},
		{"rule 1", "drill", "inspect"},
		{"rule 1", "inspect", "drill"},
		{"rule 2", "internal/pg", "basebackup"},
		{"rule 2", "internal/catalog", "inspect"},
		{"rule 3", "restore", "internal/storage/fs"},
		{"rule 4", "internal/pg", "internal/repo"},
		{"rule 5", "internal/manifest", "internal/pg"},
		{"rule 6", "cmd/walsnap", "internal/storage"},
		{"rule 6", "cmd/walsnap", "internal/catalog"},
		{"rule 7", "cmd/walsnap-pg", "internal/config"},
		{"rule 7", "cmd/walsnap-pg", "archive"},
		{"rule 5", "internal/walrec", "internal/config"},
		{"rule 5", "internal/callstamp", "internal/wal"},
	} {
		g := base()
		p := g[tc.from]
		p.Imports = append(p.Imports, tc.to)
		g[tc.from] = p
		v := violations(g)
		if !slices.ContainsFunc(v, func(s string) bool { return strings.HasPrefix(s, tc.rule+":") }) {
			t.Errorf("%s did not fire on %s → %s: %v", tc.rule, tc.from, tc.to, v)
		}
	}
}

// violations checks the rules (see the package comment) on pkgs.
func violations(pkgs map[string]pkg) []string {
	leaves := []string{"internal/wal", "internal/compress", "internal/fsutil", "internal/ctxio", "internal/shellcmd",
		"internal/detach", "internal/freeze", "internal/spool", "internal/drillresult", "internal/callstamp"}
	allowedOnly := map[string][]string{
		"internal/manifest":   {"internal/wal"},
		"internal/config":     {"internal/compress", "internal/manifest"},
		"internal/storage":    {},
		"internal/storage/fs": {"internal/storage", "internal/ctxio"},
		"internal/storage/s3": {"internal/storage", "internal/ctxio"},
		"internal/walrec":     {"internal/wal", "internal/fsutil", "internal/spool"},
	}
	frontEnd := []string{"internal/callstamp", "internal/walrec", "internal/spool", "internal/fsutil", "internal/wal"}
	for _, l := range leaves {
		allowedOnly[l] = nil
	}
	repoUsers := []string{"internal/filebackup", "internal/catalog", "internal/backuplock", "internal/testrig"}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for path, p := range pkgs {
		check := func(imports []string, test bool) {
			for _, i := range imports {
				switch {
				case isTop(path) && isTop(i) && !under(i, firstSeg(path)) && !slices.Contains(topImports[firstSeg(path)], firstSeg(i)):
					bad("rule 1: %s imports %s", path, i)
				case under(path, "internal") && (under(i, "cmd") || isTop(i)):
					bad("rule 2: %s imports %s", path, i)
				case under(i, "internal/storage") && !under(path, "internal/storage") && path != "internal/repo" && !test && !under(path, "cmd"):
					bad("rule 3: %s imports %s: only internal/repo talks to the store", path, i)
				case under(path, "internal") && path != "internal/repo" && !slices.Contains(repoUsers, path) && dependsOn(pkgs, i, "internal/repo"):
					bad("rule 4: %s imports %s, which is internal/repo or built on it", path, i)
				case under(path, "cmd") && (under(i, "internal/storage") || i == "internal/catalog") && !test:
					bad("rule 6: %s imports %s", path, i)
				}
				if path == "cmd/walsnap-pg" && !test && !slices.Contains(frontEnd, i) {
					bad("rule 7: %s may import only %v, not %s", path, frontEnd, i)
				}
				if allowed, ok := allowedOnly[path]; ok && !test && !slices.Contains(allowed, i) {
					bad("rule 5: %s may import only %v, not %s", path, allowed, i)
				}
			}
		}
		check(p.Imports, false)
		check(p.TestImports, true)
		check(p.XTestImports, true)
	}
	slices.Sort(problems)
	return problems
}

// dependsOn reports whether p is target or depends on it (non-test).
func dependsOn(pkgs map[string]pkg, p, target string) bool {
	return p == target || below(pkgs, p)[target]
}

func firstSeg(p string) string { s, _, _ := strings.Cut(p, "/"); return s }
