#!/bin/sh
# Turns an image the suite built (a bare ext4 root, rootfs.img) into what an
# image builder ships: a partitioned raw disk that boots by itself (MBR,
# extlinux), so that `run.sh --image` is checked on that kind of disk too.
#
#   tests/vm/make-disk.sh ROOTFS.IMG OUT.raw
#
# Needs root, sfdisk (fdisk), extlinux and syslinux-common.
set -eu
rootfs=$1
out=$2
size=$(stat -c %s "$rootfs")
truncate -s $((size + 1048576)) "$out"
printf 'label: dos\n2048,,83,*\n' | sfdisk -q "$out"
dd if="$rootfs" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
dd if=/usr/lib/EXTLINUX/mbr.bin of="$out" bs=440 count=1 conv=notrunc status=none
# The partition by offset: a container's /dev has no loopNpM nodes.
loop=$(losetup --find --show --offset 1048576 --sizelimit "$size" "$out")
mnt=$(mktemp -d)
trap 'umount "$mnt" 2>/dev/null; losetup -d "$loop"; rmdir "$mnt"' EXIT
mount "$loop" "$mnt"
kernel=$(cd "$mnt/boot" && ls vmlinuz-* | tail -n 1)
initrd=$(cd "$mnt/boot" && ls initrd.img-* | tail -n 1)
mkdir -p "$mnt/boot/extlinux"
cat >"$mnt/boot/extlinux/extlinux.conf" <<CONF
DEFAULT linux
TIMEOUT 1
LABEL linux
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=/dev/vda1 rw console=ttyS0
CONF
printf '/dev/vda1 / ext4 defaults 0 1\n' >"$mnt/etc/fstab"
extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
