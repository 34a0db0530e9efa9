#!/usr/bin/env bash
# bench-sip.sh: REGISTER/s and calls/s under sipp load, on loopback only.
#
#   scripts/bench-sip.sh [switchboard|redis|kamailio|both|stores]     (default: switchboard)
#
# redis is switchboard in cluster mode, its location store in a redis-server
# the script starts on a free loopback port (no persistence); stores runs
# switchboard then redis, to compare the embedded store with Redis. For
# redis the script also reports the store's round trips to Redis
# (switchboard_cluster_redis_calls_total) per successful REGISTER and per
# call.
#
# For each target it starts the server on free 127.0.0.1 ports, then
#   1. REGISTER with digest auth (401 then credentials), a different user per
#      call (u0..u999, all with the password pw-secret), test/sipp/bench-register.xml,
#      at increasing rates (-r) for DUR seconds each (-m = rate*DUR);
#   2. calls through the proxy: a sipp UAS registered as u1 (register-only.xml,
#      then uas-answer.xml on the same port), a sipp UAC (uac-call.xml, caller u0,
#      407 then Proxy-Authorization, INVITE/180/200/ACK/BYE, no pause) at
#      increasing rates;
# and reports for each rate the calls that succeeded and failed, and the
# highest rate with 0 failed calls. A rate stops the ladder at its first failure.
# Everything is bounded: -m per run, -recv_timeout per message, -timeout per run,
# and every process started here is stopped by its pid on exit.
#
# kamailio: needs the Debian package (apt-get install kamailio); the script writes
# a minimal registrar+proxy config (usrloc in memory, auth with pv_auth_check and
# a static password, record_route, lookup, t_relay).
#
# Settings (environment): DUR (10), DRAIN (35 s between the two steps), REG_RATES, CALL_RATES, NUSERS (1000),
# CALLERS (1: the sipp UACs of the call ladder, each on its own source address
# 127.0.0.2…, sharing the rate, so that the gateway's per-source transaction
# cap of 1000 does not set the call rate),
# KAM_CHILDREN (2), OUT (a directory for logs; default a new temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIPP_DIR=$ROOT/test/sipp
TARGETS=${1:-switchboard}
DUR=${DUR:-10}
REG_RATES=${REG_RATES:-"100 200 400 800 1200 1600 2400 3200"}
CALL_RATES=${CALL_RATES:-"50 100 200 300 400 600 800 1200"}
CALLERS=${CALLERS:-1}
NUSERS=${NUSERS:-1000}
KAM_CHILDREN=${KAM_CHILDREN:-2}
DRAIN=${DRAIN:-35}
PASS=pw-secret
OUT=${OUT:-$(mktemp -d /tmp/bench-sip.XXXXXX)}
mkdir -p "$OUT"
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	sleep 0.5
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

# free_port prints a port free on 127.0.0.1 for both UDP and TCP, outside
# the RTP range 20000-29999.
free_port() {
	python3 - <<'EOF'
import socket
while True:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    if 20000 <= p <= 29999:
        t.close(); continue
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close(); continue
    t.close(); u.close()
    print(p); break
EOF
}

# Users: u0..u(NUSERS-1), one password.
USERS_CSV=$OUT/users.csv
{
	echo SEQUENTIAL
	for ((i = 0; i < NUSERS; i++)); do
		echo "u$i;localhost;[authentication username=u$i password=$PASS]"
	done
} >"$USERS_CSV"
USERS_ENV=$(for ((i = 0; i < NUSERS; i++)); do printf 'u%d:%s,' "$i" "$PASS"; done)
USERS_ENV=${USERS_ENV%,}
printf 'SEQUENTIAL\nlocalhost;u0;localhost\n' >"$OUT/caller.csv"

