#!/usr/bin/env bash
# bench-sip.sh: Switchboard's SIP engine beside Kamailio's under sipp load,
# in one run on the same machine, on loopback only.
#
#   scripts/bench-sip.sh [both|stores|switchboard|redis|kamailio]   (default: both)
#
# both compares Switchboard with Kamailio; stores compares Switchboard on
# its embedded location store (switchboard) with Switchboard in cluster
# mode, its location store in a redis-server the script starts on a free
# loopback port without persistence (redis). For redis the results also
# give the store's round trips to Redis (switchboard_cluster_redis_calls_total)
# per successful REGISTER and per call, and its server CPU includes the
# redis-server's.
#
# It starts the servers on free 127.0.0.1 ports (all at once; an idle
# server costs nothing) and measures, for each:
#
#   1. REGISTER with digest (401, then credentials, then 200), a different
#      user per call (u0..u999 but u1, the callee of the calls; one password), test/sipp/bench-register.xml,
#      on a ladder of rates (-r) of DUR seconds each (-m = rate*DUR). A
#      target's ladder stops at its first rate with a failed call; its knee
#      is the highest rate before it, with 0 failures.
#      With REGISTERS above 1, that many sipps at once share the rate,
#      the k-th from 127.0.0.(k+2) with every REGISTERS-th user from uk:
#      one sipp, a single thread, fell behind its own socket at twice the
#      knee on a busy host (its drops, not the server's, were the
#      timeouts), and clients come from many addresses.
#   2. Overload: REGISTER at OVER_FACTOR (2) times the knee for OVER_DUR
#      (30) seconds: goodput (successful calls/s), how the failures failed
#      (an answer such as 503, or a timeout), the server's largest RSS;
#      then at once a DUR-second step at the knee, to see it recover.
#   3. and 4. The same for calls through the proxy: a sipp UAS registered
#      as u1 (register-only.xml, then uas-answer.xml on the same port), a
#      sipp UAC (uac-call.xml, caller u0: INVITE, 407, INVITE with
#      Proxy-Authorization, 180, 200, ACK, BYE, no pause). With CALLERS
#      above 1, that many sipp UACs at once, the k-th from 127.0.0.(k+1)
#      (2 and up), share the rate: the load of several sources. From about
#      5,000 calls/s use CALLERS=4: one sipp UAC, a single thread, falls
#      behind its own socket there (at 5,600/s on a busy host it dropped
#      124,000-426,000 datagrams per 30 s step, four dropped 935-5,290),
#      and what it drops it counts as the server's timeouts. Responses
#      that a scenario does not expect (a 500 or a 407 to the INVITE with
#      credentials, a 407 to the BYE) are counted as timeouts too: sipp
#      waits for what it expects until -recv_timeout; the step's .err
#      file lists them ("Continuing call on unexpected message").
#
# The ladders interleave the targets rate by rate (Switchboard, then
# Kamailio, at each rate), so that both see the same machine; each step
# starts once both servers are idle again. For every step the results give
# the calls that succeeded and failed, the rate achieved, and the CPU time
# of the server (its whole process tree, from /proc) and of sipp per
# successful call, in µs: per registration that is two transactions (401
# and 200), per call five (INVITE, INVITE, BYE, and the ACKs). sipp runs
# with -default_behaviors all,-abortunexp: with several workers Kamailio
# may pass a 180 after its 200, and a call must not be aborted for that.
#
# Kamailio: the Debian package, installed with apt-get when missing. The
# script writes a minimal registrar+proxy config (usrloc in memory, auth
# with pv_auth_check and a static password, record_route, lookup, t_relay)
# with KAM_CHILDREN (4) UDP workers and KAM_SHM (1024) MB of shared memory.
#
# Profiles: PPROF_AT="register:RATE call:RATE" takes a CPU profile of
# Switchboard (SWITCHBOARD_PPROF) during the step at that rate (from its
# second second to two seconds before its end), and a heap profile two
# seconds before its end, and writes `go tool pprof -top` of them to
# $OUT/pprof-*.txt and $OUT/heap-*.txt (the heap by memory in use). A
# rate matches the ladder's step and the overload step at that rate;
# "call:over" (or "register:over") matches the overload step whatever its
# rate, and "call:after" (or "register:after") the step at the knee right
# after it. The heap is also written by objects in use ($OUT/heapobj-*.txt),
# and the server's /metrics at the heap's moment to $OUT/metrics-*.txt
# (the transactions, dialogs and calls alive then).
#
# Pinning: PIN=1 runs the server (Switchboard, Kamailio's processes, the
# redis-server) with `taskset -c $SERVER_CPUS` (0) and every sipp with
# `taskset -c $SIPP_CPUS` (1), so that the load generators do not take the
# server's CPU: on 2 cores, at 2× a REGISTER knee of 16,000/s, four sipps
# took half as much CPU again as the gateway, and the two competed for
# both cores. Pinned, a step measures what the server does with the CPUs
# it is given (other processes of the host still share them), and its
# knee is that of one core: the Go runtime sees the CPUs of its affinity
# mask, so GOMAXPROCS is 1 and the transport layer runs 2 workers.
# Kamailio's 4 workers share the one core. The sipps share one core
# too: past about 12,000 REGISTER/s (24,000/s offered, 2026-12-07) four
# sipps on one core fell behind their own sockets, so such a step
# measures sipp, not the server (see each step's sipp socket drops).
# Unpinned (the default), the server and sipp share every core, as
# before.
#
# CPU quota: SERVER_CPU=0.5 (a number of CPUs) runs the servers in a
# cgroup of their own whose CPU time is capped at that much (the CFS
# quota of a 10 ms period, cgroup v1 or v2; root only), so that the load
# generators have the rest of the host. Unquoted, a 2× step on 2 cores
# measures the host more than the server: at 2× a REGISTER knee of
# 14,000/s the four sipps alone want more than the host has, the server
# gets what the scheduler leaves it, and its socket, behind, drops
# what it cannot read. Capped, the knee is that of the quota and 2× of
# it is what the server is offered, as a gateway in a container with a
# CPU limit would be. Go sets GOMAXPROCS from the quota (rounded up).
#
# Socket drops: every step reports the datagrams that the kernel dropped
# at sipp's sockets and at the server's SIP socket (/proc/net/udp, drops;
# sipp's sampled every half second while it runs, since the counter goes
# with the socket), and the largest backlog of the server's socket in
# those samples (rx_queue: bytes the kernel holds for it, counted as the
# kernel charges them, about 1-2 KiB per small datagram); $OUT/*.rxq has
# every sample. A timeout at sipp can be an answer that sipp itself
# dropped, its single thread behind its socket, not the server's doing.
#
# Settings (environment): SB_DATA (Switchboard's data directory, one
# subdirectory per target; default a new one on tmpfs, /dev/shm), DUR
# (10), REG_RATES, CALL_RATES, CALLERS (1), REGISTERS (1), DRAIN (0: seconds to wait
# between the REGISTER and the call halves, beyond the servers going idle,
# e.g. 35 to let the REGISTERs' transactions end), OVER_DUR (30),
# OVER_FACTOR (2; 0 leaves the overload steps out), NUSERS (1000),
# KAM_CHILDREN (4), KAM_SHM (1024), KAM_PKG (32), SKIP (register or call:
# leave that half out), PIN (0; 1: see Pinning), SERVER_CPUS (0), SIPP_CPUS (1),
# SERVER_CPU (empty: no quota; see CPU quota),
# OUT (a directory for logs; default a new temp dir). Everything is bounded: -m
# per run, -recv_timeout per message, -timeout per run, and every process
# started here is stopped by its pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIPP_DIR=$ROOT/test/sipp
TARGETS=${1:-both}
DUR=${DUR:-10}
REG_RATES=${REG_RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 11000 12000 14000 16000"}
CALL_RATES=${CALL_RATES:-"200 400 600 800 1000 1200 1400 1600 1800 2000 2400 2800 3200"}
OVER_DUR=${OVER_DUR:-30}
OVER_FACTOR=${OVER_FACTOR:-2}
NUSERS=${NUSERS:-1000}
KAM_CHILDREN=${KAM_CHILDREN:-4}
KAM_SHM=${KAM_SHM:-1024}
KAM_PKG=${KAM_PKG:-32}
PPROF_AT=${PPROF_AT:-}
SKIP=${SKIP:-}
CALLERS=${CALLERS:-1}
REGISTERS=${REGISTERS:-1}
DRAIN=${DRAIN:-0}
PASS=pw-secret
PIN=${PIN:-0}
SERVER_CPUS=${SERVER_CPUS:-0}
SIPP_CPUS=${SIPP_CPUS:-1}
# SRV and GEN prefix the commands that start the servers and the sipps:
# empty unless PIN=1.
SRV=()
GEN=()
case $PIN in
0) ;;
1)
	command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
	SRV=(taskset -c "$SERVER_CPUS")
	GEN=(taskset -c "$SIPP_CPUS")
	;;
