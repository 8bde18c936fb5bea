package manifest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Provider names how a backup's data was captured; it decides how the
// backup is restored, verified and expired. The names are part of the
// manifest format.
type Provider string

// The providers. Each is declared here once, with its payload type below
// and its entry in providers.
const (
	// ProviderFiles copies the data directory and tablespaces into the
	// repository as compressed tar parts (the built-in default).
	ProviderFiles Provider = "files"
	// ProviderEBS snapshots the EBS volumes that hold the cluster.
	ProviderEBS Provider = "ebs"
	// ProviderCommand runs the operator's own snapshot command.
	ProviderCommand Provider = "command"
	// ProviderExternal records snapshots an external orchestrator took
	// between backup-start and backup-stop.
	ProviderExternal Provider = "external"
)

// ProviderInfo describes a provider.
type ProviderInfo struct {
	Name Provider
	// Summary is one line for help texts.
	Summary string
	// Configurable providers may be chosen with backup.provider; the
	// others are named by the command that takes the backup.
	Configurable bool
	// StoresData is true when the payload lives in the repository (under
	// the backup's prefix), so deleting the backup deletes it.
	StoresData bool
	// InPlace is true when the data is put back by someone else before
	// walsnap restore runs: the destination then holds it already.
	InPlace bool
	// newPayload returns a pointer to a zero payload of the provider's type.
	newPayload func() any
}

var providers = []ProviderInfo{
	{Name: ProviderFiles, Summary: "copy the data directory and tablespaces into the repository", Configurable: true, StoresData: true,
		newPayload: func() any { return new(FilesPayload) }},
	{Name: ProviderEBS, Summary: "snapshot the EBS volumes that hold the cluster", Configurable: true,
		newPayload: func() any { return new(EBSPayload) }},
	{Name: ProviderCommand, Summary: "run command.snapshot, which snapshots the volumes and prints references", Configurable: true,
		newPayload: func() any { return new(CommandPayload) }},
	{Name: ProviderExternal, Summary: "snapshots taken by an external orchestrator between backup-start and backup-stop", InPlace: true,
		newPayload: func() any { return new(ExternalPayload) }},
}

// LookupProvider returns what is known of the provider name.
func LookupProvider(name Provider) (ProviderInfo, error) {
	for _, p := range providers {
		if p.Name == name {
			return p, nil
		}
	}
	return ProviderInfo{}, fmt.Errorf("unknown backup provider %q (this walsnap knows %s)", name, providerList(func(ProviderInfo) bool { return true }))
}

// ParseConfigurable checks a backup.provider setting.
func ParseConfigurable(name string) (Provider, error) {
	p, err := LookupProvider(Provider(name))
	if err != nil || !p.Configurable {
		return "", fmt.Errorf("backup.provider %q: want %s", name, providerList(func(p ProviderInfo) bool { return p.Configurable }))
	}
	return p.Name, nil
}

// Configurable lists the providers backup.provider may name.
func Configurable() []Provider {
	var out []Provider
	for _, p := range providers {
		if p.Configurable {
			out = append(out, p.Name)
		}
	}
	return out
}

