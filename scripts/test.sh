#!/usr/bin/env bash
# Runs walsnap's checks and full test suite against the real rig: go vet, a
# gofmt check, and go test with WALSNAP_RIG=1 (a missing rig part fails
# instead of skipping) against a MinIO started here and stopped on exit;
# then every fuzz target for a bounded time (WALSNAP_TEST_FUZZTIME).
#
#   scripts/test.sh [go test flags...]     e.g. scripts/test.sh -run=Foo -v
#   PKGS=./archive/... scripts/test.sh      packages (default ./...)
#
# Exits non-zero if go test, go vet or the gofmt check fails.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
PATH=$PATH:$(go env GOPATH)/bin
# moto_server (EC2/EBS API for the ebs tests) comes with the machine's
# pyenv Python, whose shims a non-login shell may not have on PATH.
for d in "${PYENV_ROOT:-$HOME/.pyenv}/shims" /root/.pyenv/shims; do
	[ -d "$d" ] && PATH=$PATH:$d
done
export PATH

# Everything this run creates lives under $state: MinIO and, through
# WALSNAP_TEST_WORKDIR, the PostgreSQL work dirs and the walsnap build.
state=$(mktemp -d "${TMPDIR:-/tmp}/walsnap-test.XXXXXX")
chmod 0755 "$state"
export WALSNAP_TEST_WORKDIR=$state/work
cleanup() {
	bash scripts/ci/minio.sh stop "$state/minio" || true
	# Servers left behind by a test that died before its cleanup (timeout,
	# panic): immediate shutdown (SIGQUIT) of each postmaster of this run.
	local pidfile pid
	while IFS= read -r pidfile; do
		pid=$(head -n 1 "$pidfile" 2>/dev/null) || continue
		{ [ -n "$pid" ] && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null; } || continue
		if kill -QUIT "$pid" 2>/dev/null; then
			echo "test: stopped leftover PostgreSQL $pid (${pidfile%/postmaster.pid})" >&2
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
	done < <(find "$state/work" -name postmaster.pid 2>/dev/null)
	rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/ci/minio.sh start "$state/minio"
set -a
# shellcheck disable=SC1091
. "$state/minio/env"
set +a
export WALSNAP_RIG=1

failed=()
echo "test: go vet ./..."
go vet ./... || failed+=("go vet")

echo "test: gofmt check"
unformatted=$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
	echo "test: not gofmt'ed (run make fmt):" >&2
	echo "$unformatted" >&2
	failed+=("gofmt")
fi

echo "test: go test -count=1 -timeout 25m $* ${PKGS:-./...}"
start=$SECONDS
status=0
# shellcheck disable=SC2086
go test -count=1 -timeout 25m "$@" ${PKGS:-./...} || status=$?
echo "test: go test exited $status after $((SECONDS - start))s"

if [ "$status" -ne 0 ]; then
	exit "$status"
fi

# Every fuzz target, for a bounded number of inputs each (WALSNAP_TEST_FUZZTIME,
# a go test -fuzztime: default 5000x, which takes seconds and never trips the
# fuzzer's deadline the way a duration can;
# 0 skips), on full runs only: a narrowed run (-run, PKGS) skips them.
fuzztime=${WALSNAP_TEST_FUZZTIME:-5000x}
if [ "$fuzztime" != 0 ] && [ "$#" -eq 0 ] && [ "${PKGS:-./...}" = ./... ]; then
	start=$SECONDS
	while IFS=: read -r file target; do
		pkg=$(dirname "$file")
		echo "test: fuzz $pkg $target for $fuzztime"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$state/fuzz.log" 2>&1; then
			cat "$state/fuzz.log" >&2
			failed+=("fuzz $pkg $target")
		fi
	done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | grep -v '^./.git/' | sed 's/func //' | sort)
	echo "test: fuzzing took $((SECONDS - start))s"
fi
if [ "${#failed[@]}" -gt 0 ]; then
	echo "test: FAILED: ${failed[*]}" >&2
	exit 1
fi