# counters FILE: "successful failed elapsed_s" from sipp's final statistics screen
# (its Elapsed Time is 0 on the final screen; ladder replaces it with wall time).
counters() {
	local f=$1 ok fail el
	ok=$(grep 'Successful call' "$f" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
	fail=$(grep 'Failed call' "$f" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
	el=$(grep 'Elapsed Time' "$f" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}' |
		awk -F: '{printf "%.2f", $1*3600+$2*60+$3+$4/1e6}')
	echo "${ok:-0} ${fail:-0} ${el:-0}"
}

RESULTS=$OUT/results.txt
: >"$RESULTS"
report() { echo "$*" | tee -a "$RESULTS"; }

# ladder NAME TARGET RATES CMD...: runs CMD with -r RATE -m RATE*DUR for each rate.
ladder() {
	local name=$1 target=$2 rates=$3
	shift 3
	local best=0 r ok fail el f t0
	for r in $rates; do
		f=$OUT/$target-$name-$r.out
		t0=$(date +%s.%N)
		(cd "$OUT" && timeout $((DUR * 4 + 30)) "$@" -r "$r" -m $((r * DUR)) \
			-recv_timeout 5000 -timeout $((DUR * 4 + 20))s -nostdin -trace_err \
			-error_file "$OUT/$target-$name-$r.err" >"$f" 2>&1) || true
		read -r ok fail el < <(counters "$f")
		el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
		report "$(printf '%-11s %-8s rate=%-5s calls=%-6s ok=%-6s failed=%-5s elapsed=%-6s achieved=%s/s' \
			"$target" "$name" "$r" $((r * DUR)) "$ok" "$fail" "$el" \
			"$(awk -v o="$ok" -v e="$el" 'BEGIN{ if (e>0) printf "%.0f", o/e; else print 0 }')")"
		if [ "$fail" != 0 ] || [ "$ok" != $((r * DUR)) ]; then
			break
		fi
		best=$r
	done
	report "$(printf '%-11s %-8s highest rate with 0 failed: %s/s' "$target" "$name" "$best")"
}

# call_ladder NAME TARGET RATES SERVER: the call ladder with CALLERS sipp
# UACs at once, the k-th from 127.0.0.(k+1) at RATE/CALLERS; their counts
# are added up.
call_ladder() {
	local name=$1 target=$2 rates=$3 server=$4
	local best=0 r k ok fail el t0 f n rk pids tok tfail
	for r in $rates; do
		t0=$(date +%s.%N)
		pids=()
		rk=$(((r + CALLERS - 1) / CALLERS))
		for ((k = 0; k < CALLERS; k++)); do
			f=$OUT/$target-$name-$r-$k.out
			(cd "$OUT" && timeout $((DUR * 4 + 30)) sipp -sf "$SIPP_DIR/uac-call.xml" -inf "$OUT/caller.csv" \
				-au u0 -ap "$PASS" -auth_uri u1@localhost -s u1 -i "127.0.0.$((k + 2))" -p "$(free_port)" \
				-r "$rk" -m $((rk * DUR)) -recv_timeout 5000 -timeout $((DUR * 4 + 20))s -nostdin -trace_err \
				-error_file "$OUT/$target-$name-$r-$k.err" "$server" >"$f" 2>&1) &
			pids+=($!)
		done
		for n in "${pids[@]}"; do wait "$n" || true; done
		el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
		tok=0 tfail=0
		for ((k = 0; k < CALLERS; k++)); do
			read -r ok fail _ < <(counters "$OUT/$target-$name-$r-$k.out")
			tok=$((tok + ok)) tfail=$((tfail + fail))
		done
		report "$(printf '%-11s %-8s rate=%-5s calls=%-6s ok=%-6s failed=%-5s elapsed=%-6s achieved=%s/s callers=%s' \
			"$target" "$name" "$r" $((rk * CALLERS * DUR)) "$tok" "$tfail" "$el" \
			"$(awk -v o="$tok" -v e="$el" 'BEGIN{ if (e>0) printf "%.0f", o/e; else print 0 }')" "$CALLERS")"
		if [ "$tfail" != 0 ] || [ "$tok" != $((rk * CALLERS * DUR)) ]; then
			break
		fi
		best=$r
	done
	report "$(printf '%-11s %-8s highest rate with 0 failed: %s/s' "$target" "$name" "$best")"
}

# METRICS is the gateway's /metrics URL; REDIS_PID the redis-server's.
METRICS=
REDIS_PID=

start_switchboard() {
	local port=$1 hport
	hport=$(free_port)
	METRICS=http://127.0.0.1:$hport/metrics
	(cd "$ROOT" && go build -o "$OUT/switchboard" ./cmd/switchboard)
	mkdir -p "$OUT/sb-data"
	SWITCHBOARD_SIP_UDP=127.0.0.1:$port SWITCHBOARD_SIP_TCP=127.0.0.1:$port \
		SWITCHBOARD_HTTP=127.0.0.1:$hport SWITCHBOARD_DATA_DIR=$OUT/sb-data \
		SWITCHBOARD_ICE_PORT=$(free_port) \
		SWITCHBOARD_USERS=$USERS_ENV SWITCHBOARD_LOG_LEVEL=warn \
		"$OUT/switchboard" >"$OUT/switchboard.log" 2>&1 &
	PIDS+=($!)
	SERVER_PID=$!
	local i
	for i in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "switchboard not ready; see $OUT/switchboard.log" >&2
	return 1
}

# start_redis starts switchboard in cluster mode on a redis-server of its
# own, on a free loopback port, without persistence.
start_redis() {
	local rport i
	command -v redis-server >/dev/null || { echo "redis-server is not installed (scripts/deps.sh)" >&2; return 1; }
	rport=$(free_port)
	redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
		--dir "$OUT" >"$OUT/redis.log" 2>&1 &
	PIDS+=($!)
	REDIS_PID=$!
	for i in $(seq 1 100); do
		redis-cli -p "$rport" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	SWITCHBOARD_REDIS_URL=redis://127.0.0.1:$rport/0 start_switchboard "$1"
}

# redis_calls prints the store's calls to Redis so far (0 without Redis).
redis_calls() {
	[ -n "$REDIS_PID" ] || { echo 0; return; }
	curl -fsS "$METRICS" | awk '$1 == "switchboard_cluster_redis_calls_total" {print $2}'
}

# per_op LABEL BEFORE: reports Redis calls since BEFORE per successful
# operation of the last ladder (sum of ok= in results.txt for LABEL).
per_op() {
	local label=$1 before=$2 after ops
	[ -n "$REDIS_PID" ] || return 0
	after=$(redis_calls)
	ops=$(grep "^redis  *$label " "$RESULTS" | sed -n 's/.* ok=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
	report "$(printf 'redis       %-8s redis round trips: %s for %s successful (%s each)' "$label" \
		"$((after - before))" "$ops" "$(awk -v c="$((after - before))" -v o="$ops" 'BEGIN{ if (o>0) printf "%.2f", c/o; else print "-" }')")"
}

start_kamailio() {
	local port=$1 mpath
	command -v kamailio >/dev/null || { echo "kamailio is not installed" >&2; return 1; }
	mpath=$(dirname "$(find /usr/lib -name registrar.so -path '*kamailio*' | head -1)")
	mkdir -p "$OUT/kam"
	cat >"$OUT/kam/kamailio.cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
memdbg=5
memlog=5
children=$KAM_CHILDREN
tcp_children=1
auto_aliases=no
alias="localhost"
listen=udp:127.0.0.1:$port
listen=tcp:127.0.0.1:$port
mpath="$mpath/"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("auth", "secret", "bench-sip-secret")

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
		sl_send_reply("404", "Not here");
		exit;
	}
	if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
	if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
	t_check_trans();
	if (is_method("REGISTER")) {
		if (!pv_auth_check("localhost", "$PASS", "0", "1")) { auth_challenge("localhost", "1"); exit; }
		consume_credentials();
		if (!save("location")) { sl_reply_error(); }
		exit;
	}
	if (is_method("INVITE")) {
		if (!pv_auth_check("localhost", "$PASS", "0", "1")) { auth_challenge("localhost", "1"); exit; }
		consume_credentials();
		record_route();
	}
	if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
	t_relay();
	exit;
}
EOF
	kamailio -c -f "$OUT/kam/kamailio.cfg" >"$OUT/kam/check.log" 2>&1 ||
		{ echo "kamailio config check failed: $OUT/kam/check.log" >&2; cat "$OUT/kam/check.log" >&2; return 1; }
	kamailio -f "$OUT/kam/kamailio.cfg" -DD -E -m 256 -M 16 -P "$OUT/kam/kamailio.pid" \
		-Y "$OUT/kam" -w "$OUT/kam" >"$OUT/kam/kamailio.log" 2>&1 &
	PIDS+=($!)
	SERVER_PID=$!
	sleep 1.5
	kill -0 "$SERVER_PID" || { echo "kamailio exited: $OUT/kam/kamailio.log" >&2; return 1; }
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	if [ -n "$REDIS_PID" ]; then
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
		REDIS_PID=
	fi
}