*) echo "PIN must be 0 or 1" >&2; exit 2 ;;
esac
SERVER_CPU=${SERVER_CPU:-}
# CG is the cgroup of the servers under SERVER_CPU; empty without.
CG=
if [ -n "$SERVER_CPU" ]; then
	quota=$(awk -v c="$SERVER_CPU" 'BEGIN { q = int(c * 10000); if (c !~ /^[0-9.]+$/ || q < 1000) q = 0; print q }')
	((quota > 0)) || { echo "SERVER_CPU must be a number of CPUs, 0.1 or more" >&2; exit 2; }
	if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
		CG=/sys/fs/cgroup/bench-sip-$$
		mkdir "$CG" && echo "$quota 10000" >"$CG/cpu.max"
	elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
		CG=/sys/fs/cgroup/cpu/bench-sip-$$
		mkdir "$CG" && echo 10000 >"$CG/cpu.cfs_period_us" && echo "$quota" >"$CG/cpu.cfs_quota_us"
	else
		echo "SERVER_CPU needs the cgroup cpu controller (v1 or v2), as root" >&2
		exit 1
	fi
	# The process moves itself into the cgroup and becomes the server,
	# with its pid: what the script waits for and stops.
	SRV=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "${SRV[@]}")
fi
# sipp's socket buffers. Its default (128 KiB on this machine) overflowed
# at 4,000 REGISTER/s on a busy host: 240,000 datagrams dropped in sipp's
# socket against 916 in the gateway's, which sipp counts as the server's
# timeouts. The kernel caps it at net.core.rmem_max.
SIPP_BUF=${SIPP_BUF:-8388608}
OUT=${OUT:-$(mktemp -d /tmp/bench-sip.XXXXXX)}
mkdir -p "$OUT"
# Kamailio keeps its registrations in memory only (usrloc db_mode 0); so
# that both do the same work, Switchboard's journal goes to tmpfs, where
# its fdatasync costs nothing. SB_DATA=$OUT/sb-data measures it on disk.
if [ -z "${SB_DATA:-}" ]; then
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		SB_DATA=$(mktemp -d /dev/shm/bench-sip.XXXXXX)
		SB_DATA_TMP=$SB_DATA
	else
		SB_DATA=$OUT/sb-data
	fi
