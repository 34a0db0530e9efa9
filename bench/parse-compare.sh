#!/usr/bin/env bash
# Runs the Switchboard-vs-sipgo parser benchmarks of this module and, with
# benchstat, summarises them (medians of COUNT runs) side by side.
#
#   bench/parse-compare.sh              # the command of README.md
#   COUNT=10 bench/parse-compare.sh     # more samples (benchstat shows a
#                                       # confidence interval from 6)
#   OUT=new.txt bench/parse-compare.sh  # keep the raw output there
#
# The raw `go test` output goes to OUT (default: a temporary file) so that it
# can be compared with a later run: benchstat old.txt new.txt.
# benchstat is installed into GOBIN (or GOPATH/bin) when it is missing; set
# NO_INSTALL=1 to skip that and only print the raw results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

count=${COUNT:-5}
bench=${BENCH:-.}
out=${OUT:-$(mktemp "${TMPDIR:-/tmp}/parse-compare.XXXXXX")}

echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(go version), $(nproc) CPUs"
echo "# load before: $(uptime)"
# The parser measured is the sip package of the working tree (go.mod replaces
# the module with ../), so record which one that was.
if head=$(git -C .. rev-parse --short HEAD 2>/dev/null); then
	dirty=$(GIT_OPTIONAL_LOCKS=0 git -C .. status --porcelain -- sip | grep -v '_test\.go$' | awk '{print $2}' | tr '\n' ' ' || true)
	echo "# switchboard: commit $head${dirty:+, uncommitted changes in: $dirty}"
fi
echo "# go test -run '^\$' -bench '$bench' -benchmem -count $count ./...   (in bench/)"
go test -run '^$' -bench "$bench" -benchmem -count "$count" ./... | tee "$out"
echo "# load after:  $(uptime)"
echo "# raw results: $out"

gobin=$(go env GOBIN)
gobin=${gobin:-$(go env GOPATH)/bin}
benchstat=$(command -v benchstat || true)
if [[ -z $benchstat && -x $gobin/benchstat ]]; then
	benchstat=$gobin/benchstat
fi
if [[ -z $benchstat && -z ${NO_INSTALL:-} ]]; then
	echo "# installing benchstat into $gobin"
	if GOBIN=$gobin go install golang.org/x/perf/cmd/benchstat@latest; then
		benchstat=$gobin/benchstat
	else
		echo "# could not install benchstat; the raw results above are all there is" >&2
	fi
fi
[[ -n $benchstat ]] || exit 0

# Name the sub-benchmarks as keys (BenchmarkParse/msg=register/parser=sipgo)
# so that benchstat can put the parsers in columns, Switchboard first as the
# base, with the message (and plain/access) in rows.
keyed=$(mktemp "${TMPDIR:-/tmp}/parse-compare-keyed.XXXXXX")
trap 'rm -f "$keyed"' EXIT
sed -E 's#^(Benchmark[A-Za-z]+)/([^/]+)/([^/[:space:]-]+)#\1/msg=\2/parser=\3#' "$out" >"$keyed"

echo
echo "# benchstat: medians of $count runs; sipgo compared with switchboard"
"$benchstat" -col /parser -row .name,/msg "$keyed"
