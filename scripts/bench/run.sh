#!/usr/bin/env bash
# walsnap WAL archive benchmark (make bench): real pgbench WAL from a
# PostgreSQL 15 cluster, pushed and fetched by walsnap one call per segment
# as PostgreSQL's archiver and recovery call it, against the same MinIO's raw
# PUT/GET ceiling and against pgBackRest on a TLS MinIO. Prints one table and
# the targets, and writes them to scripts/bench/out/results.md (run logs in
# out/logs/). Run as root on the test rig (make setup); PostgreSQL and
# pgBackRest run as postgres.
#
#   SEGMENTS=64   WAL segments (16 MiB) in the corpus
#   REPEAT=3      passes over all runs; the table shows each run's median
#   KEEP=1        keep the work directory (corpus, cluster, MinIO data)
#   QUIET_WAIT=90 seconds, in all, the bench may wait for other jobs on the
#                 machine to calm down before a run (each row notes their CPU)
#   ONLY=regex    only the runs whose row id matches (e.g. ONLY=push-single);
#                 targets without their rows say so
set -euo pipefail

cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
root=$PWD
segments=${SEGMENTS:-64}
repeat=${REPEAT:-3}
keep=${KEEP:-0}
quiet_budget=${QUIET_WAIT:-90}
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
out=$root/scripts/bench/out

