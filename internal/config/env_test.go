package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The misspelt names below are built with "+" so that the scan of the
// tree in TestOtherEnvComplete does not take them for variables in use.
const p = EnvPrefix

func TestUnknownEnv(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin",
		p + "S3_ENDPIONT=http://minio:9000", // swapped letters
		p + "REOP=s3://bucket/x",            // no setting is that close but one
		p + "FROBNICATE=1",                  // nothing near
		p + "S3_ENDPOINT=http://minio:9000", // settings
		"WALSNAP_PUSH_CONCURRENCY=4",
		"WALSNAP_CONFIG=/etc/walsnap/walsnap.yaml", // not settings, but known
		"WALSNAP_RESOLVED_CONFIG={}",
		"WALSNAP_RIG=1",
		"WALSNAP_TEST_WORKDIR=/tmp/w",
		"WALSNAP_PG_MAJORS=15",
		"WALSNAP_BIN=/tmp/walsnap",
		"WALSNAP_BACKUP_ID=20260102T030405Z",
		p + "TEST_ANYTHING_NEW=1", // the test prefix is reserved
		"WALSNAP=/usr/local/bin/walsnap",
		"walsnap_repo=x",
		p + "S3_ENDPIONT=again", // reported once
	}
	got := UnknownEnv(environ)
	want := []EnvWarning{
		{Name: p + "FROBNICATE"},
		{Name: p + "REOP", Near: "WALSNAP_REPO"},
		{Name: p + "S3_ENDPIONT", Near: "WALSNAP_S3_ENDPOINT"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UnknownEnv = %+v\nwant %+v", got, want)
	}
	if s := want[2].String(); s != "unknown environment variable "+p+"S3_ENDPIONT ignored (did you mean WALSNAP_S3_ENDPOINT?)" {
		t.Errorf("String = %s", s)
	}
	if s := want[0].String(); s != "unknown environment variable "+p+"FROBNICATE ignored" {
		t.Errorf("String = %s", s)
	}
	if got := UnknownEnv(os.Environ()[:0]); got != nil {
		t.Errorf("UnknownEnv(empty) = %v", got)
	}
}

func TestNearest(t *testing.T) {
	for in, want := range map[string]string{
		p + "S3_ENDPIONT":       "WALSNAP_S3_ENDPOINT",
		p + "S3_ENDPOINTS":      "WALSNAP_S3_ENDPOINT",
		p + "S3_PATHSTYLE":      "WALSNAP_S3_PATH_STYLE",
		p + "PUSH_CONCURENCY":   "WALSNAP_PUSH_CONCURRENCY",
		p + "FETCH_PREFECTH":    "WALSNAP_FETCH_PREFETCH",
		p + "CONFG":             "WALSNAP_CONFIG",
		p + "S3_REGOIN":         "WALSNAP_S3_REGION",
		p + "REGION":            "", // s3.region or ebs.region: no obvious one
		p + "S3_SECRET_KEY":     "", // not a setting at all
		p + "PG":                "",
		p + "COMPLETELY_OTHER":  "",
		p + "EBS_WAIT_TIMEOUTS": "WALSNAP_EBS_WAIT_TIMEOUT",
	} {
		if got := nearest(in, knownEnv()); got != want {
			t.Errorf("nearest(%s) = %q, want %q", in, got, want)
		}
	}
}

// TestOtherEnvComplete scans the source tree for WALSNAP_* names: each must
// be a setting's variable, in OtherEnv, or under the WALSNAP_TEST_ prefix,
// or walsnap would warn about a variable its own scripts and tests set.
// When this fails, add the name to OtherEnv.
func TestOtherEnvComplete(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Skipf("module root not found: %v", err)
	}
	known := map[string]bool{}
	for _, k := range knownEnv() {
		known[k] = true
	}
	re := regexp.MustCompile(`WALSNAP_[A-Z0-9_]+`)
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".sh", ".md", ".yaml", ".yml", ".service", ".timer", ".json", ".conf":
		default:
			if filepath.Base(path) != "Makefile" {
				return nil
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, name := range re.FindAllString(string(data), -1) {
			// A name ending in "_" is a prefix ("WALSNAP_TEST_S3_*").
			if !known[name] && !strings.HasPrefix(name, testEnvPrefix) && !strings.HasSuffix(name, "_") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s: %s is neither a setting's variable nor in config.OtherEnv; add it there", rel, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"ENDPOINT", "ENDPIONT", 1},
		{"kitten", "sitting", 3}, {"ab", "ba", 1}, {"abc", "abc", 0},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