fi
PIDS=()
TICK=$(getconf CLK_TCK)

case $TARGETS in
both) LIST=(switchboard kamailio) ;;
stores) LIST=(switchboard redis) ;;
switchboard | redis | kamailio) LIST=("$TARGETS") ;;
*) echo "usage: $0 [both|stores|switchboard|redis|kamailio]" >&2; exit 2 ;;
esac
((CALLERS >= 1 && CALLERS <= 200)) || { echo "CALLERS must be 1 to 200" >&2; exit 2; }
((REGISTERS >= 1 && REGISTERS <= 200)) || { echo "REGISTERS must be 1 to 200" >&2; exit 2; }

cleanup() {
	local p
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	# A gateway shuts down gracefully; give it up to 5 s.
	local i alive
	for i in $(seq 1 50); do
		alive=0
		for p in "${PIDS[@]:-}"; do
			[ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	done
	[ -n "${SB_DATA_TMP:-}" ] && rm -rf "$SB_DATA_TMP"
	[ -n "$CG" ] && rmdir "$CG" 2>/dev/null
	return 0
}
trap cleanup EXIT
# A signal ends the run: without the exit, bash would go on after the
# step that was running.
trap 'exit 130' INT TERM

command -v sipp >/dev/null || { echo "sipp is not installed: apt-get install -y sip-tester" >&2; exit 1; }

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

# tree PID prints PID and its descendants.
tree() {
	local p=$1 c
	echo "$p"
	for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
		tree "$c"
	done
}

# cpu_us PID prints the CPU time (user + system) of PID's process tree in µs.
cpu_us() {
	local t=0 p f
	for p in $(tree "$1"); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) }
		set -- $f
		# Fields 14 and 15 of stat are the 12th and 13th after the name.
		t=$((t + ${12} + ${13}))
	done
	echo $((t * 1000000 / TICK))
}

# cpu_target TARGET prints the CPU time of TARGET's processes in µs: the
# server's tree and, for redis, the redis-server's.
cpu_target() {
	local t=0 p
	for p in ${SERVER_PIDS[$1]}; do
		t=$((t + $(cpu_us "$p")))
	done
	echo "$t"
}

# mem_target TARGET prints the memory of TARGET's processes in KiB.
mem_target() {
	local t=0 p
	for p in ${SERVER_PIDS[$1]}; do
		t=$((t + $(mem_kb "$p")))
	done
	echo "$t"
}

