#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing:
#   - sipp (Debian package sip-tester): plays phones and trunks against the gateway;
#   - chromium (Debian package chromium): the browser for the softphone tests;
#   - ip (iproute2) and unshare (util-linux): the network namespaces of the
#     tests that name foreign hosts or need many source addresses;
#   - iptables and sysctl (procps): the NAT routers and firewalls of the
#     simulated internet (internal/netsim, test/e2e TestCallsAcrossTheInternet);
#   - turnserver (coturn): the TURN server of the relay-only call test (the
#     tests start their own on loopback; the package's service is not used);
#   - redis-server: the shared location store of the cluster tests (they
#     start their own on loopback; the package's service is not used);
#   - nginx: the reverse proxy in front of the gateway in the browser tests;
#   - openssl and certutil (libnss3-tools): the test CA those tests make,
#     and the NSS database through which Chromium trusts it;
#   - baresip (baresip-core, with VP8 and a fake camera, and baresip-ffmpeg,
#     for H.264): the SIP video phone of the softphone's video tests;
#   - the softphone's npm packages, once webclient/package-lock.json exists.
# Nothing is downloaded when everything is already there. Debian packages
# are installed with apt-get, as root or through sudo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v iptables >/dev/null 2>&1 || [[ -x /usr/sbin/iptables ]] || missing+=(iptables)
command -v sysctl >/dev/null 2>&1 || [[ -x /usr/sbin/sysctl ]] || missing+=(procps)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
[[ -f /usr/lib/baresip/modules/avcodec.so ]] || missing+=(baresip-ffmpeg)

if ((${#missing[@]} > 0)); then
	if [[ $EUID -eq 0 ]]; then
		as_root=()
	elif command -v sudo >/dev/null 2>&1; then
		# Without a terminal nobody can type a password: fail at once
		# instead of hanging a CI run.
		if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
	else
		echo "deps: need root or sudo to install ${missing[*]}; install them by hand or run as root" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]} with apt-get"
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# Without recommends: chromium's would pull in systemd, avahi and
	# printing services that a headless test browser never uses.
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	for bin in sipp chromium ip unshare turnserver openssl certutil redis-server baresip; do
		if ! command -v "$bin" >/dev/null 2>&1; then
			echo "deps: $bin is still missing after apt-get install" >&2
			exit 1
		fi
	done
fi

if [[ -f webclient/package-lock.json ]]; then
	if ! command -v npm >/dev/null 2>&1; then
		echo "deps: webclient needs npm (Node.js); install it, e.g. apt-get install npm" >&2
		exit 1
	fi
	echo "deps: npm ci in webclient/"
	(cd webclient && npm ci --no-audit --no-fund)
fi

echo "deps: sipp $(command -v sipp), chromium $(command -v chromium), turnserver $(command -v turnserver), redis-server $(command -v redis-server)"
