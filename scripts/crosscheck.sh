#!/usr/bin/env bash
# crosscheck.sh: compare `calpresence plan` with the Mozilla ical.js oracle on
# every file of the iCalendar corpus in sources/ical/testdata/corpus
# (docs/crosscheck.md).
#
#   scripts/crosscheck.sh [-v] [-from T -to T] [FILE.ics...]
#
# Not part of `go test`: it needs node/npm and the oracle in
# ../shared/tools/oracle (or $CALPRESENCE_SHARED/tools/oracle, or
# $CALPRESENCE_ORACLE). Without them it says why and exits 0. It prints one
# line per file (agree / DIFFER) and a summary `N agree, M differ`, and exits
# 0 even when they differ: it is a report. It exits non-zero only when it
# could not run (build, npm ci, a side crashing).
#
# $CALPRESENCE_ORACLE: an oracle directory that already has node_modules
# (skips the copy and `npm ci`, e.g. offline).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
shared=${CALPRESENCE_SHARED:-$root/../shared}
corpus=$root/sources/ical/testdata/corpus/ics

skip() {
	echo "crosscheck: skipped: $*"
	exit 0
}

command -v node >/dev/null 2>&1 || skip "node not found (Node 18 or newer runs the ical.js oracle)"
[ -d "$corpus" ] || { echo "crosscheck: no corpus at $corpus" >&2; exit 1; }
if [ -z "${CALPRESENCE_ORACLE:-}" ]; then
	command -v npm >/dev/null 2>&1 || skip "npm not found (needed to install the oracle)"
	[ -f "$shared/tools/oracle/expand.mjs" ] || skip "no oracle at $shared/tools/oracle"
fi

# File arguments are relative to where we were called from.
args=()
for a in "$@"; do
	if [ -f "$a" ]; then
		a=$(cd "$(dirname "$a")" && pwd)/$(basename "$a")
	fi
	args+=("$a")
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/crosscheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$root"
go build -o "$tmp/calpresence" ./cmd/calpresence
go build -o "$tmp/crosscheck" ./scripts/crosscheck

oracle=${CALPRESENCE_ORACLE:-}
if [ -z "$oracle" ]; then
	# ../shared is read-only in CI: install into a copy.
	oracle=$tmp/oracle
	mkdir -p "$oracle"
	cp "$shared/tools/oracle/"*.mjs "$shared/tools/oracle/package.json" "$shared/tools/oracle/package-lock.json" "$oracle/"
	if ! (cd "$oracle" && npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1); then
		cat "$tmp/npm.log" >&2
		echo "crosscheck: npm ci failed in $oracle" >&2
		exit 1
	fi
fi

echo "crosscheck: $(node --version) ical.js oracle vs calpresence $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), corpus sources/ical/testdata/corpus/ics"
"$tmp/crosscheck" -calpresence "$tmp/calpresence" -oracle "$oracle" -corpus "$corpus" ${args[@]+"${args[@]}"}
