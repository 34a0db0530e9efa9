#!/usr/bin/env bash
# bench-conns.sh: what one idle SIP connection costs the gateway, on loopback.
#
#   scripts/bench-conns.sh [N] [BURST]     (default N=4000, BURST=0)
#
# Builds switchboard, starts it on free 127.0.0.1 ports with connection caps
# above N and a long idle timeout (so that nothing is shed while measuring),
# then runs bench/conncost twice: N silent WebSockets (answering pings, as a
# browser's do; pings go every 30 s), then N silent TCP connections. For each
# it prints the gateway's resident memory, Go heap, stacks and goroutines per
# connection (from its /metrics), the CPU time to open them and the CPU they
# use while idle. With BURST > 0 each connection first sends that many bytes
# that the gateway has to keep (a TCP message short of its last byte; a
# WebSocket frame of keep-alives, whose buffer is kept up to 16 KiB): the
# cost of a connection that is not silent. The numbers size the defaults of SWITCHBOARD_WS_MAX_CONNS
# and SWITCHBOARD_TCP_MAX_CONNS; docs/performance.md keeps a run.
#
# Settings (environment): HOLD (65s, the idle window), OUT (a directory for the
# log; default a new temp dir). Every process started here is stopped by its
# pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-4000}
BURST=${2:-0}
HOLD=${HOLD:-65s}
OUT=${OUT:-$(mktemp -d /tmp/bench-conns.XXXXXX)}
mkdir -p "$OUT"
SERVER_PID=

cleanup() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Each side holds N sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((N + 200)) ]; then
	echo "bench-conns: the open-file limit $(ulimit -n) is below N+200; lower N" >&2
	exit 1
fi

(cd "$ROOT" && go build -o "$OUT/switchboard" ./cmd/switchboard)
(cd "$ROOT/bench" && go build -o "$OUT/conncost" ./conncost)

# measure KIND: a fresh gateway for each kind, so that memory freed by the
# other run does not hide what this one takes.
measure() {
	local kind=$1 sip http
	sip=$(free_port)
	http=$(free_port)
	rm -rf "$OUT/data"
	mkdir -p "$OUT/data"
	SWITCHBOARD_SIP_UDP= SWITCHBOARD_SIP_TCP=127.0.0.1:$sip SWITCHBOARD_HTTP=127.0.0.1:$http \
		SWITCHBOARD_DATA_DIR=$OUT/data SWITCHBOARD_LOG_LEVEL=warn \
		SWITCHBOARD_WS_MAX_CONNS=$((N + 100)) SWITCHBOARD_TCP_MAX_CONNS=$((N + 100)) \
		SWITCHBOARD_UNREGISTERED_IDLE_TIMEOUT=10m \
		"$OUT/switchboard" >>"$OUT/switchboard.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null
	"$OUT/conncost" -kind "$kind" -n "$N" -burst "$BURST" -hold "$HOLD" -ws "ws://127.0.0.1:$http/ws" \
		-tcp "127.0.0.1:$sip" -metrics "http://127.0.0.1:$http/metrics"
	kill "$SERVER_PID"
	wait "$SERVER_PID" || true
	SERVER_PID=
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(go version | awk '{print $3}'), load $(cut -d' ' -f1-3 /proc/loadavg)"
measure ws
measure tcp
