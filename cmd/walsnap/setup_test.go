package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/walsnap/walsnap/internal/config"
)

// resolve runs the real app with a probe command and returns the settings
// it resolves from args (after the program name) and the environment.
func resolve(t *testing.T, args ...string) (config.Config, error) {
	t.Helper()
	app := newApp()
	var got config.Config
	var gotErr error
	app.Commands = append(app.Commands, &cli.Command{Name: "probe", Action: func(c *cli.Context) error {
		got, gotErr = loadConfig(c)
		return nil
	}})
	if err := app.RunContext(context.Background(), append(append([]string{"walsnap"}, args...), "probe")); err != nil {
		t.Fatal(err)
	}
	return got, gotErr
}

func TestPrecedenceFlagsEnvFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "walsnap.yaml")
	os.WriteFile(cfgPath, []byte("repo: file:///from/file\ncompression: gzip\ns3:\n  region: file-region\npush:\n  concurrency: 2\n"), 0o600)

	c, err := resolve(t, "--config", cfgPath)
	if err != nil || c.Repo.String() != "file:///from/file" || c.Compression.Name() != "gzip" || c.Push.Concurrency != 2 {
		t.Fatalf("file only: %+v %v", c, err)
	}

	t.Setenv("WALSNAP_REPO", "file:///from/env")
	t.Setenv("WALSNAP_PUSH_CONCURRENCY", "6")
	t.Setenv("WALSNAP_S3_PATH_STYLE", "true")
	c, err = resolve(t, "--config", cfgPath)
	if err != nil || c.Repo.String() != "file:///from/env" || c.Push.Concurrency != 6 || !c.S3.PathStyle || c.Compression.Name() != "gzip" {
		t.Fatalf("env over file: %+v %v", c, err)
	}

	c, err = resolve(t, "--config", cfgPath, "--repo", "file:///from/flag", "--push-concurrency", "9", "--fetch-timeout", "7s")
	if err != nil || c.Repo.String() != "file:///from/flag" || c.Push.Concurrency != 9 || c.Fetch.Timeout.String() != "7s" || c.S3.Region != "file-region" {
		t.Fatalf("flags over env and file: %+v %v", c, err)
	}

	t.Setenv("WALSNAP_CONFIG", cfgPath)
	t.Setenv("WALSNAP_REPO", "")
	os.Unsetenv("WALSNAP_REPO")
	c, err = resolve(t)
	if err != nil || c.Repo.String() != "file:///from/file" {
		t.Fatalf("WALSNAP_CONFIG: %+v %v", c, err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("repo: file:///x\npush:\n  concurency: 3\n"), 0o600)
	if _, err := resolve(t, "--config", bad); err == nil {
		t.Fatal("a config file with a misspelt key was accepted")
	}
	open := filepath.Join(dir, "open.yaml")
	os.WriteFile(open, []byte("repo: file:///x\n"), 0o666)
	os.Chmod(open, 0o666)
	if _, err := resolve(t, "--config", open); !errors.Is(err, config.ErrInsecureFile) {
		t.Fatalf("world-writable config: %v", err)
	}
	if _, err := resolve(t, "--config", filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing --config file: %v", err)
	}
	if _, err := resolve(t, "--repo", "ftp://x"); !errors.Is(err, config.ErrBadRepo) {
		t.Fatalf("bad repo: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("upload failed"), 1},
		{usageError{msg: "bad"}, 2},
		{withCode(255, errors.New("checksum mismatch")), 255},
		{fmt.Errorf("wrapped: %w", withCode(1, errors.New("absent"))), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestWalFetchUsage checks that a restore_command misconfiguration is a
// hard failure (not "file absent", which would end recovery quietly).
func TestWalFetchUsage(t *testing.T) {
	err := newApp().RunContext(context.Background(), []string{"walsnap", "--repo", "file:///nonexistent", "wal-fetch", "only-one-arg"})
	if got := exitCode(err); got != 255 {
		t.Fatalf("wal-fetch with one argument: exit %d, want 255", got)
	}
	err = newApp().RunContext(context.Background(), []string{"walsnap", "wal-fetch", "000000010000000000000001", "/tmp/x"})
	if got := exitCode(err); got != 255 {
		t.Fatalf("wal-fetch without a repository: exit %d, want 255", got)
	}
	err = newApp().RunContext(context.Background(), []string{"walsnap", "wal-push"})
	if got := exitCode(err); got != 2 {
		t.Fatalf("wal-push without an argument: exit %d, want 2", got)
	}
}

// captureLog sends what loggers write to a buffer for the rest of the test.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	old := logOutput
	logOutput = &buf
	t.Cleanup(func() { logOutput = old })
	return &buf
}

// clearUnknownEnv unsets, for the rest of the test, any unknown WALSNAP_*
// variable the test's own environment happens to have.
func clearUnknownEnv(t *testing.T) {
	t.Helper()
	for _, u := range config.UnknownEnv(os.Environ()) {
		t.Setenv(u.Name, "") // restored at cleanup
		os.Unsetenv(u.Name)
	}
}

// The misspelt names are built with "+" so that config's scan of the tree
// for WALSNAP_* names in use does not see them.
const envPrefix = config.EnvPrefix

// TestUnknownEnvWarns: a misspelt WALSNAP_* variable would be ignored
// without a word; it draws one warning line on stderr (PostgreSQL's log
// under archive_command), naming the setting it most likely means, and
// changes nothing else. Variables walsnap, its scripts and tests use do not.
func TestUnknownEnvWarns(t *testing.T) {
	clearUnknownEnv(t)
	out := captureLog(t)
	t.Setenv("WALSNAP_REPO", "file:///var/lib/walsnap")
	t.Setenv(envPrefix+"S3_ENDPIONT", "http://127.0.0.1:9000")
	t.Setenv(envPrefix+"FROBNICATE", "1")
	t.Setenv("WALSNAP_RIG", "1")
	t.Setenv("WALSNAP_TEST_WORKDIR", "/tmp/x")
	t.Setenv("WALSNAP_PG_MAJORS", "15")
	t.Setenv("WALSNAP_BIN", "/tmp/walsnap")
	t.Setenv("WALSNAP_RESOLVED_CONFIG", "{}")
	c, err := resolve(t)
	if err != nil || c.Repo.String() != "file:///var/lib/walsnap" || c.S3.Endpoint != "" {
		t.Fatalf("resolve: %+v %v", c, err)
	}
	// The probe command stamps its lines (only archive_command and
	// restore_command leave that to PostgreSQL's log; see TestLogTimestamps).
	stamp := regexp.MustCompile(`time=\S+ |"time":"[^"]+",`)
	if n := len(stamp.FindAllString(out.String(), -1)); n != 2 {
		t.Fatalf("%d timestamps in:\n%s", n, out)
	}
	out = bytes.NewBufferString(stamp.ReplaceAllString(out.String(), ""))
	want := "level=WARN msg=\"unknown environment variable ignored\" cmd=probe var=" + envPrefix + "FROBNICATE\n" +
		"level=WARN msg=\"unknown environment variable ignored\" cmd=probe var=" + envPrefix + "S3_ENDPIONT did_you_mean=WALSNAP_S3_ENDPOINT\n"
	if out.String() != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", out, want)
	}

	// Shown whatever the log level, in the log format, and even when the
	// settings are refused (the misspelling may be why).
	out = captureLog(t)
	os.Unsetenv(envPrefix + "FROBNICATE")
	t.Setenv("WALSNAP_LOG_LEVEL", "error")
	t.Setenv("WALSNAP_LOG_FORMAT", "json")
	os.Unsetenv("WALSNAP_REPO")
	if _, err := resolve(t); !errors.Is(err, config.ErrNoRepo) {
		t.Fatalf("resolve without a repository: %v", err)
	}
	want = `{"level":"WARN","msg":"unknown environment variable ignored","cmd":"probe","var":"` + envPrefix + `S3_ENDPIONT","did_you_mean":"WALSNAP_S3_ENDPOINT"}` + "\n"
	if got := stamp.ReplaceAllString(out.String(), ""); got != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", out, want)
	}
}

// TestUnknownEnvKeepsExitStatus: under restore_command the warning must not
// turn "file absent" (1) into anything else.
func TestUnknownEnvKeepsExitStatus(t *testing.T) {
	clearUnknownEnv(t)
	out := captureLog(t)
	repoDir := t.TempDir()
	t.Setenv(envPrefix+"FETCH_PREFECTH", "0")
	err := newApp().RunContext(context.Background(), []string{"walsnap", "--repo", "file://" + repoDir, "--fetch-prefetch", "0",
		"wal-fetch", "000000010000000000000001", filepath.Join(t.TempDir(), "RECOVERYXLOG")})
	if got := exitCode(err); got != 1 {
		t.Fatalf("wal-fetch of an absent segment: exit %d (%v), want 1", got, err)
	}
	if n := strings.Count(out.String(), "unknown environment variable"); n != 1 || !strings.Contains(out.String(), "did_you_mean=WALSNAP_FETCH_PREFETCH") {
		t.Fatalf("stderr: %q", out)
	}
}

// TestSecretsNotEchoed: refusals of a repository or endpoint with
// credentials or a query never show them (they go to PostgreSQL's log).
func TestSecretsNotEchoed(t *testing.T) {
	const creds = "credentials, query parameters and fragments do not belong in the URL (credentials come from the AWS SDK's default chain)"
	for _, tc := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{args: []string{"--repo", "s3://AKIAEXAMPLE:wJalrXUtnFEMI/K7MDENG@bucket/x"},
			want: `bad repository URL "s3://REDACTED@bucket/x": not a valid URL; credentials, query parameters and fragments do not belong in it`},
		{args: []string{"--repo", "s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/x"},
			want: `bad repository URL "s3://REDACTED@bucket/x": ` + creds},
		{args: []string{"--repo", "s3://bucket/x?secret=wJalrXUtnFEMIK7MDENG"},
			want: `bad repository URL "s3://bucket/x?REDACTED": ` + creds},
		{env: [2]string{"WALSNAP_REPO", "s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/x"},
			want: `WALSNAP_REPO: bad repository URL "s3://REDACTED@bucket/x": ` + creds},
		{args: []string{"--repo", "s3://bucket/x", "--s3-endpoint", "http://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@127.0.0.1:9000"},
			want: `s3.endpoint "http://REDACTED@127.0.0.1:9000": ` + creds},
		{env: [2]string{"WALSNAP_S3_ENDPOINT", "https://minio:9000/?X-Amz-Credential=AKIAEXAMPLE&sig=wJalrXUtnFEMIK7MDENG"},
			want: `s3.endpoint "https://minio:9000/?REDACTED": ` + creds},
		{args: []string{"--repo", "s3://bucket/x", "--ebs-endpoint", "http://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@127.0.0.1:5000"},
			want: `ebs.endpoint "http://REDACTED@127.0.0.1:5000": ` + creds},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			if tc.env[0] == "WALSNAP_S3_ENDPOINT" {
				t.Setenv("WALSNAP_REPO", "s3://bucket/x")
			}
			_, err := resolve(t, tc.args...)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tc.want)
			}
			for _, secret := range []string{"AKIAEXAMPLE", "wJalr", "K7MDENG"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q shows %q", err, secret)
				}
			}
		})
	}
	// The same through a config file and the whole command, as
	// archive_command runs it: the line on stderr is the error.
	cfg := filepath.Join(t.TempDir(), "walsnap.yaml")
	os.WriteFile(cfg, []byte("repo: s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/x\n"), 0o600)
	err := newApp().RunContext(context.Background(), []string{"walsnap", "--config", cfg, "wal-push", "pg_wal/000000010000000000000001"})
	if err == nil || strings.Contains(err.Error(), "wJalr") || strings.Contains(err.Error(), "AKIAEXAMPLE") || !strings.Contains(err.Error(), "s3://REDACTED@bucket/x") {
		t.Fatalf("wal-push: %v", err)
	}
}