say() { printf '\033[1mbench:\033[0m %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and pgBackRest run as postgres)"
if ! [[ $segments =~ ^[0-9]+$ ]] || [ "$segments" -lt 8 ]; then die "SEGMENTS must be a number >= 8"; fi
[[ $repeat =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a number >= 1"
[[ $quiet_budget =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be a number of seconds"
[ -x "$pgbin/initdb" ] || die "PostgreSQL 15 not found in $pgbin (make setup)"
id postgres >/dev/null 2>&1 || die "no postgres user (make setup)"
for tool in pgbackrest openssl curl flock; do
	command -v "$tool" >/dev/null || die "$tool not found (make setup)"
done
minio=$(command -v minio || echo "$(go env GOPATH)/bin/minio")
[ -x "$minio" ] || die "no minio binary (make setup)"

work=$(mktemp -d "${TMPDIR:-/tmp}/walsnap-bench.XXXXXX")
chmod 0755 "$work"
export WALBENCH_MARK=$work # tells the bench's processes from other jobs
pgdata=$work/pg/data
corpus=$work/corpus
tls=$work/minio-tls
pgb=$work/pgbackrest

cleanup() {
	local status=$?
	set +e
	if [ -f "$pgdata/postmaster.pid" ]; then
		as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1
	fi
	# Background workers of the commands under test (walsnap's prefetcher,
	# pgBackRest's async processes) finish on their own; wait for their locks.
	for f in "$pgb"/lock/*.lock "$work"/runs/*/*/pg_wal/.walsnap/prefetch/.lock "$work"/runs/*/*/pg_wal/.walsnap/archiver.lock; do
		[ -e "$f" ] && flock -s -w 30 "$f" true
	done
	if [ -f "$tls/minio.pid" ]; then
		local pid
		pid=$(cat "$tls/minio.pid")
		kill "$pid" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null
	fi
	bash scripts/ci/minio.sh stop "$work/minio-http" >/dev/null 2>&1
	if [ "$keep" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out"
mkdir -p "$out/logs"
results=$out/results.jsonl
meta=$work/meta.txt

say "building walsnap, walsnap-pg and the driver into $work/bin"
go build -o "$work/bin/walsnap" ./cmd/walsnap
go build -o "$work/bin/walsnap-pg" ./cmd/walsnap-pg
go build -o "$work/bin/walbench" ./scripts/bench/walbench
walsnap=$work/bin/walsnap
walsnap_pg=$work/bin/walsnap-pg
wb=$work/bin/walbench

# --- S3 servers -------------------------------------------------------------

say "starting MinIO (plain HTTP)"
bash scripts/ci/minio.sh start "$work/minio-http" >/dev/null
# shellcheck disable=SC1091
. "$work/minio-http/env"
http_ep=$WALSNAP_TEST_S3_ENDPOINT
http_pid=$(cat "$work/minio-http/minio.pid")
export AWS_ACCESS_KEY_ID=$WALSNAP_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$WALSNAP_TEST_S3_SECRET_KEY
region=$WALSNAP_TEST_S3_REGION

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "starting MinIO with TLS (self-signed certificate for IP 127.0.0.1)"
mkdir -p "$tls/certs" "$tls/data"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 \
	-keyout "$tls/certs/private.key" -out "$tls/certs/public.crt" 2>"$tls/openssl.log" ||
	die "openssl failed: $(cat "$tls/openssl.log")"
ca=$tls/certs/public.crt
for attempt in 1 2 3; do
	tls_port=$(free_port)
	MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
		MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
		setsid "$minio" server --quiet --certs-dir "$tls/certs" --address "127.0.0.1:$tls_port" \
		--console-address "127.0.0.1:$(free_port)" "$tls/data" </dev/null >"$tls/minio.log" 2>&1 &
	echo $! >"$tls/minio.pid"
	for _ in $(seq 1 300); do
		curl -fsS --cacert "$ca" -o /dev/null "https://127.0.0.1:$tls_port/minio/health/live" 2>/dev/null && break 2
		kill -0 "$(cat "$tls/minio.pid")" 2>/dev/null || break
		sleep 0.1
	done
	kill "$(cat "$tls/minio.pid")" 2>/dev/null || true
	rm -f "$tls/minio.pid"
	echo "bench: TLS MinIO attempt $attempt failed: $(tail -n 5 "$tls/minio.log")" >&2
done
[ -f "$tls/minio.pid" ] || die "could not start the TLS MinIO"
tls_ep=https://127.0.0.1:$tls_port
tls_pid=$(cat "$tls/minio.pid")

"$wb" mkbucket -endpoint "$http_ep" walsnap raw
"$wb" mkbucket -endpoint "$tls_ep" -ca "$ca" walsnap raw pgbackrest

# --- corpus -----------------------------------------------------------------

say "creating the corpus: PostgreSQL 15 + pgbench until >= $segments archived segments"
mkdir -p "$work/pg" "$corpus" "$pgb/lock" "$pgb/log" "$pgb/spool"
chown postgres:postgres "$work/pg" "$corpus"
chown -R postgres:postgres "$pgb"
as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U postgres --no-sync >"$work/pg/initdb.log"
pg_port=$(free_port)
cat >>"$pgdata/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = ''
unix_socket_directories = '$work/pg'
archive_mode = on
archive_command = 'cp %p $corpus/%f'
# Speed only: the WAL content (full-page writes included) does not change.
fsync = off
synchronous_commit = off
checkpoint_timeout = 30s
CONF
as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$work/pg/server.log" -w start >/dev/null
psql() { as_pg "$pgbin/psql" -X -q -h "$work/pg" -p "$pg_port" -d postgres -v ON_ERROR_STOP=1 -At "$@"; }
pgbench() { as_pg "$pgbin/pgbench" -h "$work/pg" -p "$pg_port" "$@" postgres; }
count() { find "$corpus" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' | wc -l; }

scale=$((segments * 5 / 8))
start=$SECONDS
pgbench -i -q -s "$scale" >"$work/pg/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -n 5 "$work/pg/pgbench-init.log")"
tps=()
for round in $(seq 1 100); do
	line=$(pgbench -n -c 4 -j 2 -T 10 2>&1 | grep '^tps' || true)
	tps+=("$(awk '{print int($3)}' <<<"$line")")
	[ "$(count)" -ge "$segments" ] && break
	[ "$round" -lt 100 ] || die "only $(count) segments after 100 pgbench rounds"
done
last=$(psql -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
psql -c "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 1 600); do
	archived=$(psql -c "SELECT coalesce(last_archived_wal >= '$last', false) FROM pg_stat_archiver")
	[ "$archived" = t ] && break
	sleep 0.1
done
[ "$archived" = t ] || die "WAL up to $last not archived after 60 s (see $work/pg/server.log)"
say "corpus: $(count) segments in $((SECONDS - start)) s (pgbench -i -s $scale, then ${#tps[@]} × 10 s of pgbench -c 4 at ${tps[*]} tps)"

# stanza-create connects to the running cluster ("unable to find primary
# cluster" otherwise), so every pgBackRest repository is created now.
cat >"$pgb/pgbackrest.conf" <<CONF
[global]
repo1-type=s3
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$tls_port
repo1-s3-bucket=pgbackrest
repo1-s3-region=$region
repo1-s3-key=$AWS_ACCESS_KEY_ID
repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY
repo1-s3-uri-style=path
repo1-storage-verify-tls=n
compress-type=zst
compress-level=1
lock-path=$pgb/lock
log-path=$pgb/log
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$pgdata
pg1-socket-path=$work/pg
pg1-port=$pg_port
CONF
chown postgres:postgres "$pgb/pgbackrest.conf"
chmod 0600 "$pgb/pgbackrest.conf"
pgb() { as_pg pgbackrest --config="$pgb/pgbackrest.conf" --stanza=bench "$@"; }
for rep in $(seq 1 "$repeat"); do
	for kind in push-sync push-async; do
		pgb --repo1-path="/r$rep-$kind" stanza-create
	done
done
as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null

read -r first_seg last_seg < <(find "$corpus" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' -printf '%f\n' |
	sort | tail -n "$segments" | sed -n '1p;$p' | paste -sd' ')
{
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/^Mem/{print $2}') GiB RAM, kernel $(uname -r); other jobs share the machine (\"other jobs\" per row)"
	echo "corpus: $segments × 16 MiB real WAL segments $first_seg…$last_seg (PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), pgbench -i -s $scale then pgbench -c 4 -j 2 at ${tps[*]} tps, full_page_writes on, checkpoint_timeout 30s)"
	echo "servers: MinIO $(go version -m "$minio" | awk '$1=="mod"{print $3}'), single drive on local disk, one plain HTTP and one TLS (self-signed), both on 127.0.0.1"
	echo "walsnap: this tree ($(git -C "$root" describe --always --dirty 2>/dev/null || echo "no git")), defaults (compression zstd:1, push.concurrency 4, push.ahead 16, fetch.prefetch 8, fetch.concurrency 4); one fresh process per segment via /bin/sh -c (for archive calls a shell titled like PostgreSQL's archiver, \"postgres: archiver\", as walsnap lets its archiver linger only for the server's own calls), cwd = a fake PGDATA"
	echo "pgBackRest $(pgbackrest version | awk '{print $2}'): compress-type=zst compress-level=1 (same codec and level as walsnap), repo1-storage-verify-tls=n, runs as postgres; async runs use process-max=2 and the default archive-get-queue-max (128 MiB)"
	echo "repetitions: $repeat passes over all runs; each row is the median pass by MB/s among those other jobs left alone (< 50% of a core), else among all"
} >"$meta"

# --- runs -------------------------------------------------------------------

mkdir -p "$work/runs" "$work/cfg"
# walsnap_config NAME ENDPOINT PREFIX [CA] [YAML]: a config file for one
# run; YAML (whole sections) is appended.
walsnap_config() {
	local f=$work/cfg/$1.yaml
	{
		echo "repo: s3://walsnap/$3"
		echo "s3:"
		echo "  endpoint: $2"
		echo "  path_style: true"
		echo "  region: $region"
		[ -z "${4:-}" ] || echo "  ca_file: $4"
		[ -z "${5:-}" ] || echo "$5"
	} >"$f"
	chmod 0600 "$f"
	echo "$f"
}
# fake_pgdata DIR: what pgBackRest reads from PGDATA (global/pg_control).
fake_pgdata() {
	mkdir -p "$1/global"
	cp "$pgdata/global/pg_control" "$1/global/"
	chown -R postgres:postgres "$1"
	chmod 0700 "$1"
}
common=(-corpus "$corpus" -segments "$segments" -out "$results")
# wb CMD ARGS...: one measurement, started when other jobs leave the CPU
# mostly free (or the QUIET_WAIT budget is spent).
wb() {
	if [ -n "${ONLY:-}" ]; then
		local id="" prev=""
		for a in "$@"; do
			[ "$prev" = -id ] && id=$a
			prev=$a
		done
		[[ $id =~ $ONLY ]] || return 0
	fi
	local t=$SECONDS
	"$wb" quiet -max 30 -window 500ms -timeout "${quiet_budget}s"
	quiet_budget=$((quiet_budget - (SECONDS - t)))
	[ "$quiet_budget" -ge 0 ] || quiet_budget=0
	"$wb" "$@"
}
pgb_cmd="pgbackrest --config=$pgb/pgbackrest.conf --stanza=bench"
# Client-side encryption runs: one age key pair (the identity file 0600).
age_key=$work/cfg/age-key.txt
age_recipient=$("$wb" keygen "$age_key")
age_conf="encryption:
  recipients: $age_recipient
  identity_file: $age_key"
pgb_locks="$pgb/lock/*.lock"

for rep in $(seq 1 "$repeat"); do
	say "pass $rep/$repeat (load: $(cut -d' ' -f1-3 /proc/loadavg))"
	r=r$rep
	run=$work/runs/$r
	install -d -m 0755 "$run" # pgBackRest (postgres) works below it
	rowf=(-rep "$rep")

	# Plain HTTP MinIO: ceiling, then walsnap.
	for c in 1 4; do
		wb raw "${common[@]}" "${rowf[@]}" -endpoint "$http_ep" -bucket raw -prefix "$r-c$c" -conc "$c" \
			-id "raw-{op}-$c-http" -label "raw {op}, $c at a time" -endpoint-label http -minio-pid "$http_pid" \
			-notes "AWS SDK, uncompressed, unsigned payload, no checksum"
	done
	cfg=$(walsnap_config "$r-single-http" "$http_ep" "$r-single")
	wb archive "${common[@]}" "${rowf[@]}" -mode single -pgdata "$run/single-http" -walsnap \
		-cmd "$walsnap --config $cfg wal-push %p" -log "$out/logs/$r-walsnap-push-single-http.log" \
		-wait-locks "$run/single-http/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$http_ep" -bucket walsnap -prefix "$r-single" -minio-pid "$http_pid" \
		-id walsnap-push-single-http -label "walsnap push, one at a time" -endpoint-label http -notes "wall = sum of calls"
	cfg=$(walsnap_config "$r-pg-single-http" "$http_ep" "$r-pg-single")
	chown postgres:postgres "$cfg"
	wb archive "${common[@]}" "${rowf[@]}" -mode single -pgdata "$run/pg-single-http" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $cfg wal-push %p" -log "$out/logs/$r-walsnap-pg-push-single-http.log" \
		-wait-locks "$run/pg-single-http/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$http_ep" -bucket walsnap -prefix "$r-pg-single" -minio-pid "$http_pid" \
		-id walsnap-pg-push-single-http -label "walsnap-pg push, one at a time" -endpoint-label http -notes "wall = sum of calls; as postgres"
	cfg=$(walsnap_config "$r-backlog-http" "$http_ep" "$r-backlog")
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$run/backlog-http" -walsnap \
		-cmd "$walsnap --config $cfg wal-push %p" -log "$out/logs/$r-walsnap-push-backlog-http.log" \
		-wait-locks "$run/backlog-http/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$http_ep" -bucket walsnap -prefix "$r-backlog" -minio-pid "$http_pid" \
		-id walsnap-push-backlog-http -label "walsnap push, backlog" -endpoint-label http
	for pf in 8 0; do
		wb restore "${common[@]}" "${rowf[@]}" -pgdata "$run/fetch$pf-http" -walsnap \
			-cmd "$walsnap --config $cfg --fetch-prefetch $pf wal-fetch %f %p" -log "$out/logs/$r-walsnap-fetch$pf-http.log" \
			-wait-locks "$run/fetch$pf-http/pg_wal/.walsnap/prefetch/.lock" -minio-pid "$http_pid" \
			-id "walsnap-fetch-prefetch$pf-http" -label "walsnap fetch, prefetch $pf" -endpoint-label http
	done

	# The same with encryption.recipients (push) and identity_file (fetch).
	cfg=$(walsnap_config "$r-backlog-age-http" "$http_ep" "$r-backlog-age" "" "$age_conf")
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$run/backlog-age-http" -walsnap \
		-cmd "$walsnap --config $cfg wal-push %p" -log "$out/logs/$r-walsnap-push-backlog-age-http.log" \
		-wait-locks "$run/backlog-age-http/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$http_ep" -bucket walsnap -prefix "$r-backlog-age" -minio-pid "$http_pid" \
		-id walsnap-push-backlog-age-http -label "walsnap push, backlog, encrypted (age)" -endpoint-label http \
		-notes "encryption.recipients, zstd:1"
	wb restore "${common[@]}" "${rowf[@]}" -pgdata "$run/fetch8-age-http" -walsnap \
		-cmd "$walsnap --config $cfg wal-fetch %f %p" -log "$out/logs/$r-walsnap-fetch8-age-http.log" \
		-wait-locks "$run/fetch8-age-http/pg_wal/.walsnap/prefetch/.lock" -minio-pid "$http_pid" \
		-id walsnap-fetch-prefetch8-age-http -label "walsnap fetch, prefetch 8, encrypted (age)" -endpoint-label http \
		-notes "encryption.identity_file"

	# TLS MinIO: ceiling, walsnap, pgBackRest.
	for c in 1 4; do
		wb raw "${common[@]}" "${rowf[@]}" -endpoint "$tls_ep" -ca "$ca" -bucket raw -prefix "$r-c$c" -conc "$c" \
			-id "raw-{op}-$c-tls" -label "raw {op}, $c at a time" -endpoint-label TLS -minio-pid "$tls_pid" \
			-notes "AWS SDK, uncompressed, unsigned payload, no checksum"
	done
	cfg=$(walsnap_config "$r-backlog-tls" "$tls_ep" "$r-backlog" "$ca")
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$run/backlog-tls" -walsnap \
		-cmd "$walsnap --config $cfg wal-push %p" -log "$out/logs/$r-walsnap-push-backlog-tls.log" \
		-wait-locks "$run/backlog-tls/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$tls_ep" -ca "$ca" -bucket walsnap -prefix "$r-backlog" -minio-pid "$tls_pid" \
		-id walsnap-push-backlog-tls -label "walsnap push, backlog" -endpoint-label TLS -notes "s3.ca_file, zstd:1"
	wb restore "${common[@]}" "${rowf[@]}" -pgdata "$run/fetch8-tls" -walsnap \
		-cmd "$walsnap --config $cfg wal-fetch %f %p" -log "$out/logs/$r-walsnap-fetch8-tls.log" \
		-wait-locks "$run/fetch8-tls/pg_wal/.walsnap/prefetch/.lock" -minio-pid "$tls_pid" \
		-id walsnap-fetch-prefetch-tls -label "walsnap fetch, prefetch 8" -endpoint-label TLS -notes "s3.ca_file"

	# walsnap-pg as archive_command and restore_command, run as postgres
	# like PostgreSQL runs it (walsnap-pg answers only for the cluster's
	# own user, and hands every other call to walsnap).
	pgcfg=$(walsnap_config "$r-pg-backlog-tls" "$tls_ep" "$r-pg-backlog" "$ca")
	chown postgres:postgres "$pgcfg"
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$run/pg-backlog-tls" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $pgcfg wal-push %p" -log "$out/logs/$r-walsnap-pg-push-backlog-tls.log" \
		-wait-locks "$run/pg-backlog-tls/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$tls_ep" -ca "$ca" -bucket walsnap -prefix "$r-pg-backlog" -minio-pid "$tls_pid" \
		-id walsnap-pg-push-backlog-tls -label "walsnap-pg push, backlog" -endpoint-label TLS -notes "s3.ca_file, zstd:1, as postgres"
	# The same with the cheap codec (bytes stored against drain rate).
	s2cfg=$(walsnap_config "$r-pg-backlog-s2-tls" "$tls_ep" "$r-pg-backlog-s2" "$ca")
	chown postgres:postgres "$s2cfg"
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$run/pg-backlog-s2-tls" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $s2cfg --compression s2 wal-push %p" -log "$out/logs/$r-walsnap-pg-push-backlog-s2-tls.log" \
		-wait-locks "$run/pg-backlog-s2-tls/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$tls_ep" -ca "$ca" -bucket walsnap -prefix "$r-pg-backlog-s2" -minio-pid "$tls_pid" \
		-id walsnap-pg-push-backlog-s2-tls -label "walsnap-pg push, backlog, s2" -endpoint-label TLS -notes "s3.ca_file, s2, as postgres"
	wb restore "${common[@]}" "${rowf[@]}" -pgdata "$run/pg-fetch8-tls" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $pgcfg wal-fetch %f %p" -log "$out/logs/$r-walsnap-pg-fetch8-tls.log" \
		-wait-locks "$run/pg-fetch8-tls/pg_wal/.walsnap/prefetch/.lock" -minio-pid "$tls_pid" \
		-id walsnap-pg-fetch-prefetch-tls -label "walsnap-pg fetch, prefetch 8" -endpoint-label TLS -notes "s3.ca_file, as postgres"
	# The cost of a served call: each call made once the helper has the
	# file ready (a server whose archiver or prefetcher keeps up).
	pacedcfg=$(walsnap_config "$r-pg-paced-tls" "$tls_ep" "$r-pg-paced" "$ca")
	chown postgres:postgres "$pacedcfg"
	wb archive "${common[@]}" "${rowf[@]}" -mode backlog -paced -pgdata "$run/pg-paced-tls" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $pacedcfg wal-push %p" -log "$out/logs/$r-walsnap-pg-push-paced-tls.log" \
		-wait-locks "$run/pg-paced-tls/pg_wal/.walsnap/archiver.lock" \
		-endpoint "$tls_ep" -ca "$ca" -bucket walsnap -prefix "$r-pg-paced" -minio-pid "$tls_pid" \
		-id walsnap-pg-push-paced-tls -label "walsnap-pg push, archiver ahead (paced)" -endpoint-label TLS \
		-notes "each call once the archiver's record exists; MB/s counts the calls only; as postgres"
	wb restore "${common[@]}" "${rowf[@]}" -paced -pgdata "$run/pg-fetch-paced-tls" -user postgres -walsnap \
		-cmd "$walsnap_pg --config $pgcfg wal-fetch %f %p" -log "$out/logs/$r-walsnap-pg-fetch-paced-tls.log" \
		-wait-locks "$run/pg-fetch-paced-tls/pg_wal/.walsnap/prefetch/.lock" -minio-pid "$tls_pid" \
		-id walsnap-pg-fetch-paced-tls -label "walsnap-pg fetch, prefetcher ahead (paced)" -endpoint-label TLS \
		-notes "each call once the prefetcher's commit exists; MB/s counts the calls only; as postgres"

	for kind in sync async; do
		d=$run/pgb-push-$kind
		fake_pgdata "$d"
		opts="--repo1-path=/$r-push-$kind --pg1-path=$d"
		if [ "$kind" = async ]; then
			install -d -o postgres -g postgres "$pgb/spool/$r-push"
			opts+=" --archive-async --process-max=2 --spool-path=$pgb/spool/$r-push"
		fi
		wb archive "${common[@]}" "${rowf[@]}" -mode backlog -pgdata "$d" -user postgres \
			-cmd "$pgb_cmd $opts archive-push %p" -log "$out/logs/$r-pgbackrest-push-$kind.log" -wait-locks "$pgb_locks" \
			-endpoint "$tls_ep" -ca "$ca" -bucket pgbackrest -prefix "$r-push-$kind" -minio-pid "$tls_pid" \
			-id "pgb-push-$kind-tls" -label "pgBackRest archive-push, backlog, $kind" -endpoint-label TLS \
			-notes "zst:1$([ "$kind" = async ] && echo ", process-max 2")"
	done
	for kind in sync async; do
		d=$run/pgb-get-$kind
		fake_pgdata "$d"
		opts="--repo1-path=/$r-push-async --pg1-path=$d"
		if [ "$kind" = async ]; then
			install -d -o postgres -g postgres "$pgb/spool/$r-get"
			opts+=" --archive-async --process-max=2 --spool-path=$pgb/spool/$r-get"
		fi
		wb restore "${common[@]}" "${rowf[@]}" -pgdata "$d" -user postgres \
			-cmd "$pgb_cmd $opts archive-get %f %p" -log "$out/logs/$r-pgbackrest-get-$kind.log" -wait-locks "$pgb_locks" \
			-minio-pid "$tls_pid" \
			-id "pgb-get-$kind-tls" -label "pgBackRest archive-get, $kind" -endpoint-label TLS \
			-notes "$([ "$kind" = async ] && echo "queue 128 MiB, process-max 2")"
	done
	rm -rf "$run"
done

say "process start and CPU floor per segment (in memory, no I/O)"
wb startup -cmd "$walsnap --help >/dev/null" -id startup-walsnap -label "process start: walsnap --help" -endpoint-label "-" -out "$results"
wb startup -cmd "pgbackrest version >/dev/null" -id startup-pgbackrest -label "process start: pgbackrest version" -endpoint-label "-" -out "$results"
wb codec "${common[@]}" -endpoint-label "none (CPU)"

"$wb" report -in "$results" -md "$out/results.md" -meta "$meta"
say "wrote $out/results.md (logs in $out/logs)"