func providerList(keep func(ProviderInfo) bool) string {
	var names []string
	for _, p := range providers {
		if keep(p) {
			names = append(names, string(p.Name))
		}
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// DecodePayload decodes the manifest's payload into its provider's type
// and returns a pointer to it (*FilesPayload, *EBSPayload, ...).
func (m *Manifest) DecodePayload() (any, error) {
	info, err := LookupProvider(m.Provider)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	p := info.newPayload()
	if err := json.Unmarshal(m.Payload, p); err != nil {
		return nil, fmt.Errorf("backup %s: %s payload: %w", m.ID, m.Provider, err)
	}
	return p, nil
}

// PayloadOf decodes the manifest's payload as T, which must be its
// provider's payload type.
func PayloadOf[T any](m *Manifest) (*T, error) {
	p, err := m.DecodePayload()
	if err != nil {
		return nil, err
	}
	t, ok := p.(*T)
	if !ok {
		var zero T
		return nil, fmt.Errorf("backup %s: a %s backup has no %T payload", m.ID, m.Provider, zero)
	}
	return t, nil
}

// SetPayload stores p, which must be the provider's payload type (a value
// or a pointer to one), as the manifest's payload.
func (m *Manifest) SetPayload(p any) error {
	info, err := LookupProvider(m.Provider)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("%T", info.newPayload())
	if got := fmt.Sprintf("%T", p); got != want && "*"+got != want {
		return fmt.Errorf("backup %s: %s payload must be %s, not %s", m.ID, m.Provider, want, got)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	m.Payload = data
	return nil
}

// FilesPayload is the files provider's payload: the parts it stored.
type FilesPayload struct {
	Parts []Part `json:"parts"`
	Files int    `json:"files"`
}

// Part is one stored, compressed tar stream of a files backup.
type Part struct {
	Key        string `json:"key"`
	Tablespace uint32 `json:"tablespace"`
	Files      int    `json:"files"`       // regular-file entries (pieces of split files count each)
	RawSize    int64  `json:"raw_size"`    // tar bytes
	StoredSize int64  `json:"stored_size"` // compressed (and encrypted) bytes in the repository
	SHA256     string `json:"sha256"`      // of the raw tar bytes
	Codec      string `json:"codec"`
	// Encryption is "age" for a part stored encrypted (compressed, then
	// encrypted); StoredSHA256 is then the SHA-256 of its stored bytes,
	// which verify checks without the key.
	Encryption   string `json:"encryption,omitempty"`
	StoredSHA256 string `json:"stored_sha256,omitempty"`
}

// EBSPayload is the ebs provider's payload: the snapshots, and enough of
// the volumes and filesystems to rebuild and mount them.
type EBSPayload struct {
	InstanceID string `json:"instance_id"`
	AZ         string `json:"availability_zone"`
	// PGData is the data directory and Tablespaces each tablespace's
	// location (by OID), with symbolic links resolved: their paths on the
	// volumes' filesystems.
	PGData      string            `json:"pgdata"`
	Tablespaces map[uint32]string `json:"tablespaces,omitempty"`
	Snapshots   []EBSSnapshot     `json:"snapshots"`
	// Orchestrator names who took the snapshots when walsnap did not: an
	// external orchestrator (n2w, dlm, ...) between backup-start and
	// backup-stop. Its snapshots are its own to expire.
	Orchestrator string `json:"orchestrator,omitempty"`
}

// EBSSnapshot records one snapshot and the volume it was taken of,
// enough to build, attach and mount an equivalent volume at restore time.
type EBSSnapshot struct {
	SnapshotID string    `json:"snapshot_id"`
	StartTime  time.Time `json:"start_time"`
	VolumeID   string    `json:"volume_id"`
	Device     string    `json:"device"` // attachment name, e.g. /dev/sdf
	// MountPoint, FSType, MountOptions and Paths are empty for a volume
	// listed in ebs.volumes without a mount point that holds no
	// PostgreSQL directory (or, in backups of earlier walsnap versions,
	// that discovery did not map).
	MountPoint   string   `json:"mount_point,omitempty"`
	FSType       string   `json:"fs_type,omitempty"`
	MountOptions string   `json:"mount_options,omitempty"`
	Paths        []string `json:"paths,omitempty"` // the PostgreSQL directories on it
	Frozen       bool     `json:"frozen"`          // its filesystem was frozen for the snapshot
	SizeGiB      int32    `json:"size_gib"`
	Type         string   `json:"volume_type"`
	IOPS         int32    `json:"iops,omitempty"`
	Throughput   int32    `json:"throughput,omitempty"` // MiB/s
	AZ           string   `json:"availability_zone"`
	Encrypted    bool     `json:"encrypted"`
	KMSKeyID     string   `json:"kms_key_id,omitempty"`
}

// CommandPayload is the command provider's payload.
type CommandPayload struct {
	Snapshots []string `json:"snapshots"` // the lines command.snapshot printed, in order
	Command   string   `json:"command"`   // the command that printed them
}

// ExternalPayload is the payload of a backup whose data an external
// orchestrator captured between backup-start and backup-stop.
type ExternalPayload struct {
	Orchestrator string   `json:"orchestrator,omitempty"`
	Snapshots    []string `json:"snapshots"` // the orchestrator's snapshot ids, as given to backup-stop
}
