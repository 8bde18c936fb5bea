#!/usr/bin/env bash
# N2W (CPM) "after" script: runs once CPM has started the snapshots (their
# point in time is fixed then). CPM passes 1 as the first argument when the
# snapshots were taken, 0 when they failed. On success, walsnap stops the
# backup, records the snapshots, waits for the WAL that makes it consistent
# to be archived and writes the manifest; on failure it abandons the
# backup. Snapshot ids, when your CPM version can pass them, go in
# WALSNAP_SNAPSHOT_IDS (space-separated); without them, and with
# backup.provider: ebs in walsnap's config, walsnap finds the snapshots of
# the PostgreSQL volumes taken since the before script.
set -euo pipefail
walsnap=${WALSNAP:-/usr/local/bin/walsnap}
sudo=${WALSNAP_SUDO-sudo} # set WALSNAP_SUDO= when the scripts already run as root
run() { if [ -n "${WALSNAP_SSH:-}" ]; then ssh -o BatchMode=yes "$WALSNAP_SSH" $sudo "$@"; else $sudo "$@"; fi; }
if [ "${1:-1}" != 1 ]; then
	run "$walsnap" backup-stop --abort
	exit 1
fi
args=(backup-stop --orchestrator n2w)
for id in ${WALSNAP_SNAPSHOT_IDS:-}; do args+=(--snapshot-id "$id"); done
run "$walsnap" "${args[@]}"
