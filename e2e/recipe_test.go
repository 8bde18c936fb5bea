package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/testrig"
	"github.com/walsnap/walsnap/internal/wal"
)

// readmeRecipe returns the first sh block after the README heading.
func readmeRecipe(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("README.md: no sh block after %q", heading)
	}
	block, _, _ = strings.Cut(block, "```\n")
	return block
}

// fillIn replaces the value of each variable assignment at the start of
// a line ("copy=/var/lib/...   # comment") with the test's own; every
// other line stays as written. Each variable must be there.
func fillIn(t *testing.T, script string, values map[string]string) string {
	t.Helper()
	for name, v := range values {
		re := regexp.MustCompile(`(?m)^` + name + `=.*$`)
		if len(re.FindAllString(script, -1)) != 1 {
			t.Fatalf("the recipe does not set %s once", name)
		}
		script = re.ReplaceAllLiteralString(script, name+"="+strconv.Quote(v))
	}
	return script
}

// TestRestoreCopyRecipe runs the README's "Restore a copy to inspect" as
// written, as root, on the host of the running primary: only the values
// the reader chooses at its top (the moment, the copy's directory, port
// and socket directory, PostgreSQL's programs) are the test's. The primary
// is found as every PostgreSQL tool finds it (PGHOST, PGPORT), and walsnap
// its config file through WALSNAP_CONFIG, as /etc/walsnap/walsnap.yaml
// would be.
func TestRestoreCopyRecipe(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{localRepo: true})
	c.walsnap(t, "backup", "--fast")
	p := c.pg
	p.Exec(t, "CREATE TABLE customers (id int PRIMARY KEY, name text)")
	p.Exec(t, "INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g")
	time.Sleep(1100 * time.Millisecond) // the moment is a clear second after the commit
	when := p.QueryString(t, "SELECT now()::text")
	time.Sleep(1100 * time.Millisecond) // and the mistake a clear second after it
	p.Exec(t, "DROP TABLE customers")

	work := testrig.WorkDir(t)
	copyDir, port := filepath.Join(work, "inspect"), freePort(t)
	t.Cleanup(func() {
		p.Command(context.Background(), "pg_ctl", "-D", copyDir, "-m", "immediate", "-w", "stop").Run()
	})
	script := fillIn(t, readmeRecipe(t, "### Restore a copy to inspect"), map[string]string{
		"when": when, "copy": copyDir, "port": strconv.Itoa(port), "sockets": work, "pgbin": p.BinDir,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin)+":"+os.Getenv("PATH"), "WALSNAP_CONFIG="+c.cfg,
		"PGHOST="+p.SockDir, "PGPORT="+strconv.Itoa(p.Port), "PGDATABASE=postgres")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README recipe failed: %v\n%s\nscript:\n%s", err, out.String(), script)
	}
	t.Logf("recipe output:\n%s", out.String())
	if !regexp.MustCompile(`(?m)^\s+1000$`).MatchString(out.String()) {
		t.Fatalf("the copy does not show the 1000 customers of %s:\n%s", when, out.String())
	}
	for _, want := range []string{"promoted", "does not archive into the repository"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the restore does not say %q", want)
		}
	}
	if _, err := os.Stat(copyDir); !os.IsNotExist(err) {
		t.Errorf("the recipe left %s behind", copyDir)
	}
	// The primary runs on, and its repository got nothing from the copy.
	if got := p.QueryString(t, "SELECT count(*) FROM pg_class WHERE relname = 'customers'"); got != "0" {
		t.Fatal("the primary is not the one that dropped the table")
	}
	files, err := c.repo(t).ListWAL(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Kind == wal.KindHistory || f.TLI != 1 {
			t.Errorf("the copy archived %s into the primary's repository", f.Name)
		}
	}
}
