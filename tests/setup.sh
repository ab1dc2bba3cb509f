#!/bin/sh
# Installs what kps-agent needs to build and test on Debian 12 (as root),
# then configures and builds it in ./build. A minimal root (debootstrap
# --variant=minbase, a container image) lacks commands a bookworm image
# happens to carry: openssl (cp_check's certificates), strace, pkill,
# systemd-sysusers (the network side's user below).
set -eu
cd "$(dirname "$0")/.."

PACKAGES="meson ninja-build pkg-config gcc clang python3 \
	libssh-dev libevent-dev libcjson-dev libsystemd-dev libinih-dev libcmocka-dev libssl-dev libselinux1-dev libsepol-dev libseccomp-dev \
	openssh-server openssh-client sshpass python3-cryptography \
	openssl strace procps systemd"

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

# The network side's user ([agent] unprivileged_user), made as the packages
# make it: systemd-sysusers on the file they install (unit/kps-agent.sysusers),
# so that the tests run the daemon's network side as the real user.
systemd-sysusers "$PWD/unit/kps-agent.sysusers"

# The clouds' real Node SDKs the emulator's tests drive, at the versions
# tests/emulator/sdk/package-lock.json pins (Debian 12: nodejs 18, npm 9).
sdk=tests/emulator/sdk
if ! command -v npm >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if ! cmp -s "$sdk/package-lock.json" "$sdk/node_modules/.kps-installed-lock"; then
	(cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	cp "$sdk/package-lock.json" "$sdk/node_modules/.kps-installed-lock"
fi

if [ -f build/build.ninja ]; then
	meson setup --reconfigure build >/dev/null
else
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null
