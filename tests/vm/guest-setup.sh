#!/bin/sh
# Runs inside the guest's root (chroot) before its first boot: the VM
# suite's own settings on top of the image, nothing the package would not
# see on a real VM. Used for the images build-image.sh makes and injected
# into an image builder's own (run.sh --image).
#
#   guest-setup.sh CONTROL_PLANE_PORT HARNESS_PUBKEY_FILE
#
# - a normal user `kpsuser` and root, with the passwords run.py proves;
# - the agent's drop-in: the control-plane emulator on the host (qemu user
#   networking: 10.0.2.2) with a bearer token, the virtio-serial port, and
#   timeouts for an emulated (TCG) guest;
# - the suite's own key in root's authorized_keys: an admin's line, which
#   every task must keep byte for byte;
# - where sshd has PerSourcePenalties (9.8+), an exemption for the host as
#   qemu's user networking shows it (10.0.2.2): the suite's own refused
#   logins must not lock the suite out. Not for the agent: it connects from
#   the guest's loopback, which stays as the distribution ships it.
set -eu
port=$1
harness_pub=$2

mkdir -p -m 700 /root/.ssh
cat "$harness_pub" >>/root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys

mkdir -p /etc/ssh/sshd_config.d /run/sshd
echo 'PerSourcePenaltyExemptList 10.0.2.2' >/etc/ssh/sshd_config.d/01-vm-test-harness.conf
if ! /usr/sbin/sshd -t -f /etc/ssh/sshd_config 2>/dev/null; then
	rm /etc/ssh/sshd_config.d/01-vm-test-harness.conf
fi

id kpsuser >/dev/null 2>&1 || useradd -m -s /bin/sh kpsuser
echo 'kpsuser:kps-user-Pw-1' | chpasswd
echo 'root:kps-root-Pw-1' | chpasswd

mkdir -p /etc/kps-agent/conf.d
# The agent reads conf.d only beside its main file; the package ships it.
[ -e /etc/kps-agent/kps-agent.conf ] || : >/etc/kps-agent/kps-agent.conf
printf 'vm-test-agent-token\n' >/etc/kps-agent/vm-test.token
chmod 600 /etc/kps-agent/vm-test.token
cat >/etc/kps-agent/conf.d/50-vm-test.conf <<CONF
# tests/vm: the host's control-plane emulator and the virtio-serial port.
[control_plane]
url = http://10.0.2.2:$port
token_file = /etc/kps-agent/vm-test.token
poll_wait = 20

[channel]
device = /dev/virtio-ports/org.kps.agent.0

# Under TCG the guest runs ten times slower or more than the VMs the
# defaults are made for: a key exchange alone can take 5 s.
[sshd]
connect_timeout = 20
probe_timeout = 40

[agent]
task_timeout = 180
CONF

mkdir -p /var/log/journal
