#!/bin/sh
# Installs what kps-agent needs to build and test on Debian 12 (as root),
# then configures and builds it in ./build. A minimal root (debootstrap
# --variant=minbase, a container image) lacks commands a bookworm image
# happens to carry: openssl (cp_check's certificates), strace, pkill.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="meson ninja-build pkg-config gcc clang python3 \
	libssh-dev libevent-dev libcjson-dev libsystemd-dev libinih-dev libcmocka-dev libssl-dev \
	openssh-server openssh-client sshpass \
	openssl strace procps"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# policy-rc.d keeps the package from starting the host's own sshd.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
mkdir -p /run/sshd

if [ -f build/build.ninja ]; then
	meson setup --reconfigure build >/dev/null
else
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null
