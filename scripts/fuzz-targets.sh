#!/usr/bin/env bash
# Prints every fuzz target of the module, one "<package> <FuzzName>" a line.
# Only packages whose test files declare a Fuzz function are compiled, so
# this stays fast as the module grows. Exits non-zero if a package that has
# fuzz targets does not build, after printing the targets it could list.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

status=0
while read -r pkg dir files; do
	[[ -n $files ]] || continue
	candidate=false
	for f in $files; do
		if grep -q '^func Fuzz' "$dir/$f"; then candidate=true; break; fi
	done
	$candidate || continue
	if ! out=$(go test -list '^Fuzz' "$pkg" 2>&1); then
		echo "fuzz-targets: cannot list the fuzz targets of $pkg:" >&2
		echo "$out" >&2
		status=1
		continue
	fi
	grep -E '^Fuzz[A-Za-z0-9_]*$' <<<"$out" | while read -r name; do
		echo "$pkg $name"
	done || true
done < <(go list -e -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)
exit $status
