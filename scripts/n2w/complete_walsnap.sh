#!/usr/bin/env bash
# N2W (CPM) "complete" script: runs when CPM's backup has fully completed.
# walsnap has nothing left to do by then (the after script wrote the
# manifest); this lists the repository's backups for CPM's log.
set -euo pipefail
walsnap=${WALSNAP:-/usr/local/bin/walsnap}
sudo=${WALSNAP_SUDO-sudo} # set WALSNAP_SUDO= when the scripts already run as root
run() { if [ -n "${WALSNAP_SSH:-}" ]; then ssh -o BatchMode=yes "$WALSNAP_SSH" $sudo "$@"; else $sudo "$@"; fi; }
run "$walsnap" backup-list
