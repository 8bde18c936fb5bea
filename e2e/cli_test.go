package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/testrig"
)

// The conventions PostgreSQL and AWS users expect of a command-line tool,
// each shown on the binary: flags before or after the command, help that
// shows the real defaults, usage errors in one line with exit status 2,
// --version, completion and a manual page, a static build, the region of
// a bucket found without being told.

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// runWalsnap runs the binary under test with args, in the test's
// environment plus env, and no config file but the ones args name.
func runWalsnap(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(testrig.Walsnap(t), args...)
	cmd.Env = append(os.Environ(), "WALSNAP_CONFIG=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("walsnap %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// usageFailure checks that r is a usage error: exit status code, nothing
// on stdout, and on stderr exactly one line that holds every want.
func usageFailure(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != code || r.stdout != "" || len(lines) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, nothing on stdout, one line on stderr", r.code, r.stdout, r.stderr, code)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Fatalf("stderr %q does not say %q", lines[0], w)
		}
	}
}

// binaryVersion is the version the binary under test reports.
func binaryVersion(t *testing.T) map[string]string {
	t.Helper()
	r := runWalsnap(t, nil, "version", "--json")
	var v map[string]string
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
		t.Fatalf("walsnap version --json: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	return v
}

func TestVersion(t *testing.T) {
	t.Parallel()
	v := binaryVersion(t)
	if v["version"] == "" || v["commit"] == "" || !strings.HasPrefix(v["go"], "go1.") {
		t.Fatalf("version --json: %v", v)
	}
	want := fmt.Sprintf("walsnap %s (commit %s, %s)\n", v["version"], v["commit"], v["go"])
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if r := runWalsnap(t, nil, args...); r.code != 0 || r.stdout != want {
			t.Errorf("walsnap %s: exit %d, %q; want %q", args[0], r.code, r.stdout, want)
		}
	}
}

// TestHelpShowsRealDefaults: every setting's line in the help, global and
// of a command, shows the built-in default of config.Default, once, or,
// for a setting without one, what applies instead; never a zero that is
// not the default.
func TestHelpShowsRealDefaults(t *testing.T) {
	t.Parallel()
	def := config.Default()
	for _, args := range [][]string{{"--help"}, {"restore", "--help"}, {"help", "wal-push"}} {
		r := runWalsnap(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("walsnap %s: exit %d %s", strings.Join(args, " "), r.code, r.stderr)
		}
		lines := map[string]string{}
		for _, l := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "--") {
				lines[f[0]] = l
			}
		}
		for _, k := range config.Keys {
			line, ok := lines["--"+k.Flag()]
			if !ok {
				t.Errorf("walsnap %s: no --%s", strings.Join(args, " "), k.Flag())
				continue
			}
			if n := strings.Count(line, "(default"); n > 1 {
				t.Errorf("%s: %d defaults shown: %s", k.Flag(), n, line)
			}
			v, err := def.Get(k.Name)
			if err != nil {
				t.Fatal(err)
			}
			// What help must show: the built-in default; for a setting
			// without one, what its usage says applies instead; else the
			// zero, which then is the default (a false one is not shown).
			_, instead := config.SplitDefault(k.Usage)
			switch {
			case v != "" && v != "0" && v != "false":
				if !strings.Contains(line, "(default: "+v+")") {
					t.Errorf("--%s: built-in default %s, help says: %s", k.Flag(), v, line)
				}
			case instead != "":
				if !strings.Contains(line, "(default: "+instead+")") {
					t.Errorf("--%s: help does not say what applies by default (%s): %s", k.Flag(), instead, line)
				}
			case k.Kind == config.Int:
				if !strings.Contains(line, "(default: 0)") {
					t.Errorf("--%s: help does not show its default 0: %s", k.Flag(), line)
				}
			case strings.Contains(line, "(default"):
				t.Errorf("--%s shows a default it does not have: %s", k.Flag(), line)
			}
		}
	}
	// The defaults the issue found shown as zeros.
	r := runWalsnap(t, nil, "--help")
	for flag, want := range map[string]string{"--push-ahead": "16", "--push-concurrency": "4", "--fetch-prefetch": "8",
		"--pg-port": "$PGPORT, else 5432", "--s3-max-attempts": "5", "--backup-streams": "2", "--push-timeout": "5m",
		"--backup-lock-ttl": "24h", "--ebs-wait-timeout": "6h"} {
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(flag) + ` .*\(default: ` + regexp.QuoteMeta(want) + `\)`).MatchString(r.stdout) {
			t.Errorf("--help does not show %s with default %s", flag, want)
		}
	}
}

