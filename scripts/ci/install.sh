#!/usr/bin/env bash
# Installs what walsnap's tests need on a Debian 12 machine (run as root,
# idempotent): PostgreSQL 15 and tools from apt, MinIO via go install, and the
# other PostgreSQL majors from npm (scripts/ci/install-pg.sh).
set -euo pipefail

cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH

minio_version=v0.0.0-20260212201848-7aac2a2c5b7c
# postgresql-15 provides postgresql-contrib-15 on Debian 12.
apt_packages=(postgresql-15 postgresql-client-15 pgbackrest xfsprogs e2fsprogs util-linux mount openssl curl)

step() { echo "install: $*"; }
timed() {
	local start=$SECONDS
	"$@"
	step "$* done in $((SECONDS - start))s"
}

[ "$(id -u)" = 0 ] || { echo "install: must run as root" >&2; exit 1; }

apt_install() {
	local missing=()
	for p in "${apt_packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		step "apt packages already installed"
		return
	fi
	step "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

minio_install() {
	local bin
	bin=$(go env GOPATH)/bin/minio
	if [ -x "$bin" ]; then
		step "minio already at $bin"
		return
	fi
	# Another go install of minio may be under way (e.g. started by hand):
	# wait for it rather than building twice.
	local waited=0
	while pgrep -f "go install github.com/minio/minio@" >/dev/null && [ ! -x "$bin" ] && [ "$waited" -lt 1200 ]; do
		[ "$waited" = 0 ] && step "waiting for a running go install of minio"
		sleep 5
		waited=$((waited + 5))
	done
	if [ -x "$bin" ]; then
		step "minio appeared at $bin"
		return
	fi
	step "go install github.com/minio/minio@$minio_version (takes minutes)"
	GOBIN=$(go env GOPATH)/bin go install "github.com/minio/minio@$minio_version"
}

timed apt_install
timed minio_install
timed bash scripts/ci/install-pg.sh

# moto (EC2/EBS API for the ebs tests) must come with the machine's Python:
# PyPI is not reachable here, so say so plainly if it is missing.
moto_check() {
	local p
	p=$(PATH=$PATH:${PYENV_ROOT:-$HOME/.pyenv}/shims:/root/.pyenv/shims command -v moto_server || true)
	if [ -z "$p" ]; then
		echo "install: moto_server not found (DESIGN.md: moto 5.2.1 in the machine's Python); the ebs tests will fail under WALSNAP_RIG=1" >&2
		return 1
	fi
	step "moto_server at $p"
}
timed moto_check
