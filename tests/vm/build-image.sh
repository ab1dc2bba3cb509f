#!/bin/sh
# Builds a bootable Debian root for the VM suite, as an image builder would:
# debootstrap from the Debian mirror, a cloud kernel, systemd, dbus,
# openssh-server, systemd-networkd (DHCP on the first NIC), then the
# project's own .deb installed with apt in the chroot (policy-rc.d keeps it
# from starting there). Writes an ext4 filesystem image (no partition table,
# no boot loader: run.py boots it with the kernel and initrd beside it).
#
#   tests/vm/build-image.sh SUITE DEB OUTDIR     (DEB -: only cache the base)
#
# Environment: KPS_VM_HARNESS_PUB (the suite's admin key, required with a
# DEB), KPS_VM_CP_PORT (the emulator's port on the host, default 47800).
#
# OUTDIR gets rootfs.img, vmlinuz, initrd.img. The debootstrap stage, the
# slow part, is cached as $KPS_VM_CACHE/SUITE-YYYYMMDD.tar (default cache
# /var/cache/kps-vm): reruns on the same day start from it.
set -eu

suite=$1
deb=$2
out=$3
mirror=${KPS_VM_MIRROR:-http://deb.debian.org/debian}
cache=${KPS_VM_CACHE:-/var/cache/kps-vm}
day=$(date -u +%Y%m%d)
base="$cache/$suite-$day.tar"

log() { echo "build-image[$suite]: $*" >&2; }

for tool in debootstrap mkfs.ext4 tar; do
	command -v "$tool" >/dev/null 2>&1 || { log "$tool is missing (tests/vm/setup.sh)"; exit 2; }
done
[ "$deb" = - ] || [ -r "$deb" ] || { log "no such .deb: $deb"; exit 2; }
mkdir -p "$cache" "$out"

root=$(mktemp -d "${TMPDIR:-/var/tmp}/kps-vm-root.XXXXXX")
cleanup() {
	for m in dev/pts dev proc sys; do
		mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
	done
	rm -rf "$root"
}
trap cleanup EXIT INT TERM

# The base root: everything but the project's package.
if [ ! -s "$base" ]; then
	log "debootstrap $suite from $mirror (cached as $base)"
	pkgs=systemd-sysv,dbus,linux-image-cloud-amd64,openssh-server,openssh-client,iproute2,udev,kmod,ca-certificates,passwd,login,procps
	# An older debootstrap has no script for a newer suite: sid's fits.
	script=
	[ -e "/usr/share/debootstrap/scripts/$suite" ] || script=/usr/share/debootstrap/scripts/sid
	debootstrap --variant=minbase --include="$pkgs" "$suite" "$root" "$mirror" $script >"$out/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$out/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
	# apt in a testing image: the mirror's Release may be past Valid-Until.
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99kps-vm-valid-until"
	echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
	rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages
	tar -C "$root" --numeric-owner --xattrs -cf "$base.part" . && mv "$base.part" "$base"
	# Older days' bases of this suite go.
	find "$cache" -maxdepth 1 -name "$suite-*.tar" ! -name "$suite-$day.tar" -delete
	rm -rf "$root" && mkdir "$root"
fi
# DEB "-": only make sure the day's base is cached.
[ "$deb" != - ] || exit 0
log "root from $base"
tar -C "$root" --numeric-owner --xattrs -xf "$base"

# System settings an image builder gives every image.
echo "kps-vm-$suite" >"$root/etc/hostname"
printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/50-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service \
	"$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# network-online.target means an address, as on a cloud image: the agent
# waits for it to fetch tasks queued while the VM was stopped.
mkdir -p "$root/etc/systemd/system/network-online.target.wants"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
	"$root/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
: >"$root/etc/machine-id"

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/kps-agent.deb"
log "apt-get install the project's .deb"
chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/kps-agent.deb' \
	>"$out/install.log" 2>&1 || { tail -n 20 "$out/install.log" >&2; log "installing the .deb failed"; exit 1; }
rm -f "$root/tmp/kps-agent.deb" "$root/usr/sbin/policy-rc.d"
rm -rf "$root/var/cache/apt/archives/"*.deb
for m in dev/pts dev proc sys; do umount -l "$root/$m"; done

# The suite's own settings: tests/vm/guest-setup.sh in the root.
cp "$(dirname "$0")/guest-setup.sh" "$root/tmp/guest-setup.sh"
cp "$KPS_VM_HARNESS_PUB" "$root/tmp/harness.pub"
chroot "$root" sh /tmp/guest-setup.sh "${KPS_VM_CP_PORT:-47800}" /tmp/harness.pub
rm -f "$root/tmp/guest-setup.sh" "$root/tmp/harness.pub"

cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
rm -f "$out/rootfs.img"
log "mkfs.ext4 -d"
mkfs.ext4 -q -F -L kpsroot -d "$root" "$out/rootfs.img" 3G
log "done: $out"