# mem_kb PID prints the memory of PID's process tree in KiB: the sum of
# their proportional set sizes (Kamailio's workers share their memory).
mem_kb() {
	local t=0 p v
	for p in $(tree "$1"); do
		v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# udp_drops PORT prints the drops of the UDP sockets bound to PORT (on any
# address; 0 when there is none).
udp_drops() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v p="$hex" 'NR>1 && substr($2, length($2)-4) == p {d+=$NF} END{print d+0}' /proc/net/udp /proc/net/udp6 2>/dev/null
}

# udp_rxq PORT prints the bytes waiting in the receive queues of the UDP
# sockets bound to PORT: datagrams the server has not read yet.
udp_rxq() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v p="$hex" 'NR>1 && substr($2, length($2)-4) == p {
		split($5, q, ":"); v = 0
		for (i = 1; i <= length(q[2]); i++) v = v * 16 + index("0123456789ABCDEF", toupper(substr(q[2], i, 1))) - 1
		b += v
	} END{print b+0}' /proc/net/udp /proc/net/udp6 2>/dev/null
}

# settle TARGET waits (at most 40 s) until TARGET's processes use less
# than 5 % of a core over half a second: the previous step's backlog is done.
settle() {
	local i a b
	for i in $(seq 1 80); do
		a=$(cpu_target "$1")
		sleep 0.5
		b=$(cpu_target "$1")
		[ $((b - a)) -lt 25000 ] && return 0
	done
}

# Users: u0..u(NUSERS-1), one password.
USERS_CSV=$OUT/users.csv
{
	echo SEQUENTIAL
	# u1 is the callee of the calls: registered by the REGISTER ladder
	# too, it would keep a binding per REGISTER step at that step's sipp
	# port, closed since, and every call would fork to all of them (each
	# dead branch an INVITE, an ICMP error and a client transaction).
	for ((i = 0; i < NUSERS; i++)); do
		((i == 1)) && continue
		echo "u$i;localhost;[authentication username=u$i password=$PASS]"
	done
} >"$USERS_CSV"
# With REGISTERS sipps, the k-th registers every REGISTERS-th user from uk.
for ((k = 0; k < REGISTERS; k++)); do
	awk -v n="$REGISTERS" -v k="$k" 'NR == 1 || (NR - 2) % n == k' "$USERS_CSV" >"$OUT/users-$k.csv"
done
USERS_ENV=$(for ((i = 0; i < NUSERS; i++)); do printf 'u%d:%s,' "$i" "$PASS"; done)
USERS_ENV=${USERS_ENV%,}
printf 'SEQUENTIAL\nlocalhost;u0;localhost\n' >"$OUT/caller.csv"
# The UAS's binding must outlast the run.
sed 's/Expires: 300/Expires: 3600/' "$SIPP_DIR/register-only.xml" >"$OUT/register-uas.xml"

RESULTS=$OUT/results.txt
: >"$RESULTS"
report() { echo "$*" | tee -a "$RESULTS"; }

# sstat FILE COLUMN prints COLUMN of the last line of a sipp -trace_stat file.
sstat() {
	awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next} {v=$c} END{print v+0}' "$1"
}

# PID is a target's server process (its tree: Kamailio's workers);
# SERVER_PIDS all the processes whose CPU and memory count for the target
# (with redis, the redis-server too). RT_CALLS and RT_OPS add up a
# ladder's round trips to Redis and its successful operations.
declare -A PORT PID SERVER_PIDS HPORT UASPORT KNEE KNEE_ACH PEAK PEAK_ACH RT_CALLS RT_OPS
# SPORT: each sipp's local port, by server, kind and instance, the same in
# every step: a REGISTER's Contact names it, so a user's binding is
# refreshed from step to step, as a phone's is, rather than joined by a
# new one per step (a binding lasts 300 s), which made each step of a
# ladder, and the step after the overload, cost more than the one before.
declare -A SPORT

