package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestEBSVolumes: ebs.volumes in every form it is read in (YAML entries
// that are ids or {id, mount} mappings, the comma-separated text of the
// environment and flags, the JSON handed to a helper process), and the
// refusals of ids and mount points that cannot work.
func TestEBSVolumes(t *testing.T) {
	want := EBSVolumes{{ID: "vol-0123456789abcdef0", Mount: "/srv/pg"}, {ID: "vol-1234abcd"}, {ID: "vol-0fedcba9876543210", Mount: "/pgwal"}}
	for name, body := range map[string]string{
		"mixed list": "repo: file:///r\nebs:\n  volumes:\n    - id: vol-0123456789abcdef0\n      mount: /srv/pg/\n    - vol-1234abcd\n    - {id: vol-0fedcba9876543210, mount: /pgwal}\n",
		"flow list":  "repo: file:///r\nebs:\n  volumes: [{id: vol-0123456789abcdef0, mount: /srv/pg}, vol-1234abcd, {id: vol-0fedcba9876543210, mount: /pgwal}]\n",
		"text":       "repo: file:///r\nebs:\n  volumes: vol-0123456789abcdef0=/srv/pg, vol-1234abcd,vol-0fedcba9876543210=/pgwal\n",
	} {
		c := Default()
		if err := c.LoadFile(writeFile(t, body, 0o600)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Validate(); err != nil || !reflect.DeepEqual(c.EBS.Volumes, want) {
			t.Errorf("%s: volumes %+v (%v), want %+v", name, c.EBS.Volumes, err, want)
		}
	}
	// The environment's and flags' form, and back.
	c := Default()
	if err := c.Set("ebs.volumes", "vol-0123456789abcdef0=/srv/pg,vol-1234abcd,vol-0fedcba9876543210=/pgwal"); err != nil || !reflect.DeepEqual(c.EBS.Volumes, want) {
		t.Fatalf("Set: %+v, %v", c.EBS.Volumes, err)
	}
	if got, _ := c.Get("ebs.volumes"); got != "vol-0123456789abcdef0=/srv/pg,vol-1234abcd,vol-0fedcba9876543210=/pgwal" {
		t.Errorf("Get = %q", got)
	}
	// A helper process gets the same volumes.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(back.EBS.Volumes, want) {
		t.Errorf("through JSON: %+v, %v", back.EBS.Volumes, err)
	}

	for name, tc := range map[string]struct{ body, want string }{
		"not hex":        {"ebs:\n  volumes: [vol-nothex]\n", `"vol-nothex" is not a volume id`},
		"short":          {"ebs:\n  volumes: [vol-0123]\n", `"vol-0123" is not a volume id`},
		"upper case":     {"ebs:\n  volumes: [vol-0123456789ABCDEF0]\n", "is not a volume id"},
		"instance":       {"ebs:\n  volumes: [i-0123456789abcdef0]\n", "is not a volume id"},
		"relative mount": {"ebs:\n  volumes: [{id: vol-0123456789abcdef0, mount: srv/pg}]\n", "not an absolute path"},
		"unknown key":    {"ebs:\n  volumes: [{id: vol-0123456789abcdef0, mountpoint: /srv}]\n", "mountpoint"},
		"text not hex":   {"ebs:\n  volumes: vol-0123456789abcdef0,vol-nothex\n", `"vol-nothex" is not a volume id`},
	} {
		c := Default()
		err := c.LoadFile(writeFile(t, tc.body, 0o600))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadFile = %v, want %q", name, err, tc.want)
		}
	}
	for name, tc := range map[string]struct{ value, want string }{
		"twice":            {"vol-0123456789abcdef0,vol-0123456789abcdef0=/srv", "listed twice"},
		"one mount point":  {"vol-0123456789abcdef0=/srv,vol-1234abcd=/srv/", "two volumes are mounted at /srv"},
		"bad id from flag": {"vol-nothex", "is not a volume id"},
	} {
		c := Default()
		c.Repo, _ = ParseLocation("file:///r")
		err := c.Set("ebs.volumes", tc.value)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	c = Default()
	c.Repo, _ = ParseLocation("file:///r")
	c.EBS.WindowTimeout = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ebs.window_timeout") {
		t.Errorf("a zero ebs.window_timeout: %v", err)
	}
}
