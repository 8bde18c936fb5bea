package ebs

import "time"

// Payload is the manifest payload of an ebs backup: what the basebackup
// provider records and the restore provider reads. Its JSON names are
// part of the manifest format.
type Payload struct {
	InstanceID string `json:"instance_id"`
	AZ         string `json:"availability_zone"`
	// PGData is the data directory and Tablespaces each tablespace's
	// location (by OID), with symbolic links resolved: their paths on the
	// volumes' filesystems.
	PGData      string            `json:"pgdata"`
	Tablespaces map[uint32]string `json:"tablespaces,omitempty"`
	Snapshots   []SnapshotRecord  `json:"snapshots"`
}

// SnapshotRecord records one snapshot and the volume it was taken of,
// enough to build, attach and mount an equivalent volume at restore time.
type SnapshotRecord struct {
	SnapshotID string    `json:"snapshot_id"`
	StartTime  time.Time `json:"start_time"`
	VolumeID   string    `json:"volume_id"`
	Device     string    `json:"device"` // attachment name, e.g. /dev/sdf
	// MountPoint, FSType, MountOptions and Paths are empty for a volume
	// listed in ebs.volumes that discovery did not map.
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
