#!/usr/bin/env bash
# A full local point-in-time-recovery demo on walsnap's built-in defaults:
# a throwaway PostgreSQL 15 cluster archives WAL with `walsnap-pg wal-push` into
# a local file:// repository, runs load, takes a base backup with
# `walsnap backup` (the built-in files provider) while the load runs, suffers
# a "human error" (DROP TABLE), and `walsnap restore --start` brings it back
# to the moment before it; `walsnap drill` then proves the same recovery in a
# scratch directory and records it. Everything lives in one temporary directory, removed at
# the end. Run as root (PostgreSQL runs as the postgres user) after
# `make setup`.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL will run as the postgres user)"
[ -x "$pgbin/initdb" ] || die "PostgreSQL 15 not found in $pgbin: run make setup"
id postgres >/dev/null 2>&1 || die "no postgres user: run make setup"

work=$(mktemp -d /tmp/walsnap-demo.XXXXXX)
chmod 0755 "$work"
chown postgres:postgres "$work"
# The config lives outside $work: walsnap, run as root for backup and
# restore, refuses a config in a directory the postgres user could change.
etc=$(mktemp -d /tmp/walsnap-demo-etc.XXXXXX)
chmod 0755 "$etc"
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

primary=$work/primary
restored=$work/restored
cleanup() {
	for d in "$restored" "$primary"; do
		[ -f "$d/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$work" "$etc"
}
trap cleanup EXIT

say "building walsnap (make build: static, stripped)"
make --no-print-directory build BIN="$work/walsnap" >/dev/null
chmod 0755 "$work/walsnap" "$work/walsnap-pg"

port=$(free_port)
cat >"$etc/walsnap.yaml" <<YAML
repo: file://$work/repo
pg:
  host: $work
  port: $port
YAML
chmod 0644 "$etc/walsnap.yaml"
walsnap="$work/walsnap --config $etc/walsnap.yaml"

psql() { as_pg "$pgbin/psql" -X -q -h "$work" -p "$1" -d postgres -v ON_ERROR_STOP=1 -At "${@:2}"; }

say "creating a cluster in $primary, archive_command = 'walsnap-pg wal-push %p' into file://$work/repo"
as_pg "$pgbin/initdb" -D "$primary" -A trust -U postgres --no-sync >/dev/null
cat >>"$primary/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
archive_mode = on
archive_command = '$work/walsnap-pg --config $etc/walsnap.yaml wal-push %p'
CONF
as_pg "$pgbin/pg_ctl" -D "$primary" -l "$work/primary.log" -w start >/dev/null

say "loading data: pgbench -i -s 10"
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -i -s 10 -q postgres >/dev/null 2>&1

say "taking a base backup with walsnap backup while pgbench runs"
as_pg "$pgbin/pgbench" -h "$work" -p "$port" -T 6 -c 2 postgres >/dev/null 2>&1 &
load=$!
sleep 1
$walsnap backup --fast 2>/dev/null | sed 's/^/    /'
wait "$load"
psql "$port" -c "CREATE TABLE customers (id int PRIMARY KEY, name text)"
psql "$port" -c "INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g"
sleep 1
target=$(psql "$port" -c "SELECT now()")
say "1000 customers saved; the time is now $target"
sleep 1
psql "$port" -c "DROP TABLE customers"
say "oops: DROP TABLE customers"
last=$(psql "$port" -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
psql "$port" -c "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 1 600); do
	done_=$(psql "$port" -c "SELECT coalesce(last_archived_wal >= '$last', false) FROM pg_stat_archiver")
	[ "$done_" = t ] && break
	sleep 0.1
done
[ "$done_" = t ] || die "WAL up to $last was not archived in 60 s; see $work/primary.log"
segments=$(find "$work/repo/wal" -name '*.zst' | wc -l)
bytes=$(du -sh "$work/repo" | cut -f1)
say "the repository holds $segments archived WAL files and the backup ($bytes); stopping the damaged server"
as_pg "$pgbin/pg_ctl" -D "$primary" -m fast -w stop >/dev/null

say "walsnap restore --target-time '$target' --start into $restored"
rport=$(free_port)
$walsnap restore --pgdata "$restored" --target-time "$target" --target-action promote \
	--start --pg-bin "$pgbin" --port "$rport" --socket-dir "$work" 2>"$work/restore.err" | sed 's/^/    /' ||
	{ cat "$work/restore.err" >&2; die "restore failed"; }
fetched=$(grep -cE 'msg="?restored' "$restored.walsnap-restore.log" || true)
prefetched=$(grep -c 'msg="restored (prefetched)"' "$restored.walsnap-restore.log" || true)
say "recovery replayed $fetched WAL files fetched by walsnap, $prefetched of them from prefetch"
count=$(psql "$rport" -c "SELECT count(*) FROM customers")
say "customers after recovery: $count rows; first three:"
psql "$rport" -c "SELECT id, name FROM customers ORDER BY id LIMIT 3" | sed 's/^/    /'
[ "$count" = 1000 ] || die "expected 1000 customers, got $count"

say "walsnap drill: the same recovery again, checked, timed and recorded, in a scratch directory it removes"
echo "SELECT count(*) = 1000 AS customers_back FROM customers;" >"$work/drill.sql"
chmod 0644 "$work/drill.sql"
$walsnap drill --scratch "$work" --pg-bin "$pgbin" --target-time "$target" --check-sql "$work/drill.sql" 2>"$work/drill.err" |
	sed 's/^/    /' || { cat "$work/drill.err" >&2; die "drill failed"; }
$walsnap status | grep '^last drill' | sed 's/^/    /'
say "all 1000 customers are back. Cleaning up $work."
