package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"gopkg.in/yaml.v3"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/testrig"
)

// TestEBSOrchestrator: with backup.provider ebs, the backups an external
// orchestrator takes between backup-start and backup-stop are ebs backups
// that walsnap restore rebuilds. Run as the shipped DLM document and N2W
// scripts run them: backup-start checks the volumes before pg_backup_start;
// backup-stop without snapshot ids (DLM cannot pass them) finds the
// snapshots of the PostgreSQL volumes that started within the backup
// window, and not those from before; given ids are checked the same way.
func TestEBSOrchestrator(t *testing.T) {
	t.Parallel()
	s := newEBSSetup(t, "")
	s.deleteSnapshotsLater(t)
	ctx := t.Context()
	env := append(os.Environ(), s.env...)
	env = append(env, "WALSNAP="+s.bin, "WALSNAP_CONFIG="+s.cfg, "WALSNAP_SUDO=")
	hook := func(script string, args ...string) (string, error) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dlm := dlmScript(t)
	n2w, err := filepath.Abs("../scripts/n2w")
	if err != nil {
		t.Fatal(err)
	}
	// snapshotInstance takes what a DLM instance policy takes: one
	// snapshot of each data volume, the boot volume excluded.
	snapshotInstance := func() map[string]string {
		t.Helper()
		out, err := s.ec2.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{InstanceSpecification: &types.InstanceSpecification{
			InstanceId: aws.String(s.instance), ExcludeBootVolume: aws.Bool(true)}})
		if err != nil {
			t.Fatal(err)
		}
		byVolume := map[string]string{}
		for _, sn := range out.Snapshots {
			byVolume[aws.ToString(sn.VolumeId)] = aws.ToString(sn.SnapshotId)
		}
		return byVolume
	}

	// Volumes that cannot be tied to mount points: refused by the
	// pre-script, before pg_backup_start.
	out, err := s.run("--ebs-volumes", s.vols[0]+","+s.vols[1], "backup-start")
	if err == nil || !strings.Contains(out, "backup refused: ebs: find the volumes of "+s.pgdata) {
		t.Fatalf("backup-start with unmappable volumes: %v\n%s", err, out)
	}
	s.neverInBackupMode(t)

	// The DLM document's pre and post scripts.
	before := snapshotInstance() // not consistent with the backup
	out, err = hook("bash", "-c", strings.ReplaceAll(dlm, "{{ command }}", "pre-script"))
	if err != nil {
		t.Fatalf("DLM pre-script: %v\n%s", err, out)
	}
	id := strings.Fields(out)[1]
	taken := snapshotInstance()
	unrelated := testrig.NewVolume(t, s.ec2, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(s.az)})
	if _, err := s.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(unrelated)}); err != nil {
		t.Fatal(err)
	}
	out, err = hook("bash", "-c", strings.ReplaceAll(dlm, "{{ command }}", "post-script"))
	if err != nil || !strings.Contains(out, "backup "+id+" pending") || !strings.Contains(out, taken[s.vols[0]]) {
		t.Fatalf("DLM post-script: %v\n%s", err, out)
	}
	// The holder completes the backup once the snapshots are.
	m := waitManifest(t, s.cluster, id, manifest.StatusComplete, time.Minute)
	p, err := manifest.PayloadOf[manifest.EBSPayload](m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Provider != manifest.ProviderEBS || p.Orchestrator != "dlm" || p.InstanceID != s.instance || len(p.Snapshots) != 2 {
		t.Fatalf("manifest %s payload %s", m.Provider, m.Payload)
	}
	for i, sn := range p.Snapshots {
		if sn.SnapshotID != taken[s.vols[i]] || sn.SnapshotID == before[s.vols[i]] || sn.VolumeID != s.vols[i] || sn.MountPoint != s.mnts[i] ||
			sn.FSType != "ext4" || sn.Type != "gp3" || sn.SizeGiB != 20 || sn.IOPS != 4000 || sn.Device == "" {
			t.Errorf("snapshot %d: %+v, want %s of %s at %s", i, sn, taken[s.vols[i]], s.vols[i], s.mnts[i])
		}
	}
	root := filepath.Join(testrig.WorkDir(t), "restored")
	plan := s.walsnap(t, "--pgdata", root+s.pgdata, "restore", "--dry-run", "--backup", id, "--mount-root", root)
	for _, want := range []string{
		"from the snapshots taken by dlm in " + s.az,
		taken[s.vols[0]] + " (of " + s.vols[0] + ", was /dev/sdf at " + s.mnts[0] + "): gp3, 20 GiB",
		taken[s.vols[1]] + " (of " + s.vols[1] + ", was /dev/sdg at " + s.mnts[1] + "): gp3, 20 GiB",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}

	// The N2W scripts with the snapshot ids CPM passes: one from before
	// the backup is refused, and no backup recorded.
	out, err = hook(filepath.Join(n2w, "before_walsnap.sh"))
	if err != nil {
		t.Fatalf("before_walsnap.sh: %v\n%s", err, out)
	}
	refused := strings.Fields(out)[1]
	taken = snapshotInstance()
	env = append(env, "WALSNAP_SNAPSHOT_IDS="+before[s.vols[0]]+" "+taken[s.vols[1]])
	out, err = hook(filepath.Join(n2w, "after_walsnap.sh"), "1")
	if err == nil || !strings.Contains(out, "snapshot "+before[s.vols[0]]+" of "+s.vols[0]+" started at") || !strings.Contains(out, "outside the backup window") {
		t.Fatalf("after_walsnap.sh with a snapshot from before the backup: %v\n%s", err, out)
	}
	if _, err := s.repo(t).Manifest(ctx, refused); err == nil {
		t.Error("a refused backup has a manifest")
	}
	// And with the right ones.
	out, err = hook(filepath.Join(n2w, "before_walsnap.sh"))
	if err != nil {
		t.Fatalf("before_walsnap.sh: %v\n%s", err, out)
	}
	given := strings.Fields(out)[1]
	taken = snapshotInstance()
	env = append(env, "WALSNAP_SNAPSHOT_IDS="+taken[s.vols[1]]+" "+taken[s.vols[0]])
	if out, err := hook(filepath.Join(n2w, "after_walsnap.sh"), "1"); err != nil {
		t.Fatalf("after_walsnap.sh: %v\n%s", err, out)
	}
	m = waitManifest(t, s.cluster, given, manifest.StatusComplete, time.Minute)
	if p, err := manifest.PayloadOf[manifest.EBSPayload](m); err != nil || p.Orchestrator != "n2w" || len(p.Snapshots) != 2 ||
		p.Snapshots[0].SnapshotID != taken[s.vols[0]] || p.Snapshots[1].SnapshotID != taken[s.vols[1]] {
		t.Errorf("N2W backup payload %s (%v)", m.Payload, err)
	}
}

// dlmScript is the shell script of the shipped DLM SSM document.
func dlmScript(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../scripts/dlm/walsnap-dlm-ssm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		MainSteps []struct {
			Inputs struct {
				RunCommand []string `yaml:"runCommand"`
			} `yaml:"inputs"`
		} `yaml:"mainSteps"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.MainSteps) != 1 || len(doc.MainSteps[0].Inputs.RunCommand) != 1 {
		t.Fatalf("DLM document: %v %+v", err, doc)
	}
	return doc.MainSteps[0].Inputs.RunCommand[0]
}
