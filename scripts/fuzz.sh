#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 1m).
# `go test -fuzz` takes one package and one target at a time, hence the loop.
# New failing inputs are saved under the package's testdata/fuzz/; commit
# them with the fix so that `go test` replays them from then on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-1m}
passed=() failed=()

if ! targets=$(bash scripts/fuzz-targets.sh); then
	failed+=("fuzz target discovery")
fi
while read -r pkg name; do
	[[ -n $pkg ]] || continue
	echo "==> fuzz $name in $pkg for $fuzztime"
	if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
		passed+=("$name ($pkg)")
	else
		failed+=("$name ($pkg)")
	fi
done <<<"$targets"

echo
echo "fuzzing summary:"
for p in ${passed[@]+"${passed[@]}"}; do echo "  PASS $p"; done
for f in ${failed[@]+"${failed[@]}"}; do echo "  FAIL $f"; done
echo "fuzz: ${#passed[@]} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