bench_target() {
	local target=$1 port uport cport
	port=$(free_port)
	"start_$target" "$port"
	local server=127.0.0.1:$port

	# 1. REGISTER/s.
	uport=$(free_port)
	local before
	before=$(redis_calls)
	ladder register "$target" "$REG_RATES" \
		sipp -sf "$SIPP_DIR/bench-register.xml" -inf "$USERS_CSV" -i 127.0.0.1 -p "$uport" "$server"
	per_op register "$before"

	# 2. calls/s: UAS u1 registered on its port, then answering.
	# First let the REGISTER transactions of step 1 end (non-INVITE server
	# transactions live 32 s on UDP after their final response; the gateway
	# caps its table at 10000 and answers 503 above that).
	sleep "$DRAIN"
	uport=$(free_port)
	(cd "$OUT" && timeout 20 sipp -sf "$SIPP_DIR/register-only.xml" -inf "$SIPP_DIR/domain.csv" \
		-au u1 -ap "$PASS" -s u1 -i 127.0.0.1 -p "$uport" -m 1 -timeout 10s -timeout_error \
		-nostdin "$server" >"$OUT/$target-uas-register.out" 2>&1) ||
		{ report "$target: UAS registration failed: $OUT/$target-uas-register.out"; stop_server; return 0; }
	(cd "$OUT" && exec timeout 900 sipp -sf "$SIPP_DIR/uas-answer.xml" -i 127.0.0.1 -p "$uport" \
		-m 1000000 -timeout 880s -nostdin -trace_err -error_file "$OUT/$target-uas.err" \
		"$server" >"$OUT/$target-uas.out" 2>&1) &
	local uas=$!
	PIDS+=($uas)
	sleep 0.5
	cport=$(free_port)
	before=$(redis_calls)
	if ((CALLERS > 1)); then
		call_ladder call "$target" "$CALL_RATES" "$server"
	else
		ladder call "$target" "$CALL_RATES" \
			sipp -sf "$SIPP_DIR/uac-call.xml" -inf "$OUT/caller.csv" -au u0 -ap "$PASS" \
			-auth_uri u1@localhost -s u1 -i 127.0.0.1 -p "$cport" "$server"
	fi
	per_op call "$before"
	kill "$uas" 2>/dev/null || true
	wait "$uas" 2>/dev/null || true
	stop_server
}

echo "logs in $OUT; $(date -u '+%F %T UTC'); $(nproc) cores; load:$(uptime | sed 's/.*load average://')"
case $TARGETS in
both) bench_target switchboard; bench_target kamailio ;;
stores) bench_target switchboard; bench_target redis ;;
switchboard | redis | kamailio) bench_target "$TARGETS" ;;
*) echo "usage: $0 [switchboard|redis|kamailio|both|stores]" >&2; exit 2 ;;
esac
echo "load after:$(uptime | sed 's/.*load average://')"
echo "results: $RESULTS"
