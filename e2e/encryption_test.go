package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walsnap/walsnap/internal/storage/s3"
	"github.com/walsnap/walsnap/internal/testrig"
)

// ageMagic starts every age file.
var ageMagic = []byte("age-encryption.org/v1\n")

// keyPair is an age key pair: the recipient for the database host's
// config, and an identity file in a root-owned directory, mode 0640 with
// group postgres so that the restored server's restore_command reads it.
type keyPair struct {
	recipient, identityFile string
}

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testrig.ConfigDir(t), "walsnap-key.txt")
	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(path, 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	return keyPair{recipient: id.Recipient().String(), identityFile: path}
}

// hostConfig writes a config file with the cluster's repository settings
// (its config up to the encryption section) and then extra, and returns
// its path: the view of another host (a restore host, a host without
// recipients).
func (c *cluster) hostConfig(t *testing.T, name, extra string) string {
	t.Helper()
	data, err := os.ReadFile(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, _, _ := strings.Cut(string(data), "encryption:")
	path := filepath.Join(filepath.Dir(c.cfg), name)
	if err := os.WriteFile(path, []byte(base+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// with runs walsnap with another config file; it returns the combined
// output and the exit status.
func (c *cluster) with(cfg string, args ...string) (string, int) {
	cmd := exec.Command(c.bin, append([]string{"--config", cfg}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// storedObjects reads every object of the cluster's S3 repository as
// stored, by key.
func storedObjects(t *testing.T, env testrig.S3Env) map[string][]byte {
	t.Helper()
	env.Setenv(t)
	st, err := s3.New(t.Context(), s3.Options{Bucket: env.Bucket, Prefix: "db", Endpoint: env.Endpoint, Region: env.Region,
		PathStyle: true, Checksums: "when_supported", MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, o := range objs {
		rc, _, err := st.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Key], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// isData reports whether key is a data object (WAL, history, .backup,
// parts) rather than the identity, a manifest or a status object.
func isData(key string) bool {
	return strings.HasPrefix(key, "wal/") || strings.Contains(key, "/data/")
}

// TestEncryptedRepository: a database host with only the recipient
// archives and backs up; every data object is age ciphertext; a restore
// host with the identity restores to a point in time; without the
// identity, wal-fetch exits 255 and restore fails before it touches
// PGDATA; verify checks stored objects without the key and content with
// it. (Not parallel: reading the bucket in process takes the
// credentials from the environment.)
func TestEncryptedRepository(t *testing.T) {
	keys := newKeyPair(t)
	s3env := testrig.S3(t)
	c := newCluster(t, clusterOptions{s3: s3env, config: "encryption:\n  recipients: " + keys.recipient + "\n"})
	id := c.backupUnderLoad(t)
	segment := c.pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	m := c.goodThenBad(t)

	// Every WAL page's long header (and pg_control in the parts) holds the
	// system identifier: plaintext WAL or data files would show it.
	sysID, err := strconv.ParseUint(c.pg.QueryString(t, "SELECT system_identifier FROM pg_control_system()"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	sysIDBytes := binary.LittleEndian.AppendUint64(nil, sysID)
	objs := storedObjects(t, s3env)
	var data int
	for key, body := range objs {
		switch {
		case isData(key):
			data++
			if !bytes.HasPrefix(body, ageMagic) || bytes.Contains(body, sysIDBytes) ||
				bytes.Contains(body, []byte("ustar\x00")) || bytes.Contains(body, []byte("pgbench_accounts")) {
				t.Errorf("%s is not age ciphertext: %q", key, body[:min(len(body), 40)])
			}
		case strings.HasSuffix(key, ".json"):
			if !json.Valid(body) {
				t.Errorf("%s is not readable JSON", key)
			}
		}
	}
	if data < 5 || !strings.Contains(string(objs["walsnap.json"]), `"encryption": "age"`) {
		t.Fatalf("%d data objects; walsnap.json:\n%s", data, objs["walsnap.json"])
	}

	noKey := c.hostConfig(t, "nokey.yaml", "")
	withKey := c.hostConfig(t, "restore.yaml", "encryption:\n  identity_file: "+keys.identityFile+"\n")
	wrongKey := c.hostConfig(t, "wrongkey.yaml", "encryption:\n  identity_file: "+newKeyPair(t).identityFile+"\n")

	// backup-list needs no key.
	if out, code := c.with(noKey, "backup-list"); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("backup-list without the key: exit %d\n%s", code, out)
	}

	// wal-fetch: 255 without the identity or with another one, never 1.
	dest := filepath.Join(testrig.WorkDir(t), "RECOVERYXLOG")
	for cfg, want := range map[string]string{noKey: "encryption.identity_file is not set", wrongKey: "is not one of the recipients"} {
		out, code := c.with(cfg, "wal-fetch", segment, dest)
		if code != 255 || !strings.Contains(out, want) {
			t.Errorf("wal-fetch %s with %s: exit %d, want 255 and %q:\n%s", segment, filepath.Base(cfg), code, want, out)
		}
		if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("wal-fetch without a usable key left %s", dest)
		}
	}
	if out, code := c.with(withKey, "--fetch-prefetch", "0", "wal-fetch", segment, dest); code != 0 {
		t.Fatalf("wal-fetch with the identity: exit %d\n%s", code, out)
	}
	if out, code := c.with(noKey, "wal-fetch", "0000000100000000000000FF", dest); code != 1 {
		t.Errorf("wal-fetch of an absent segment without the key: exit %d, want 1\n%s", code, out)
	}

	// restore without the key fails before it touches PGDATA.
	pgdata := filepath.Join(testrig.WorkDir(t), "data")
	if err := os.MkdirAll(pgdata, 0o700); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(pgdata, "keep-me")
	os.WriteFile(keep, []byte("x"), 0o600)
	for _, cfg := range []string{noKey, wrongKey} {
		out, code := c.with(cfg, "restore", "--pgdata", pgdata, "--force", "--target-time", m.time)
		if code == 0 || !strings.Contains(out, "restore refused before anything was changed") {
			t.Errorf("restore with %s: exit %d\n%s", filepath.Base(cfg), code, out)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("restore with %s touched PGDATA: %v", filepath.Base(cfg), err)
		}
	}

	// verify: stored bytes without the key, content with it.
	out, code := c.with(noKey, "verify", "--deep")
	if code != 0 || !strings.Contains(out, "checked by the SHA-256 of their stored bytes only") {
		t.Errorf("verify --deep without the key: exit %d\n%s", code, out)
	}
	out, code = c.with(withKey, "verify", "--deep")
	if code != 0 || strings.Contains(out, "stored bytes only") {
		t.Errorf("verify --deep with the key: exit %d\n%s", code, out)
	}

	// The restore host restores to the target, and its restore_command
	// (as postgres) reads the identity.
	c.cfg = withKey
	r := c.restore(t, "", "--target-time", m.time, "--target-action", "promote")
	r.checkAtTarget()
}

// TestEncryptionTurnedOnLater: a repository archived without encryption,
// then with: the first encrypted push records it in walsnap.json, a host
// without recipients is refused from then on, and a backup from before
// the switch restores through WAL from both sides of it.
func TestEncryptionTurnedOnLater(t *testing.T) {
	keys := newKeyPair(t)
	s3env := testrig.S3(t)
	c := newCluster(t, clusterOptions{s3: s3env})
	plainCfg := c.hostConfig(t, "plain.yaml", "")
	id := c.backupUnderLoad(t) // its parts and WAL are plaintext
	c.pg.Exec(t, "CREATE TABLE before_switch AS SELECT g FROM generate_series(1, 1000) g")
	c.archiveAll(t)

	// From now on the database host archives with a recipient.
	conf, err := os.ReadFile(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.cfg, append(conf, "encryption:\n  recipients: "+keys.recipient+"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	// A background archiver started before the change leaves within a
	// second of it (its settings stamp changed): a segment it pushed ahead
	// is plaintext, and the new wal-push calls find it archived.
	c.waitArchiverGone(t)
	m := c.goodThenBad(t)

	objs := storedObjects(t, s3env)
	if !strings.Contains(string(objs["walsnap.json"]), `"encryption": "age"`) || !strings.Contains(string(objs["walsnap.json"]), `"format_version": 2`) {
		t.Fatalf("walsnap.json does not record the encryption:\n%s", objs["walsnap.json"])
	}
	var plain, sealed int
	for key, body := range objs {
		if isData(key) {
			if bytes.HasPrefix(body, ageMagic) {
				sealed++
			} else {
				plain++
			}
		}
	}
	if plain == 0 || sealed == 0 {
		t.Fatalf("%d plaintext and %d encrypted data objects; want both", plain, sealed)
	}

	// A host without recipients is refused: backup, and wal-push.
	if out, code := c.with(plainCfg, "backup", "--fast"); code == 0 || !strings.Contains(out, "expects encryption") {
		t.Errorf("backup without recipients: exit %d\n%s", code, out)
	}
	segment := c.pg.QueryString(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	src, err := os.ReadFile(filepath.Join(c.pg.DataDir, "pg_wal", segment))
	if err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(testrig.WorkDir(t), "pg_wal")
	os.MkdirAll(walDir, 0o700)
	if err := os.WriteFile(filepath.Join(walDir, segment), src, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := c.with(plainCfg, "--push-ahead", "0", "wal-push", filepath.Join(walDir, segment)); code == 0 || !strings.Contains(out, "refusing to write unencrypted data") {
		t.Errorf("wal-push without recipients: exit %d\n%s", code, out)
	}

	// The backup from before the switch restores across it.
	c.cfg = c.hostConfig(t, "restore.yaml", "encryption:\n  identity_file: "+keys.identityFile+"\n")
	r := c.restore(t, "", "--backup", id, "--target-time", m.time, "--target-action", "promote")
	r.checkAtTarget()
	if got := r.query("SELECT count(*)::text FROM before_switch"); got != "1000" {
		t.Fatalf("before_switch has %s rows", got)
	}
}

// waitArchiverGone waits until no background archiver serves the
// cluster's spool: one holds an flock on archiver.lock until it leaves.
func (c *cluster) waitArchiverGone(t *testing.T) {
	t.Helper()
	f, err := os.Open(filepath.Join(c.pg.DataDir, "pg_wal", ".walsnap", "archiver.lock"))
	if errors.Is(err, os.ErrNotExist) {
		return // none ever ran
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_SH) }()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the background archiver did not leave within 2m")
	}
}
