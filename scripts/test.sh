#!/usr/bin/env bash
# Runs Switchboard's whole test suite, as `make test` and CI do:
#   1. scripts/deps.sh installs what the tests need (sipp, chromium, npm packages),
#      and the softphone is bundled (make webclient) for the gateway to embed;
#   2. go test -race over every package;
#   3. every fuzz target for a fixed number of executions, so new parsers
#      are fuzzed from the day they land.
#
# Fuzzing runs a count of executions (-fuzztime Nx), never a duration: Go
# 1.26's fuzzing coordinator can fail a duration run with "context deadline
# exceeded" as the time runs out (golang/go#75804, fixed in Go 1.27), which
# would reject good submissions at random. A count has no deadline; a real
# finding still fails the step and leaves its input under the package's
# testdata/fuzz/NAME/.
# Every step runs even when an earlier one fails, so that one run shows every
# failure; the script exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Executions per fuzz target, sized to a few seconds each on a 2-core
# machine at the rates measured there: the slowest targets run about 3,500
# executions a second, the parsers of sip and digest 40,000 and more.
# FUZZ_EXECS scales every count (a multiplier, default 1).
default_execs=10000
declare -A target_execs=(
	[FuzzParseMessage]=100000 [FuzzFrame]=150000 [FuzzParseURI]=120000
	[FuzzParseAddress]=120000 [FuzzParseVia]=120000
	[FuzzParseChallenge]=120000 [FuzzParseCredentials]=120000
	[FuzzFromUserList]=100000 [FuzzServeRegister]=100000
	[FuzzParseSession]=40000 [FuzzFraming]=30000 [FuzzReadFrame]=50000
	[FuzzLocationFile]=40000
	[FuzzForwarded]=60000 [FuzzXForwardedFor]=60000
)
scale=${FUZZ_EXECS:-1}
if ! [[ $scale =~ ^[1-9][0-9]*$ ]]; then
	echo "test: FUZZ_EXECS must be a positive whole multiplier, not '$scale'" >&2
	exit 1
fi
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
# Before go test: the e2e tests embed the softphone in the gateway they
# build, and TestCallsAcrossTheInternet runs it in Chromium.
step "softphone bundle (make webclient)" make --no-print-directory webclient
step "go test -race ./..." go test -race -count=1 ./...
# SWITCHBOARD_NO_SKIP: a browser suite that cannot run here (no sipp, no
# built dist/) fails instead of skipping: deps.sh installs what they need.
step "softphone unit and page tests (webclient: npm test)" env SWITCHBOARD_NO_SKIP=1 npm --prefix webclient test --silent
step "browser tests against the gateway (webclient: npm run test:gateway)" env SWITCHBOARD_RACE=1 SWITCHBOARD_NO_SKIP=1 npm --prefix webclient run --silent test:gateway

echo
echo "==> fuzz targets, a fixed number of executions each"
if ! targets=$(bash scripts/fuzz-targets.sh); then
	failed+=("fuzz target discovery (scripts/fuzz-targets.sh)")
fi
while read -r pkg name; do
	[[ -n $pkg ]] || continue
	n=$((${target_execs[$name]:-$default_execs} * scale))
	step "fuzz $name ($pkg), $n executions" go test -run '^$' -fuzz "^${name}\$" -fuzztime "${n}x" "$pkg"
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
