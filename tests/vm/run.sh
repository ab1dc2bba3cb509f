#!/bin/sh
# The VM suite (tests/vm/README in the top README): boots Debian images with
# the project's .deb under qemu and checks the agent from the host.
#
#   tests/vm/run.sh [--suite bookworm|trixie|forky|trixie-socket]... [--socket-activation]
#                   [--image FILE] [--deb FILE] [--accel auto|kvm|tcg] [--keep]
#
# Without --suite or --image: bookworm, trixie (also with ssh.socket) and
# forky. --image FILE checks an image builder's own disk (raw or qcow2, with
# kps-agent and openssh-server installed, booting by itself under qemu): it
# is copied, never changed. --deb defaults to a fresh packaging/build-deb.sh.
# Needs root (debootstrap, chroot, loop mounts). Images are cached under
# /var/cache/kps-vm (KPS_VM_CACHE), keyed by suite, day and the .deb.
set -eu
cd "$(dirname "$0")/../.."

need="debootstrap:debootstrap qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils ssh:openssh-client \
	sshpass:sshpass mkfs.ext4:e2fsprogs losetup:mount sfdisk:fdisk"
missing=
for pair in $need; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

deb=
args=
while [ $# -gt 0 ]; do
	case $1 in
	--deb) deb=$2; shift 2 ;;
	--suite | --image | --accel) args="$args $1 $2"; shift 2 ;;
	*) args="$args $1"; shift ;;
	esac
done
case " $args " in
*" --suite "* | *" --image "*) ;;
*) args="$args --suite bookworm --suite trixie --suite forky --socket-activation" ;;
esac

emulator=build/tests/emulator/kps-control-plane
if [ ! -x "$emulator" ]; then
	echo "vm: $emulator is missing: tests/setup.sh builds it" >&2
	exit 2
fi
case " $args " in
*" --suite "*)
	if [ -z "$deb" ]; then
		dist=$(mktemp -d)
		trap 'rm -rf "$dist"' EXIT
		packaging/build-deb.sh "$dist" >"$dist/build.log" 2>&1 || { tail -n 20 "$dist/build.log"; exit 2; }
		deb=$(ls "$dist"/kps-agent_*.deb)
	fi
	args="$args --deb $deb"
	;;
esac
# shellcheck disable=SC2086
python3 tests/vm/run.py --emulator "$emulator" $args
