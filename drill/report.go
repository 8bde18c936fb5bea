package drill

import "path/filepath"

// summary prints the verdict: the recovery time the backup needs on this
// host, or why the drill failed.
func (r *run) summary() {
	res := r.res
	if res.OK {
		r.printf("drill passed: backup %s restores and recovers to %s in %s on this host (drill %s, total %s)\n",
			res.Backup.ID, r.o.Target, seconds(res.RecoverySeconds), res.ID, seconds(res.Seconds))
		return
	}
	r.printf("drill FAILED (drill %s, backup %s, total %s): %s\n", res.ID, orNone(res.Backup.ID), seconds(res.Seconds), res.Error)
}

func orNone(s string) string {
	if s == "" {
		return "none chosen"
	}
	return s
}

// keepNotes says how to reach the copy that --keep left, and how to
// remove it.
func (r *run) keepNotes() {
	owner := r.o.Owner
	if owner == "" {
		owner = "postgres"
	}
	if r.res.Reached != nil {
		r.printf("kept: the promoted copy runs on the socket in %s, port %d, without TCP; connect with\n  psql -h %s -p %d -U %s %s\n",
			r.server.sockDir, r.server.port, r.server.sockDir, r.server.port, r.o.User, r.o.CheckDatabase)
	} else {
		r.printf("kept: what the drill built is in %s (server log %s)\n", r.scratch, filepath.Join(r.scratch, "server.log"))
	}
	r.printf("to remove it, as root:\n")
	if r.started {
		r.printf("  runuser -u %s -- %s -D %s -m fast stop\n", owner, r.pgctl, r.dest.PGData)
	}
	if b := r.built; b != nil {
		for i := len(b.Mounts) - 1; i >= 0; i-- {
			r.printf("  umount %s\n", b.Mounts[i])
		}
		for _, v := range b.Volumes {
			r.printf("  aws ec2 detach-volume --volume-id %s && aws ec2 wait volume-available --volume-ids %s && aws ec2 delete-volume --volume-id %s\n", v, v, v)
		}
		if b.Cleanup != "" {
			r.printf("  # command.cleanup, with command.restore's environment (WALSNAP_BACKUP_ID=%s, WALSNAP_PGDATA=%s, ...):\n  %s\n", r.m.ID, r.dest.PGData, b.Cleanup)
		}
	}
	r.printf("  rm -rf %s", r.scratch)
	if r.server.sockDir != "" {
		r.printf(" %s", r.server.sockDir)
	}
	r.printf("\n")
}