// TestConfigFileHardening: through the CLI, a config another user could
// change, or with a second YAML document, is refused before anything runs.
func TestConfigFileHardening(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root (CI runs the tests as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no nobody user")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	dir := t.TempDir()

	theirs := filepath.Join(dir, "theirs.yaml")
	os.WriteFile(theirs, []byte("repo: file:///tmp/evil\n"), 0o644)
	if err := os.Chown(theirs, uid, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(t, "--config", theirs); !errors.Is(err, config.ErrInsecureFile) || !strings.Contains(err.Error(), "owned by nobody") {
		t.Fatalf("config owned by nobody: %v", err)
	}

	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	inOpen := filepath.Join(open, "walsnap.yaml")
	os.WriteFile(inOpen, []byte("repo: file:///var/lib/walsnap\n"), 0o600)
	if _, err := resolve(t, "--config", inOpen); !errors.Is(err, config.ErrInsecureFile) || !strings.Contains(err.Error(), "directory "+open) {
		t.Fatalf("config in a world-writable directory: %v", err)
	}

	twoDocs := filepath.Join(dir, "two.yaml")
	os.WriteFile(twoDocs, []byte("repo: file:///var/lib/walsnap\n---\nrepo: file:///tmp/evil\n"), 0o600)
	if _, err := resolve(t, "--config", twoDocs); !errors.Is(err, config.ErrMultipleDocuments) {
		t.Fatalf("config with two documents: %v", err)
	}
	t.Setenv("WALSNAP_CONFIG", twoDocs)
	if _, err := resolve(t); !errors.Is(err, config.ErrMultipleDocuments) {
		t.Fatalf("WALSNAP_CONFIG with two documents: %v", err)
	}
}
