package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/walsnap/walsnap/inspect"
	"github.com/walsnap/walsnap/internal/config"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/testrig"
)

// check runs walsnap check --json with args and returns the verdicts by
// check, and whether it exited 0.
func (c *cluster) check(t *testing.T, args ...string) (map[string]inspect.CheckLine, bool) {
	t.Helper()
	cmd := c.command(append([]string{"check", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	var lines []inspect.CheckLine
	if jerr := json.Unmarshal(out.Bytes(), &lines); jerr != nil {
		t.Fatalf("walsnap check --json %v: %v (%v)\nstdout:\n%s\nstderr:\n%s", args, jerr, err, out.String(), errb.String())
	}
	byName := map[string]inspect.CheckLine{}
	for _, l := range lines {
		byName[l.Check] = l
	}
	if ok := err == nil; ok == inspect.Failed(lines) {
		t.Fatalf("walsnap check exited %v with %+v", err, lines)
	}
	return byName, err == nil
}

// want asserts a check's verdict and that its message mentions msg.
func want(t *testing.T, lines map[string]inspect.CheckLine, check, status, msg string) {
	t.Helper()
	l, ok := lines[check]
	if !ok || l.Status != status || !strings.Contains(l.Message, msg) {
		t.Fatalf("check %s = %+v, want %s mentioning %q; all: %+v", check, l, status, msg, lines)
	}
}

// TestCheck: walsnap check passes on a good cluster, live WAL switch
// included, and on the EC2 permissions for the ebs provider (DryRun
// against moto); it fails on a repository of another cluster, an
// unreachable store, an archive_command that is not walsnap and
// archive_mode = off.
func TestCheck(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{})
	c.archiveAll(t) // the first wal-push creates the repository

	lines, ok := c.check(t)
	if !ok {
		t.Fatalf("check of a good cluster failed: %+v", lines)
	}
	for _, name := range []string{"connection", "wal_level", "archive_mode", "archive_command", "archiver", "repository", "repository write"} {
		want(t, lines, name, inspect.Pass, "")
	}
	want(t, lines, "archive_timeout", inspect.Warn, "archive_timeout = 60")
	want(t, lines, "live archive test", inspect.Pass, "archived in")
	out := c.walsnap(t, "check", "--timeout", "30s")
	t.Logf("walsnap check:\n%s", out)
	if !strings.Contains(out, "pass  live archive test") || !strings.Contains(out, "warn  archive_timeout") {
		t.Fatalf("walsnap check output:\n%s", out)
	}

	t.Run("ebs permissions", func(t *testing.T) {
		moto := testrig.Moto(t)
		ec := moto.EC2()
		instance, az := testrig.LaunchInstance(t, ec, "/dev/sda1")
		vol := testrig.NewVolume(t, ec, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), VolumeType: types.VolumeTypeGp3})
		if _, err := ec.AttachVolume(t.Context(), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(instance), Device: aws.String("/dev/sdf")}); err != nil {
			t.Fatal(err)
		}
		// moto takes any credentials: the bucket's serve.
		lines, ok := c.check(t, "--backup-provider", "ebs", "--ebs-endpoint", moto.Endpoint, "--ebs-region", moto.Region,
			"--ebs-instance-id", instance, "--ebs-volumes", vol)
		want(t, lines, "ebs permissions", inspect.Pass, "checked with DryRun")
		// The test's PostgreSQL is not on EBS: a backup works with
		// ebs.volumes, but records no mount points.
		want(t, lines, "ebs volumes", inspect.Warn, "do not map to EBS volumes")
		if !ok {
			t.Fatalf("check with the ebs provider: %+v", lines)
		}
		snaps, err := ec.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{Filters: []types.Filter{{Name: aws.String("volume-id"), Values: []string{vol}}}})
		if err != nil || len(snaps.Snapshots) != 0 {
			t.Fatalf("the DryRun check left snapshots: %v %v", snaps.Snapshots, err)
		}
	})

	t.Run("another cluster's repository", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "repo")
		r, err := repo.Open(t.Context(), config.Location{Scheme: "file", Dir: other}, config.S3{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.InitIdentity(t.Context(), repo.Identity{SystemID: 42, SegmentSize: 16 << 20, PGMajor: 15}); err != nil {
			t.Fatal(err)
		}
		lines, ok := c.check(t, "--repo", "file://"+other)
		want(t, lines, "repository", inspect.Fail, "belongs to database system 42")
		want(t, lines, "live archive test", inspect.Fail, "skipped")
		if ok {
			t.Fatal("check passed with another cluster's repository")
		}
	})

	t.Run("unreachable store", func(t *testing.T) {
		began := time.Now()
		lines, _ := c.check(t, "--s3-endpoint", "http://127.0.0.1:"+strconv.Itoa(freePort(t)), "--s3-max-attempts", "1")
		want(t, lines, "repository", inspect.Fail, "")
		if time.Since(began) > time.Minute {
			t.Errorf("check of an unreachable store took %v", time.Since(began))
		}
	})

	// Last: these break the cluster's archiving.
	t.Run("archive_command not walsnap", func(t *testing.T) {
		c.pg.Exec(t, "ALTER SYSTEM SET archive_command = 'true'")
		c.pg.Exec(t, "SELECT pg_reload_conf()")
		c.pg.WaitFor(t, 30*time.Second, "true", "SHOW archive_command")
		lines, ok := c.check(t, "--timeout", "3s")
		want(t, lines, "archive_command", inspect.Fail, "does not run walsnap wal-push")
		want(t, lines, "live archive test", inspect.Fail, "was not in the repository")
		if ok {
			t.Fatal("check passed")
		}
	})
	t.Run("archive_mode off", func(t *testing.T) {
		c.pg.Exec(t, "ALTER SYSTEM SET archive_mode = off")
		c.pg.Restart(t)
		lines, _ := c.check(t, "--timeout", "3s")
		want(t, lines, "archive_mode", inspect.Fail, "set archive_mode = on")
		want(t, lines, "archive_command", inspect.Fail, "not in force")
	})
	t.Run("server down", func(t *testing.T) {
		c.pg.Stop(t)
		lines, _ := c.check(t)
		want(t, lines, "connection", inspect.Fail, fmt.Sprint(c.pg.Port))
		want(t, lines, "repository", inspect.Pass, "")
	})
}
