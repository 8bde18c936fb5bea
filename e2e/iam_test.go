package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestIAMPolicyCoversCalls: scripts/iam/walsnap-policy.json allows the
// IAM action of every S3 call in internal/storage/s3 and every EC2 call in
// internal/ebs, so that the least-privilege policy the README points to
// keeps up with the code.
func TestIAMPolicyCoversCalls(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "scripts", "iam", "walsnap-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Statement []struct {
			Effect string
			Action any // a string or a list
		}
	}
	if err := json.Unmarshal(data, &policy); err != nil {
		t.Fatalf("walsnap-policy.json: %v", err)
	}
	allowed := map[string]bool{}
	for _, s := range policy.Statement {
		if s.Effect != "Allow" {
			continue
		}
		switch a := s.Action.(type) {
		case string:
			allowed[a] = true
		case []any:
			for _, x := range a {
				allowed[x.(string)] = true
			}
		}
	}

	// The IAM action of each S3 API call walsnap makes.
	s3Actions := map[string]string{"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
		"DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject", "ListObjectsV2": "s3:ListBucket", "HeadBucket": "s3:ListBucket"}
	calls := func(dir string, patterns ...string) []string {
		var found []string
		files, _ := filepath.Glob(filepath.Join("..", dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range patterns {
				for _, m := range regexp.MustCompile(p).FindAllStringSubmatch(string(src), -1) {
					found = append(found, m[1])
				}
			}
		}
		slices.Sort(found)
		return slices.Compact(found)
	}
	s3Calls := calls("internal/storage/s3", `\.client\.([A-Z]\w+)\(`, `s3\.New(\w+)Paginator\(`)
	if len(s3Calls) < 5 {
		t.Fatalf("found only S3 calls %v: the scan is broken", s3Calls)
	}
	for _, c := range s3Calls {
		action, ok := s3Actions[c]
		if !ok {
			t.Errorf("S3 call %s: this test does not know its IAM action; add it here and to the policy", c)
			continue
		}
		if !allowed[action] {
			t.Errorf("S3 call %s needs %s, which walsnap-policy.json does not allow", c, action)
		}
	}
	ec2Calls := calls("internal/ebs", `\.ec2\.([A-Z]\w+)\(`, `ec2\.New(\w+)Paginator\(`)
	for _, w := range calls("internal/ebs", `ec2\.New(\w+)Waiter\(`) {
		// A waiter polls the Describe call of its resource.
		for _, r := range []string{"Volume", "Snapshot", "Instance"} {
			if strings.HasPrefix(w, r) {
				ec2Calls = append(ec2Calls, "Describe"+r+"s")
			}
		}
	}
	if len(ec2Calls) < 5 {
		t.Fatalf("found only EC2 calls %v: the scan is broken", ec2Calls)
	}
	for _, c := range ec2Calls {
		if !allowed["ec2:"+c] {
			t.Errorf("EC2 call %s needs ec2:%s, which walsnap-policy.json does not allow", c, c)
		}
	}
	t.Logf("S3 calls %v, EC2 calls %v", s3Calls, ec2Calls)
}
