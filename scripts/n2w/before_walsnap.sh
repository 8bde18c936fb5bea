#!/usr/bin/env bash
# N2W (CPM) "before" script: put PostgreSQL in backup mode before CPM takes
# the EBS snapshots. Rename to before_<policy-name> in CPM's script
# directory. CPM runs it on the CPM server; it reaches the database host
# over SSH (WALSNAP_SSH, e.g. "ec2-user@10.0.1.12"), or runs walsnap locally
# when WALSNAP_SSH is empty. A non-zero exit makes CPM fail the backup
# instead of taking snapshots that are not application-consistent.
set -euo pipefail
walsnap=${WALSNAP:-/usr/local/bin/walsnap}
timeout=${WALSNAP_HOLD_TIMEOUT:-1h}
sudo=${WALSNAP_SUDO-sudo} # set WALSNAP_SUDO= when the scripts already run as root
run() { if [ -n "${WALSNAP_SSH:-}" ]; then ssh -o BatchMode=yes "$WALSNAP_SSH" $sudo "$@"; else $sudo "$@"; fi; }
run "$walsnap" backup-start --fast --timeout "$timeout"