# start_switchboard PORT [TARGET [ENV...]]: Switchboard as TARGET
# (switchboard), with the extra settings ENV (NAME=value).
start_switchboard() {
	local port=$1 t=${2:-switchboard} hport
	shift $(($# < 2 ? $# : 2))
	hport=$(free_port)
	HPORT[$t]=$hport
	mkdir -p "$SB_DATA/$t"
	env SWITCHBOARD_SIP_UDP=127.0.0.1:$port SWITCHBOARD_SIP_TCP=127.0.0.1:$port \
		SWITCHBOARD_HTTP=127.0.0.1:$hport SWITCHBOARD_ICE_PORT="$(free_port)" SWITCHBOARD_DATA_DIR="$SB_DATA/$t" \
		SWITCHBOARD_USERS="$USERS_ENV" SWITCHBOARD_LOG_LEVEL=warn SWITCHBOARD_PPROF=true "$@" \
		"${SRV[@]}" "$OUT/switchboard" >"$OUT/$t.log" 2>&1 &
	PIDS+=($!)
	PID[$t]=$!
	SERVER_PIDS[$t]="${SERVER_PIDS[$t]:-} $!"
	local i
	for i in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "$t not ready; see $OUT/$t.log" >&2
	return 1
}

# start_redis PORT: Switchboard in cluster mode on a redis-server of its
# own, on a free loopback port, without persistence.
start_redis() {
	local rport i
	command -v redis-server >/dev/null || { echo "redis-server is not installed: scripts/deps.sh installs it" >&2; return 1; }
	command -v redis-cli >/dev/null || { echo "redis-cli is not installed: scripts/deps.sh installs it" >&2; return 1; }
	rport=$(free_port)
	"${SRV[@]}" redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
		--dir "$OUT" >"$OUT/redis-server.log" 2>&1 &
	PIDS+=($!)
	SERVER_PIDS[redis]=$!
	for i in $(seq 1 100); do
		redis-cli -p "$rport" ping >/dev/null 2>&1 && break
		[ "$i" = 100 ] && { echo "redis-server not ready: $OUT/redis-server.log" >&2; return 1; }
		sleep 0.1
	done
	start_switchboard "$1" redis SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$rport/0"
}

# redis_calls TARGET prints the location store's calls to Redis so far
# (0 for a target without Redis).
redis_calls() {
	[ "$1" = redis ] || { echo 0; return; }
	{ curl -fsS "http://127.0.0.1:${HPORT[redis]}/metrics" || true; } |
		awk '$1 == "switchboard_cluster_redis_calls_total" {v=$2} END {printf "%d", v+0}'
}

start_kamailio() {
	local port=$1 mpath
	if ! command -v kamailio >/dev/null; then
		echo "installing kamailio with apt-get" >&2
		local sudo=()
		[ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kamailio >"$OUT/kam-install.log" 2>&1 ||
			{ echo "apt-get install kamailio failed: $OUT/kam-install.log" >&2; return 1; }
	fi
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
	"${SRV[@]}" kamailio -f "$OUT/kam/kamailio.cfg" -DD -E -m "$KAM_SHM" -M "$KAM_PKG" -P "$OUT/kam/kamailio.pid" \
		-Y "$OUT/kam" -w "$OUT/kam" >"$OUT/kam/kamailio.log" 2>&1 &
	PIDS+=($!)
	PID[kamailio]=$!
	SERVER_PIDS[kamailio]=$!
	sleep 2
	kill -0 "${PID[kamailio]}" || { echo "kamailio exited: $OUT/kam/kamailio.log" >&2; return 1; }
}

# step KIND TARGET RATE SECS TAG: one sipp run of KIND (register or call)
# against TARGET at RATE calls/s for SECS seconds (for calls with CALLERS
# above 1, CALLERS sipps at once sharing the rate). It sets the globals
# OK FAIL EXPECT (calls offered) ACH (calls/s achieved) and RT (round
# trips to Redis) and prints a line of results.
step() {
	local kind=$1 t=$2 r=$3 secs=$4 tag=$5 f server c0 c1 t0 t1 el maxmem=0 mon= rt0
	f=$OUT/$t-$kind-$tag-$r
	server=127.0.0.1:${PORT[$t]}
	local args nsipp=1 rk=$r
	if [ "$kind" = register ]; then
		args=(-sf "$SIPP_DIR/bench-register.xml")
		if ((REGISTERS > 1)); then
			nsipp=$REGISTERS
			rk=$(((r + REGISTERS - 1) / REGISTERS))
		fi
	else
		args=(-sf "$SIPP_DIR/uac-call.xml" -inf "$OUT/caller.csv" -au u0 -ap "$PASS" -auth_uri u1@localhost -s u1)
		if ((CALLERS > 1)); then
			nsipp=$CALLERS
			rk=$(((r + CALLERS - 1) / CALLERS))
		fi
	fi
	EXPECT=$((rk * nsipp * secs))
	if [ "$tag" = over ]; then
		# The memory of the server, every second while the load lasts.
		(while kill -0 "${PID[$t]}" 2>/dev/null; do mem_target "$t"; sleep 1; done >"$f.mem") &
		mon=$!
	fi
	if [ "$t" != kamailio ] &&
		{ { [ "$tag" != after ] && [[ " $PPROF_AT " == *" $kind:$r "* ]]; } || { [ "$tag" != ladder ] && [[ " $PPROF_AT " == *" $kind:$tag "* ]]; }; }; then
		(sleep 1 && curl -fsS -o "$f.pprof" "http://127.0.0.1:${HPORT[$t]}/debug/pprof/profile?seconds=$((secs - 2))" &&
			go tool pprof -top -nodecount=40 "$OUT/switchboard" "$f.pprof" >"$OUT/pprof-$t-$kind-$tag-$r.txt" 2>&1) &
		(sleep $((secs - 2)) && curl -fsS -o "$f.heap" "http://127.0.0.1:${HPORT[$t]}/debug/pprof/heap" &&
			go tool pprof -top -nodecount=40 -sample_index=inuse_space "$OUT/switchboard" "$f.heap" >"$OUT/heap-$t-$kind-$tag-$r.txt" 2>&1 &&
			go tool pprof -top -nodecount=40 -sample_index=inuse_objects "$OUT/switchboard" "$f.heap" >"$OUT/heapobj-$t-$kind-$tag-$r.txt" 2>&1) &
		(sleep $((secs - 2)) && curl -fsS -o "$OUT/metrics-$t-$kind-$tag-$r.txt" "http://127.0.0.1:${HPORT[$t]}/metrics") &
	fi
	rt0=$(redis_calls "$t")
	c0=$(cpu_target "$t")
	local sd0 ud0=0 sports=() smon
	sd0=$(udp_drops "${PORT[$t]}")
	[ "$kind" = call ] && ud0=$(udp_drops "${UASPORT[$t]}")
	t0=$(date +%s.%N)
	local k fk src pids=()
	for ((k = 0; k < nsipp; k++)); do
		fk=$f
		src=127.0.0.1
		if ((nsipp > 1)); then
			fk=$f-$k
			src=127.0.0.$((k + 2))
		fi
		[ -n "${SPORT[$t-$kind-$k]:-}" ] || SPORT[$t-$kind-$k]=$(free_port)
		sports+=("${SPORT[$t-$kind-$k]}")
		local inf=()
		if [ "$kind" = register ]; then
			inf=(-inf "$USERS_CSV")
			((nsipp > 1)) && inf=(-inf "$OUT/users-$k.csv")
		fi
		(cd "$OUT" && timeout $((secs * 4 + 60)) bash -c '"$@" >"$0.out" 2>&1; times' "$fk" \
			"${GEN[@]}" sipp "${args[@]}" "${inf[@]}" -i "$src" -p "${sports[k]}" -r "$rk" -m $((rk * secs)) -recv_timeout 5000 -buff_size "$SIPP_BUF" \
			-timeout $((secs * 4 + 40))s -nostdin -default_behaviors all,-abortunexp \
			-trace_err -error_file "$fk.err" -trace_stat -stf "$fk.csv" -fd 1 "$server" >"$fk.times") &
		pids+=($!)
	done
	# sipp's socket drops, sampled while its sockets live: each line the
	# sum over its sockets; and the bytes unread in the server's socket
	# (a backlog there is a wait that the server's own measures miss).
	(while :; do
		d=0
		for p in "${sports[@]}"; do d=$((d + $(udp_drops "$p"))); done
		echo "$d"
		udp_rxq "${PORT[$t]}" >>"$f.rxq"
		sleep 0.5
	done >"$f.sdrops") &
	smon=$!
	for k in "${pids[@]}"; do wait "$k" || true; done
	kill "$smon" 2>/dev/null || true
	wait "$smon" 2>/dev/null || true
	SIPP_DROPS=$(sort -n "$f.sdrops" | tail -1)
	# The callee's sipp (the UAS) lives across steps: what this step added.
	[ "$kind" = call ] && SIPP_DROPS=$((${SIPP_DROPS:-0} + $(udp_drops "${UASPORT[$t]}") - ud0))
	SERVER_DROPS=$(($(udp_drops "${PORT[$t]}") - sd0))
	SERVER_RXQ=$(sort -n "$f.rxq" 2>/dev/null | tail -1)
	t1=$(date +%s.%N)
	c1=$(cpu_target "$t")
	RT=$(($(redis_calls "$t") - rt0))
	if [ -n "$mon" ]; then
		kill "$mon" 2>/dev/null || true
		wait "$mon" 2>/dev/null || true
		maxmem=$(sort -n "$f.mem" | tail -1)
	fi
	el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
	OK=0 FAIL=0
	local tmo=0 n503=0 nora=0 retr=0 sippcpu=0 c
	for ((k = 0; k < nsipp; k++)); do
		fk=$f
		((nsipp > 1)) && fk=$f-$k
		c=$fk.csv
		OK=$((OK + $(sstat "$c" 'SuccessfulCall(C)')))
		FAIL=$((FAIL + $(sstat "$c" 'FailedCall(C)')))
		tmo=$((tmo + $(sstat "$c" 'FailedTimeoutOnRecv(C)') + $(sstat "$c" 'FailedMaxUDPRetrans(C)')))
		# The scenarios fail a call on a 503 through a regexp that never
		# matches, and check its Retry-After on the way.
		n503=$((n503 + $(sstat "$c" 'FailedRegexpDoesntMatch(C)')))
		nora=$((nora + $(sstat "$c" 'FailedRegexpHdrNotFound(C)')))
		retr=$((retr + $(sstat "$c" 'Retransmissions(C)')))
		# times: the second line is the children's (sipp's) user and system time.
		sippcpu=$((sippcpu + $(awk 'NR==2{ split($1,u,/[ms]/); split($2,s,/[ms]/); printf "%.0f", (u[1]*60+u[2]+s[1]*60+s[2])*1e6 } END{ if (NR<2) print 0 }' "$fk.times")))
	done
	ACH=$(awk -v o="$OK" -v e="$el" 'BEGIN{ if (e>0) printf "%.0f", o/e; else print 0 }')
	local per sper extra=
	per=$(awk -v c=$((c1 - c0)) -v o="$OK" 'BEGIN{ if (o>0) printf "%.0f", c/o; else print "-" }')
	sper=$(awk -v c="$sippcpu" -v o="$OK" 'BEGIN{ if (o>0) printf "%.0f", c/o; else print "-" }')
	extra+=", socket drops: sipp ${SIPP_DROPS:-0}, server $SERVER_DROPS, server's socket backlog at most $((${SERVER_RXQ:-0} / 1024)) KiB"
	[ -n "$mon" ] && extra+=", max memory $((maxmem / 1024)) MiB"
	((nsipp > 1)) && extra+=", sipps $nsipp"
	[ "$t" = redis ] && extra+=", redis round trips $RT ($(awk -v c="$RT" -v o="$OK" 'BEGIN{ if (o>0) printf "%.2f", c/o; else print "-" }') each)"
	report "$(printf '%-11s %-8s %-6s rate=%-5s calls=%-6s ok=%-6s failed=%-5s (timeouts %s, 503 %s, 503 without Retry-After %s) retrans=%-5s elapsed=%-6s achieved=%-5s/s cpu/call: server %s µs, sipp %s µs%s' \
		"$t" "$kind" "$tag" "$r" "$EXPECT" "$OK" "$FAIL" "$tmo" "$n503" "$nora" "$retr" "$el" "$ACH" "$per" "$sper" "$extra")"
}

# ladder KIND: the interleaved ladders of every target for KIND; sets KNEE.
ladder() {
	local kind=$1 rates=$2 r t
	declare -A done=()
	for t in "${LIST[@]}"; do KNEE[$t]=0; KNEE_ACH[$t]=0; PEAK[$t]=0; PEAK_ACH[$t]=0; RT_CALLS[$t]=0; RT_OPS[$t]=0; done
	for r in $rates; do
		local any=0
		for t in "${LIST[@]}"; do
			[ -n "${done[$t]:-}" ] && continue
			any=1
			settle "$t"
			step "$kind" "$t" "$r" "$DUR" ladder
			RT_CALLS[$t]=$((${RT_CALLS[$t]} + RT))
			RT_OPS[$t]=$((${RT_OPS[$t]} + OK))
			if [ "$ACH" -gt "${PEAK_ACH[$t]}" ]; then
				PEAK[$t]=$r
				PEAK_ACH[$t]=$ACH
			fi
			if [ "$FAIL" != 0 ] || [ "$OK" != "$EXPECT" ]; then
				done[$t]=1
			else
				KNEE[$t]=$r
				KNEE_ACH[$t]=$ACH
			fi
		done
		[ $any = 0 ] && break
	done
	for t in "${LIST[@]}"; do
		report "$(printf '%-11s %-8s highest rate with 0 failed: %s/s (%s/s achieved)' "$t" "$kind" "${KNEE[$t]}" "${KNEE_ACH[$t]}")"
		if [ "$t" = redis ]; then
			report "$(printf '%-11s %-8s redis round trips on the ladder: %s for %s successful (%s each)' "$t" "$kind" \
				"${RT_CALLS[$t]}" "${RT_OPS[$t]}" "$(awk -v c="${RT_CALLS[$t]}" -v o="${RT_OPS[$t]}" 'BEGIN{ if (o>0) printf "%.2f", c/o; else print "-" }')")"
		fi
	done
}

# overload KIND: each target at OVER_FACTOR times its knee for OVER_DUR
# seconds, then at its knee for DUR seconds. A target without a rate of 0
# failures (a busy machine makes one 503 or timeout out of 10,000 likely)
# is taken at the rate of its best goodput on the ladder instead.
overload() {
	local kind=$1 t r knee kach what
	[ "$OVER_FACTOR" != 0 ] || return 0
	for t in "${LIST[@]}"; do
		knee=${KNEE[$t]} kach=${KNEE_ACH[$t]} what=knee
		if [ "$knee" -eq 0 ]; then
			knee=${PEAK[$t]} kach=${PEAK_ACH[$t]} what="best rate ($knee/s, not 0 failures)"
		fi
		[ "$knee" -gt 0 ] || continue
		settle "$t"
		r=$(awk -v k="$knee" -v f="$OVER_FACTOR" 'BEGIN{printf "%d", k*f}')
		step "$kind" "$t" "$r" "$OVER_DUR" over
		report "$(printf '%-11s %-8s goodput at %s× the %s: %s/s, %s%% of its %s/s' \
			"$t" "$kind" "$OVER_FACTOR" "$what" "$ACH" "$(awk -v a="$ACH" -v k="$kach" 'BEGIN{ if (k>0) printf "%.0f", 100*a/k; else print "-" }')" "$kach")"
		step "$kind" "$t" "$knee" "$DUR" after
	done
}

echo "logs in $OUT; $(date -u '+%F %T UTC'); $(nproc) cores; load:$(uptime | sed 's/.*load average://')" | tee -a "$RESULTS"
if [[ " ${LIST[*]} " == *" switchboard "* ]] || [[ " ${LIST[*]} " == *" redis "* ]]; then
	(cd "$ROOT" && go build -o "$OUT/switchboard" ./cmd/switchboard)
fi
for t in "${LIST[@]}"; do
	PORT[$t]=$(free_port)
	"start_$t" "${PORT[$t]}"
done
report "servers: $(for t in "${LIST[@]}"; do printf '%s pids %s port %s; ' "$t" "$(echo ${SERVER_PIDS[$t]})" "${PORT[$t]}"; done)kamailio children $KAM_CHILDREN, shm ${KAM_SHM} MB; callers $CALLERS; registers $REGISTERS; $([ "$PIN" = 1 ] && echo "pinned: servers on CPU $SERVER_CPUS, sipps on CPU $SIPP_CPUS" || echo "not pinned")$([ -n "$CG" ] && echo "; servers capped at $SERVER_CPU CPU")"

if [ "$SKIP" != register ]; then
	ladder register "$REG_RATES"
	overload register
fi

if [ "$SKIP" != call ]; then
	# Let the REGISTERs' transactions end first, if asked.
	[ "$SKIP" = register ] || [ "$DRAIN" = 0 ] || sleep "$DRAIN"
	# The callee: a sipp UAS per target, registered as u1 on its port.
	for t in "${LIST[@]}"; do
		settle "$t"
		UASPORT[$t]=$(free_port)
		(cd "$OUT" && timeout 20 "${GEN[@]}" sipp -sf "$OUT/register-uas.xml" -inf "$SIPP_DIR/domain.csv" \
			-au u1 -ap "$PASS" -s u1 -i 127.0.0.1 -p "${UASPORT[$t]}" -m 1 -timeout 10s -timeout_error \
			-nostdin "127.0.0.1:${PORT[$t]}" >"$OUT/$t-uas-register.out" 2>&1) ||
			{ echo "$t: UAS registration failed: $OUT/$t-uas-register.out" >&2; exit 1; }
		(cd "$OUT" && exec timeout 3600 "${GEN[@]}" sipp -sf "$SIPP_DIR/uas-answer.xml" -i 127.0.0.1 -p "${UASPORT[$t]}" -buff_size "$SIPP_BUF" \
			-m 10000000 -timeout 3500s -nostdin -default_behaviors all,-abortunexp -trace_err \
			-error_file "$OUT/$t-uas.err" "127.0.0.1:${PORT[$t]}" >"$OUT/$t-uas.out" 2>&1) &
		PIDS+=($!)
	done
	sleep 0.5
	ladder call "$CALL_RATES"
	overload call
fi

echo "load after:$(uptime | sed 's/.*load average://')" | tee -a "$RESULTS"
echo "results: $RESULTS"
