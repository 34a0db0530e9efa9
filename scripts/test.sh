#!/usr/bin/env bash
# Runs Switchboard's whole test suite, as `make test` and CI do:
#   1. scripts/deps.sh installs what the tests need (sipp, chromium, npm packages);
#   2. go test -race over every package;
#   3. every fuzz target for FUZZTIME each (default 3s), so new parsers are
#      fuzzed from the day they land.
# Every step runs even when an earlier one fails, so that one run shows every
# failure; the script exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-3s}
passed=() failed=()

# step NAME COMMAND... runs COMMAND and records it as passed or failed.
step() {
	local name=$1
	shift
	echo
	echo "==> $name"
	if "$@"; then
		passed+=("$name")
	else
		failed+=("$name")
	fi
}

if ! command -v go >/dev/null 2>&1; then
	echo "test: go is not on PATH; install Go 1.26 or add /usr/local/go/bin to PATH" >&2
	exit 1
fi

step "dependencies (scripts/deps.sh)" bash scripts/deps.sh
step "go test -race ./..." go test -race -count=1 ./...
step "softphone unit and page tests (webclient: npm test)" npm --prefix webclient test --silent
step "browser tests against the gateway (webclient: npm run test:gateway)" env SWITCHBOARD_RACE=1 npm --prefix webclient run --silent test:gateway

echo
echo "==> fuzz targets, $fuzztime each"
if ! targets=$(bash scripts/fuzz-targets.sh); then
	failed+=("fuzz target discovery (scripts/fuzz-targets.sh)")
fi
while read -r pkg name; do
	[[ -n $pkg ]] || continue
	step "fuzz $name ($pkg)" go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done <<<"$targets"

echo
echo "==> summary"
for p in ${passed[@]+"${passed[@]}"}; do echo "  PASS $p"; done
for f in ${failed[@]+"${failed[@]}"}; do echo "  FAIL $f"; done
if [[ " ${failed[*]-} " == *" fuzz "* ]]; then
	echo "A failing fuzz input is saved under its package's testdata/fuzz/NAME/;"
	echo "'go test -run NAME/INPUT PKG' replays it. Commit it with the fix."
fi
echo "summary: ${#passed[@]} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
