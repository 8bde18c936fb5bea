package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// A key pair made for these tests with age-keygen; it protects nothing.
const (
	testIdentity   = "AGE-SECRET-KEY-158P3KDWL6FFSFQK4C8MTW509ZGPT256M9T50KHW6LUYZSSZF4FQSDKUF48"
	testRecipient  = "age10w3axp59aqdyycrnpcygvjhjpk83prmd2ppg8ywxkdsl7rysvv6shv2qad"
	testRecipient2 = "age1dtd3axjut7l9x6ymwgdwerlnasu8lvxmwm4efekp6f6fu099u5dsyfqp2t"
)

func TestRecipients(t *testing.T) {
	file := writeFile(t, "# the restore host's key\n"+testRecipient2+"\n", 0o644)
	c := Default()
	if err := c.Set("encryption.recipients", testRecipient+", "+file); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Encryption.Recipients.List()); n != 2 {
		t.Fatalf("%d recipients, want 2", n)
	}
	// The text form is what was given: a child process re-reads the file.
	if got, _ := c.Get("encryption.recipients"); got != testRecipient+","+file {
		t.Errorf("Get = %q", got)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil || len(back.Encryption.Recipients.List()) != 2 {
		t.Fatalf("JSON round trip: %v, %d recipients", err, len(back.Encryption.Recipients.List()))
	}

	// YAML takes a list, or one string.
	for _, body := range []string{
		"encryption:\n  recipients:\n    - " + testRecipient + "\n    - " + file + "\n",
		"encryption:\n  recipients: " + testRecipient + "," + file + "\n",
	} {
		c := Default()
		if err := c.LoadFile(writeFile(t, body, 0o600)); err != nil || len(c.Encryption.Recipients.List()) != 2 {
			t.Errorf("%q: %v, %d recipients", body, err, len(c.Encryption.Recipients.List()))
		}
	}

	for in, want := range map[string]string{
		"age1nope":                   `encryption.recipients "age1nope": want an age public key`,
		"recipients.txt":             `encryption.recipients "recipients.txt": want an age public key (age1...) or the absolute path`,
		testIdentity:                 `an age secret key (AGE-SECRET-KEY-...) is given where a recipient belongs`,
		writeFile(t, "x\n", 0o644):   "encryption.recipients file",
		writeFile(t, "", 0o644):      "no recipients found",
		writeFile(t, "# x\n", 0o666): "insecure config file: mode -rw-rw-rw- makes it writable by group or others",
	} {
		c := Default()
		err := c.Set("encryption.recipients", in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set(%q) = %v, want %q", in, err, want)
		}
		if strings.Contains(in, "SECRET") && err != nil && strings.Contains(err.Error(), in) {
			t.Errorf("the error quotes a secret key: %v", err)
		}
	}
}

func TestIdentities(t *testing.T) {
	key := writeFile(t, "# created: 2026-01-01\n# public key: "+testRecipient+"\n"+testIdentity+"\n", 0o600)
	ids, err := Encryption{IdentityFile: key}.Identities()
	if err != nil || len(ids) != 1 {
		t.Fatalf("Identities = %d, %v", len(ids), err)
	}
	// Group-readable is fine (0640 with group postgres).
	if _, err := (Encryption{IdentityFile: writeFile(t, testIdentity+"\n", 0o640)}).Identities(); err != nil {
		t.Errorf("0640: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "key.txt")
	for _, tc := range []struct {
		file, want string
	}{
		{"", "encryption.identity_file is not set"},
		{writeFile(t, testIdentity+"\n", 0o644), "mode -rw-r--r-- lets others read the secret it holds; run chmod o-rwx"},
		{writeFile(t, testIdentity+"\n", 0o660), "makes it writable by group or others"},
		{writeFile(t, "AGE-SECRET-KEY-1XYZ\n", 0o600), "want age identities"},
		{writeFile(t, testRecipient+"\n", 0o600), "unknown identity type"},
		{missing, "no such file"},
	} {
		_, err := Encryption{IdentityFile: tc.file}.Identities()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Identities(%s) = %v, want %q", tc.file, err, tc.want)
		}
		// A missing key must never pass for a missing WAL file.
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Identities(%s) error matches fs.ErrNotExist: %v", tc.file, err)
		}
		if err != nil && (strings.Contains(err.Error(), testIdentity) || strings.Contains(err.Error(), "1XYZ")) {
			t.Errorf("the error quotes the key: %v", err)
		}
	}

	c := Default()
	c.Repo, _ = ParseLocation("file:///r")
	c.Encryption.IdentityFile = "key.txt"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "encryption.identity_file") {
		t.Errorf("a relative identity_file: %v", err)
	}
}