// TestHelpCommand: "walsnap help CMD" is CMD's help; an unknown command
// there is a usage error with a suggestion.
func TestHelpCommand(t *testing.T) {
	t.Parallel()
	viaHelp := runWalsnap(t, nil, "help", "restore")
	viaFlag := runWalsnap(t, nil, "restore", "--help")
	if viaHelp.code != 0 || viaHelp.stdout != viaFlag.stdout || !strings.Contains(viaHelp.stdout, "walsnap restore - ") {
		t.Fatalf("help restore (exit %d) differs from restore --help:\n%s\n---\n%s", viaHelp.code, viaHelp.stdout, viaFlag.stdout)
	}
	for _, flag := range []string{"--pgdata", "--target-time", "--archive-mode", "--repo", "--config", "--json"} {
		if !strings.Contains(viaHelp.stdout, "   "+flag+" ") {
			t.Errorf("restore's help does not list %s", flag)
		}
	}
	if r := runWalsnap(t, nil, "help"); r.code != 0 || !strings.Contains(r.stdout, "COMMANDS:") {
		t.Fatalf("walsnap help: exit %d %q", r.code, r.stdout)
	}
	usageFailure(t, runWalsnap(t, nil, "help", "backpu"), 2, `unknown command "backpu" (did you mean "backup"?)`)
}

// TestUsageErrors: a mistyped command or flag is one line on stderr that
// points to the help, exit status 2; wal-fetch keeps its restore_command
// contract (255: PostgreSQL stops recovery).
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	usageFailure(t, runWalsnap(t, nil, "backpu"), 2, `walsnap: unknown command "backpu" (did you mean "backup"?)`, "'walsnap --help'")
	usageFailure(t, runWalsnap(t, nil, "frobnicate"), 2, `walsnap: unknown command "frobnicate" (see 'walsnap --help')`)
	usageFailure(t, runWalsnap(t, nil, "restore", "--pgdatx", "/x"), 2,
		"flag provided but not defined: --pgdatx (did you mean --pgdata?)", "'walsnap restore --help'")
	usageFailure(t, runWalsnap(t, nil, "--bogus", "backup-list"), 2, "flag provided but not defined: --bogus", "'walsnap --help'")
	usageFailure(t, runWalsnap(t, nil, "backup-list", "--push-concurrency", "many"), 2,
		`invalid value "many" for flag --push-concurrency`, "'walsnap backup-list --help'")
	usageFailure(t, runWalsnap(t, nil, "backup", "extra"), 2, "backup takes no arguments", "'walsnap backup --help'")
	usageFailure(t, runWalsnap(t, nil, "wal-fetch", "--bogus", "a", "b"), 255, "flag provided but not defined: --bogus", "'walsnap wal-fetch --help'")
	usageFailure(t, runWalsnap(t, nil, "wal-fetch", "only-one"), 255, "wal-fetch takes two arguments")
	usageFailure(t, runWalsnap(t, nil, "wal-push"), 2, "wal-push takes one argument")
}

