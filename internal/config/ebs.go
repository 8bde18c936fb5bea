package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// EBSVolume is one entry of ebs.volumes: a volume to snapshot and, for a
// host where walsnap cannot map the PostgreSQL directories to volumes
// itself, the mount point of the volume's filesystem.
type EBSVolume struct {
	ID    string `yaml:"id" json:"id"`
	Mount string `yaml:"mount,omitempty" json:"mount,omitempty"`
}

// EBSVolumes is ebs.volumes. In YAML each entry is a volume id or
// {id: vol-..., mount: /srv/pg}; in the environment and on the command
// line (and in the JSON handed to a helper process) the entries are
// separated by commas, each an id or id=mount:
// "vol-0abc...=/srv/pg,vol-0def...".
type EBSVolumes []EBSVolume

// volumeID is the form of an EBS volume id: vol- and 17 (or, for old
// volumes, 8) lowercase hex digits.
var volumeID = regexp.MustCompile(`^vol-([0-9a-f]{17}|[0-9a-f]{8})$`)

// check checks an entry's form: a volume id, and an absolute mount point.
func (v *EBSVolume) check() error {
	if !volumeID.MatchString(v.ID) {
		return fmt.Errorf("ebs.volumes: %q is not a volume id (vol- and 17 hex digits)", v.ID)
	}
	if v.Mount != "" {
		if !filepath.IsAbs(v.Mount) {
			return fmt.Errorf("ebs.volumes: %s: mount point %q is not an absolute path", v.ID, v.Mount)
		}
		v.Mount = filepath.Clean(v.Mount)
	}
	return nil
}

// UnmarshalYAML reads an entry: a volume id, or a mapping with id and
// mount.
func (v *EBSVolume) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*v = EBSVolume{ID: n.Value}
	case yaml.MappingNode:
		// Unknown keys are errors here too (LoadFile's KnownFields does
		// not reach into a custom unmarshaler).
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i].Value; k != "id" && k != "mount" {
				return fmt.Errorf("ebs.volumes: line %d: unknown key %q (want id and mount)", n.Content[i].Line, k)
			}
		}
		type plain EBSVolume // without this method
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*v = EBSVolume(p)
	default:
		return fmt.Errorf("ebs.volumes: line %d: want a volume id or {id: vol-..., mount: /path}", n.Line)
	}
	return v.check()
}

// UnmarshalText reads the comma-separated form, id or id=mount each.
func (vs *EBSVolumes) UnmarshalText(b []byte) error {
	var out EBSVolumes
	for _, item := range strings.Split(string(b), ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		id, mount, _ := strings.Cut(item, "=")
		v := EBSVolume{ID: strings.TrimSpace(id), Mount: strings.TrimSpace(mount)}
		if err := v.check(); err != nil {
			return err
		}
		out = append(out, v)
	}
	*vs = out
	return nil
}

// MarshalText writes the comma-separated form.
func (vs EBSVolumes) MarshalText() ([]byte, error) {
	items := make([]string, len(vs))
	for i, v := range vs {
		items[i] = v.ID
		if v.Mount != "" {
			items[i] += "=" + v.Mount
		}
	}
	return []byte(strings.Join(items, ",")), nil
}

// check refuses a volume, or a mount point, listed twice (each entry's
// form is checked as it is read).
func (vs EBSVolumes) check() error {
	for i, v := range vs {
		if slices.ContainsFunc(vs[:i], func(o EBSVolume) bool { return o.ID == v.ID }) {
			return fmt.Errorf("ebs.volumes: %s is listed twice", v.ID)
		}
		if v.Mount != "" && slices.ContainsFunc(vs[:i], func(o EBSVolume) bool { return o.Mount == v.Mount }) {
			return fmt.Errorf("ebs.volumes: two volumes are mounted at %s", v.Mount)
		}
	}
	return nil
}
