package drill

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walsnap/walsnap/internal/drillresult"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/restore"
)

// materialize restores the chosen backup into the drill's scratch
// directory, never where production lives: the files provider unpacks
// into scratch/pgdata (tablespaces in scratch/tablespaces/OID); the
// command provider's command.restore gets WALSNAP_PGDATA scratch/pgdata;
// the ebs provider builds volumes from the snapshots in this instance's
// zone, tagged walsnap:drill, and mounts them under scratch/mnt. The
// recovery configuration is restore's, with archive_mode off.
func (r *run) materialize(ctx context.Context, p *drillresult.Phase) error {
	if err := r.scratchDir(); err != nil {
		return err
	}
	m := r.m
	settings := r.o.Providers
	tsmap := map[string]string{}
	if m.Provider == manifest.ProviderEBS {
		root := filepath.Join(r.scratch, "mnt")
		settings.EBS.MountRoot = root
		settings.EBS.Tags = maps.Clone(settings.EBS.Tags)
		if settings.EBS.Tags == nil {
			settings.EBS.Tags = map[string]string{}
		}
		settings.EBS.Tags[TagDrill] = r.res.ID
		dest, err := restore.EBSDestinations(m, root)
		if err != nil {
			return err
		}
		r.dest = dest
	} else {
		r.dest = restore.Destinations{PGData: filepath.Join(r.scratch, "pgdata"), Tablespaces: map[uint32]string{}}
		for _, ts := range m.Tablespaces {
			r.dest.Tablespaces[ts.OID] = filepath.Join(r.scratch, "tablespaces", strconv.FormatUint(uint64(ts.OID), 10))
		}
	}
	for _, ts := range m.Tablespaces {
		tsmap[ts.Location] = r.dest.Tablespaces[ts.OID]
	}
	res, err := restore.Run(ctx, restore.Options{
		Repo:           r.o.Repo,
		BackupID:       m.ID,
		PGData:         r.dest.PGData,
		Target:         r.o.Target,
		TablespaceMap:  tsmap,
		RestoreCommand: r.o.RestoreCommand,
		Owner:          r.o.Owner,
		NoArchive:      true,
		Providers:      restore.Providers(settings),
		Log:            r.o.Log,
	})
	if err != nil {
		return err
	}
	r.built = res.Built
	if b := res.Built; b != nil && len(b.Steps) > 0 {
		for _, s := range b.Steps {
			p.Steps = append(p.Steps, drillresult.Step{Name: s.Name, Seconds: s.Seconds})
		}
	} else {
		p.Steps = append(p.Steps, drillresult.Step{Name: "unpack", Seconds: res.Materialized.Seconds()})
	}
	p.Steps = append(p.Steps, drillresult.Step{Name: "prepare", Seconds: res.Prepared.Seconds()})
	switch {
	case m.Provider == manifest.ProviderEBS:
		p.Detail = fmt.Sprintf("%d volumes (%s) created from the snapshots, attached to %s, mounted under %s",
			len(res.Built.Volumes), strings.Join(res.Built.Volumes, ", "), res.Built.Instance, filepath.Join(r.scratch, "mnt"))
	case m.Provider == manifest.ProviderCommand:
		p.Detail = "command.restore put the data at " + r.dest.PGData
	default:
		p.Detail = fmt.Sprintf("unpacked %s into %s", manifest.Human(m.BytesIn), r.dest.PGData)
	}
	return nil
}