// TestSettingsBeforeAndAfterTheCommand: a setting is a flag before the
// command and after it (after wins), over its WALSNAP_* variable; the
// error names the repository each resolution chose.
func TestSettingsBeforeAndAfterTheCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	repo := func(name string) string { return "file://" + filepath.Join(dir, name) }
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"backup-list", "--repo", repo("after")}, "after"},
		{nil, []string{"--repo", repo("before"), "backup-list"}, "before"},
		{nil, []string{"--repo", repo("before"), "backup-list", "--repo", repo("after")}, "after"},
		{[]string{"WALSNAP_REPO=" + repo("env")}, []string{"backup-list"}, "env"},
		{[]string{"WALSNAP_REPO=" + repo("env")}, []string{"backup-list", "--repo", repo("after")}, "after"},
		{[]string{"WALSNAP_REPO=" + repo("env")}, []string{"--repo", repo("before"), "backup-list"}, "before"},
	} {
		r := runWalsnap(t, tc.env, tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, "no repository at "+repo(tc.want)+":") {
			t.Errorf("%v %v: exit %d, %q; want the repository %s", tc.env, tc.args, r.code, r.stderr, repo(tc.want))
		}
	}
	// A config file named after the command, too.
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	if err := os.WriteFile(cfg, []byte("repo: "+repo("file")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runWalsnap(t, nil, "backup-list", "--config", cfg); !strings.Contains(r.stderr, "no repository at "+repo("file")+":") {
		t.Errorf("backup-list --config: %q", r.stderr)
	}
}

// TestNoRepository: backup-list where there is no repository says so and
// fails, instead of listing nothing; it creates nothing on the way.
func TestNoRepository(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "mistyped")
	r := runWalsnap(t, nil, "backup-list", "--repo", "file://"+missing)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no repository at file://"+missing+": directory "+missing+" does not exist") {
		t.Fatalf("backup-list of a missing directory: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("backup-list created %s", missing)
	}
	empty := t.TempDir()
	r = runWalsnap(t, nil, "backup-list", "--repo", "file://"+empty, "--json")
	if r.code != 1 || !strings.Contains(r.stderr, "there is no walsnap.json") {
		t.Fatalf("backup-list of an empty directory: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	s3 := testrig.S3(t)
	r = runWalsnap(t, s3.Environ(), "backup-list", "--repo", "s3://"+s3.Bucket+"/typo", "--s3-endpoint", s3.Endpoint, "--s3-path-style")
	if r.code != 1 || !strings.Contains(r.stderr, "no repository at s3://"+s3.Bucket+"/typo: there is no walsnap.json") {
		t.Fatalf("backup-list of an empty bucket prefix: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestLogLines: commands run by hand or by timers stamp their log lines;
// under archive_command and restore_command PostgreSQL's log does. The
// final error line follows --log-format.
func TestLogLines(t *testing.T) {
	t.Parallel()
	misspelt := []string{config.EnvPrefix + "FROBNICATE=1"} // a warning line from every command
	r := runWalsnap(t, misspelt, "backup-list", "--repo", "file:///nonexistent/walsnap-test")
	if !regexp.MustCompile(`(?m)^time=\S+ level=WARN msg="unknown environment variable ignored" cmd=backup-list`).MatchString(r.stderr) {
		t.Errorf("backup-list's log line has no timestamp:\n%s", r.stderr)
	}
	r = runWalsnap(t, misspelt, "wal-fetch", "--repo", "file://"+t.TempDir(), "--fetch-prefetch", "0",
		"000000010000000000000001", filepath.Join(t.TempDir(), "RECOVERYXLOG"))
	if r.code != 1 || !regexp.MustCompile(`(?m)^level=WARN msg="unknown environment variable ignored" cmd=wal-fetch`).MatchString(r.stderr) {
		t.Errorf("wal-fetch of an absent file: exit %d, log lines (want no timestamp):\n%s", r.code, r.stderr)
	}

	r = runWalsnap(t, nil, "backup-list", "--repo", "file:///nonexistent/walsnap-test", "--log-format", "json")
	var line struct{ Time, Level, Msg, Cmd string }
	if err := json.Unmarshal([]byte(r.stderr), &line); err != nil || r.code != 1 || line.Level != "ERROR" || line.Cmd != "backup-list" ||
		line.Time == "" || !strings.HasPrefix(line.Msg, "no repository at file:///nonexistent/walsnap-test") {
		t.Fatalf("final error line with --log-format json: %q (%v)", r.stderr, err)
	}
	r = runWalsnap(t, nil, "backup-list", "--repo", "file:///nonexistent/walsnap-test")
	if r.stderr != "walsnap: no repository at file:///nonexistent/walsnap-test: directory /nonexistent/walsnap-test does not exist (check repo, --repo or WALSNAP_REPO)\n" {
		t.Fatalf("final error line in text: %q", r.stderr)
	}
}

// TestRegionDiscovery: with neither s3.region nor AWS_REGION, as for
// archive_command on EC2, walsnap finds the bucket's region: the bucket
// answers as AWS S3 does for a bucket in eu-north-1, from an instance in
// eu-west-3 (a stub IMDS). A request signed for us-east-1, the old
// fallback, is refused there.
func TestRegionDiscovery(t *testing.T) {
	t.Parallel()
	s3 := testrig.S3(t)
	gated := testrig.RegionGate(t, s3, "eu-north-1")
	imds := testrig.IMDS(t, "eu-west-3")
	cfg := filepath.Join(testrig.ConfigDir(t), "walsnap.yaml")
	conf := fmt.Sprintf("repo: s3://%s/db\ns3:\n  endpoint: %s\n  path_style: true\npush:\n  ahead: 0\n", s3.Bucket, gated.Endpoint)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey, "AWS_REGION=", "AWS_DEFAULT_REGION=",
		"AWS_PROFILE=", "AWS_CONFIG_FILE=/nonexistent/walsnap-test/config", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent/walsnap-test/credentials",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imds.Endpoint, "AWS_EC2_METADATA_DISABLED="}

	name, seg := walSegment(t)
	walDir := filepath.Join(t.TempDir(), "pg_wal")
	os.MkdirAll(filepath.Join(walDir, "archive_status"), 0o700)
	if err := os.WriteFile(filepath.Join(walDir, name), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runWalsnap(t, env, "--config", cfg, "wal-push", filepath.Join(walDir, name)); r.code != 0 {
		t.Fatalf("wal-push without a region: exit %d\n%s", r.code, r.stderr)
	}
	if imds.Hits() == 0 {
		t.Fatal("wal-push did not ask the instance metadata service for its region")
	}
	if r := runWalsnap(t, env, "--config", cfg, "backup-list"); r.code != 0 {
		t.Fatalf("backup-list without a region: exit %d\n%s", r.code, r.stderr)
	}
	// The gate refuses the old fallback, so the test shows the discovery.
	if r := runWalsnap(t, env, "--config", cfg, "backup-list", "--s3-region", "us-east-1", "--s3-max-attempts", "1"); r.code == 0 {
		t.Fatal("the gate accepted a request signed for us-east-1")
	}
}

// walSegment is a 16 MiB WAL segment of the test fixtures' cluster: its
// real first page, then filler.
func walSegment(t *testing.T) (string, []byte) {
	t.Helper()
	const name = "000000010000000000000002"
	head, err := os.ReadFile(filepath.Join("..", "testdata", "wal", "pg15-16mb", name+".head"))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 16<<20)
	copy(data, head)
	r := rand.New(rand.NewPCG(1, 2))
	for i := len(head); i < len(data); i++ {
		data[i] = byte('a' + r.IntN(16))
	}
	return name, data
}

// TestCompletion: the bash script completes commands and flags by asking
// the binary; the zsh one registers itself.
func TestCompletion(t *testing.T) {
	t.Parallel()
	bin := testrig.Walsnap(t)
	r := runWalsnap(t, nil, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("completion bash: exit %d %s", r.code, r.stderr)
	}
	script := filepath.Join(t.TempDir(), "walsnap.bash")
	os.WriteFile(script, []byte(r.stdout), 0o644)
	complete := func(words ...string) []string {
		t.Helper()
		// Complete the last word of "walsnap words...".
		var quoted []string
		for _, w := range append([]string{"walsnap"}, words...) {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := fmt.Sprintf(`source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _walsnap; printf '%%s\n' "${COMPREPLY[@]}"`,
			script, strings.Join(quoted, " "), len(words))
		cmd := exec.Command("bash", "--norc", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("res"); strings.Join(got, " ") != "restore" {
		t.Errorf("walsnap res<TAB> = %q, want restore", got)
	}
	if got := complete("backup-s"); strings.Join(got, " ") != "backup-start backup-stop" {
		t.Errorf("walsnap backup-s<TAB> = %q", got)
	}
	if got := complete("restore", "--target-ti"); strings.Join(got, " ") != "--target-time --target-timeline" {
		t.Errorf("walsnap restore --target-ti<TAB> = %q", got)
	}
	if got := complete("restore", "--pgd"); strings.Join(got, " ") != "--pgdata" {
		t.Errorf("walsnap restore --pgd<TAB> = %q (the settings are the command's flags too)", got)
	}
	r = runWalsnap(t, nil, "completion", "zsh")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "#compdef walsnap\n") || !strings.Contains(r.stdout, "compdef _walsnap walsnap") {
		t.Fatalf("completion zsh: exit %d\n%s", r.code, r.stdout)
	}
	usageFailure(t, runWalsnap(t, nil, "completion", "fish"), 2, "completion takes one argument: bash or zsh")
}

// TestManPage: the manual page, made from the command definitions, renders
// and documents every command and every setting, once.
func TestManPage(t *testing.T) {
	t.Parallel()
	r := runWalsnap(t, nil, "man")
	if r.code != 0 || !strings.Contains(r.stdout, ".TH walsnap 8") {
		t.Fatalf("man: exit %d\n%.300s", r.code, r.stdout)
	}
	page := filepath.Join(t.TempDir(), "walsnap.8")
	os.WriteFile(page, []byte(r.stdout), 0o644)
	cmd := exec.Command("man", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=200", "MANPAGER=cat", "PAGER=cat")
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l: %v", err)
	}
	rendered := string(text)
	for _, c := range []string{"wal-push", "wal-fetch", "backup", "backup-list", "restore", "backup-start", "backup-stop", "version", "completion"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c) + `$`).MatchString(rendered) {
			t.Errorf("the manual page has no section for %s", c)
		}
	}
	for _, k := range config.Keys {
		if n := len(regexp.MustCompile(`(?m)^\s+--`+regexp.QuoteMeta(k.Flag())+`[=:]`).FindAllString(rendered, -1)); n != 1 {
			t.Errorf("the manual page documents --%s %d times, want once", k.Flag(), n)
		}
	}
	if !strings.Contains(rendered, "--target-time") || strings.Contains(rendered, "wal-prefetch") {
		t.Error("the manual page lacks restore's own options, or shows an internal command")
	}
}

// TestMakeInstall: make install puts a static, stripped binary that
// reports the version it was built with, its manual page and completion
// scripts under DESTDIR.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		testrig.Unavailable(t, "no make")
	}
	dir := t.TempDir()
	bin, dest := filepath.Join(dir, "walsnap"), filepath.Join(dir, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", "..", "install", "BIN="+bin, "DESTDIR="+dest, "PREFIX=/usr", "VERSION=9.9.9-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	installed := filepath.Join(dest, "usr", "bin", "walsnap")
	for _, f := range []string{installed, "usr/share/man/man8/walsnap.8", "usr/share/bash-completion/completions/walsnap", "usr/share/zsh/site-functions/_walsnap"} {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dest, f)
		}
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	f, err := elf.Open(installed)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the installed binary is dynamically linked (%v)", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the installed binary is not stripped")
	}
	out, err := exec.Command(installed, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "walsnap 9.9.9-test (commit ") || !strings.Contains(string(out), runtime.Version()) {
		t.Fatalf("installed walsnap --version: %q %v", out, err)
	}
	fi, _ := os.Stat(installed)
	t.Logf("make build: a static, stripped binary of %.1f MB", float64(fi.Size())/(1<<20))
}

// TestStaticBuild: the binary the tests run is static like the shipped one.
func TestStaticBuild(t *testing.T) {
	t.Parallel()
	f, err := elf.Open(testrig.Walsnap(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the walsnap under test links %v", libs)
	}
}
