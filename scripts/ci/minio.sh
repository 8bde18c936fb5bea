#!/usr/bin/env bash
# Starts or stops a throwaway MinIO for the integration tests.
#
#   minio.sh start [DIR]   start MinIO on a free 127.0.0.1 port, data in DIR/data,
#                          and write DIR/env (WALSNAP_TEST_S3_* for testrig.S3)
#   minio.sh stop [DIR]    stop it and remove DIR
#
# DIR defaults to ${TMPDIR:-/tmp}/walsnap-minio. Use it by hand with:
#   scripts/ci/minio.sh start && set -a && . /tmp/walsnap-minio/env && set +a
set -euo pipefail

cmd=${1:-}
dir=${2:-${TMPDIR:-/tmp}/walsnap-minio}

die() { echo "minio.sh: $*" >&2; exit 1; }

minio_bin() {
	if command -v minio >/dev/null; then
		command -v minio
		return
	fi
	local gobin
	gobin=$(go env GOPATH 2>/dev/null)/bin/minio
	[ -x "$gobin" ] || die "no minio binary on PATH or at $gobin (run scripts/ci/install.sh)"
	echo "$gobin"
}

# port_in_use PORT: true when something accepts connections on it.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	local port
	while :; do
		port=$((20000 + RANDOM % 30000))
		port_in_use "$port" || { echo "$port"; return; }
	done
}

alive() { [ -f "$dir/minio.pid" ] && kill -0 "$(cat "$dir/minio.pid")" 2>/dev/null; }

start() {
	if alive; then
		echo "minio.sh: already running ($dir/env)"
		return
	fi
	local bin user=walsnaptest password kms_secret
	bin=$(minio_bin)
	password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
	kms_secret=$(head -c 32 /dev/urandom | base64)
	mkdir -p "$dir/data"
	for attempt in 1 2 3 4 5; do
		local port console pid
		port=$(free_port)
		console=$(free_port)
		MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$password \
			MINIO_KMS_SECRET_KEY="walsnap-test-key:$kms_secret" \
			MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
			setsid "$bin" server --quiet --address "127.0.0.1:$port" \
			--console-address "127.0.0.1:$console" "$dir/data" \
			</dev/null >"$dir/minio.log" 2>&1 &
		pid=$!
		echo "$pid" >"$dir/minio.pid"
		for _ in $(seq 1 300); do
			if ! kill -0 "$pid" 2>/dev/null; then
				break
			fi
			if curl -fsS -o /dev/null "http://127.0.0.1:$port/minio/health/live" 2>/dev/null; then
				cat >"$dir/env" <<-ENV
					WALSNAP_TEST_S3_ENDPOINT=http://127.0.0.1:$port
					WALSNAP_TEST_S3_ACCESS_KEY=$user
					WALSNAP_TEST_S3_SECRET_KEY=$password
					WALSNAP_TEST_S3_REGION=us-east-1
					WALSNAP_TEST_S3_KMS_KEY_ID=walsnap-test-key
				ENV
				echo "minio.sh: MinIO (pid $pid) on 127.0.0.1:$port, env in $dir/env"
				return
			fi
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		echo "minio.sh: attempt $attempt on port $port failed:" >&2
		tail -n 20 "$dir/minio.log" >&2 || true
	done
	rm -f "$dir/minio.pid"
	die "could not start MinIO ($bin)"
}

stop() {
	[ -e "$dir" ] || return 0
	[ -f "$dir/minio.pid" ] || [ -f "$dir/env" ] || [ -d "$dir/data" ] ||
		die "$dir does not look like a minio.sh directory; not removing it"
	if alive; then
		local pid
		pid=$(cat "$dir/minio.pid")
		kill "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop [DIR]" ;;
esac
