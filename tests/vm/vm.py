"""The VM suite's machinery: images, qemu with KVM or TCG, the emulator, ssh.

run.py holds the checks; this file only starts and talks to things."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("KPS_VM_CACHE", "/var/cache/kps-vm")
CP_PORT = int(os.environ.get("KPS_VM_CP_PORT", "47800"))
API_TOKEN = "vm-test-api-token"
AGENT_TOKEN = "vm-test-agent-token"
PROJECT = "0605767c1a80d5762f1ec00b4e2ad5f1"
PASSWORDS = {"root": "kps-root-Pw-1", "kpsuser": "kps-user-Pw-1"}


class Failure(Exception):
    pass


def log(*a):
    print("vm:", *a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def harness_key():
    """The suite's own admin key in root's authorized_keys (an admin line the
    agent must keep), stable across runs so that cached images carry it."""
    os.makedirs(CACHE, exist_ok=True)
    key = os.path.join(CACHE, "harness_ed25519")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kps-vm-harness", "-f", key],
                       check=True)
    return key


def suite_image(suite, deb):
    """Built (or cached) image dir for SUITE with DEB installed, keyed by the
    day (the mirror moves), the .deb and the scripts that make the image."""
    h = hashlib.sha256(open(deb, "rb").read())
    for f in ("build-image.sh", "guest-setup.sh"):
        h.update(open(os.path.join(HERE, f), "rb").read())
    digest = h.hexdigest()[:12]
    day = time.strftime("%Y%m%d", time.gmtime())
    d = os.path.join(CACHE, f"img-{suite}-{day}-{digest}")
    if os.path.exists(os.path.join(d, "rootfs.img")):
        log(f"{suite}: cached image {d}")
        return d
    for old in os.listdir(CACHE):
        if old.startswith(f"img-{suite}-"):
            shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
    t = time.monotonic()
    env = dict(os.environ, KPS_VM_HARNESS_PUB=harness_key() + ".pub", KPS_VM_CP_PORT=str(CP_PORT))
    r = subprocess.run(["nice", os.path.join(HERE, "build-image.sh"), suite, deb, d + ".part"], env=env)
    if r.returncode != 0:
        raise Failure(f"{suite}: image build failed")
    os.rename(d + ".part", d)
    log(f"{suite}: image built in {time.monotonic() - t:.0f} s")
    return d


def inject_image(image, work):
    """An image builder's disk (raw or qcow2): a raw copy in WORK with the
    suite's settings (guest-setup.sh) put into its root filesystem. Returns
    (disk, kernel, initrd): a partitioned disk boots by its own boot loader
    (kernel None); a bare file system by the kernel and initrd in its /boot."""
    raw = os.path.join(work, "disk.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", image, raw], check=True)
    # Each partition through a loop device of its own at its offset (a
    # container's /dev has no loopNpM nodes); a bare file system as it is.
    table = subprocess.run(["sfdisk", "-J", raw], capture_output=True, text=True)
    parts = json.loads(table.stdout)["partitiontable"]["partitions"] if table.returncode == 0 else []
    ss = 512
    spans = [(p["start"] * ss, p["size"] * ss) for p in parts] or [(0, os.path.getsize(raw))]
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    loop = None
    kernel = initrd = None
    try:
        for off, size in spans:
            loop = subprocess.run(["losetup", "--find", "--show", "--offset", str(off), "--sizelimit", str(size), raw],
                                  check=True, capture_output=True, text=True).stdout.strip()
            if subprocess.run(["mount", loop, mnt], capture_output=True).returncode == 0:
                if os.path.exists(os.path.join(mnt, "etc/os-release")):
                    break
                subprocess.run(["umount", mnt], check=True)
            subprocess.run(["losetup", "-d", loop], check=True)
            loop = None
        else:
            raise Failure(f"{image}: no partition with a root file system the host can mount")
        if not os.path.exists(os.path.join(mnt, "usr/sbin/kps-agent")):
            raise Failure(f"{image}: kps-agent is not installed in it")
        shutil.copy(os.path.join(HERE, "guest-setup.sh"), os.path.join(mnt, "tmp/guest-setup.sh"))
        shutil.copy(harness_key() + ".pub", os.path.join(mnt, "tmp/harness.pub"))
        subprocess.run(["chroot", mnt, "sh", "/tmp/guest-setup.sh", str(CP_PORT), "/tmp/harness.pub"], check=True)
        os.unlink(os.path.join(mnt, "tmp/guest-setup.sh"))
        os.unlink(os.path.join(mnt, "tmp/harness.pub"))
        if not parts:
            boot = os.path.join(mnt, "boot")
            for name, prefix in (("vmlinuz", "vmlinuz-"), ("initrd.img", "initrd.img-")):
                found = sorted(f for f in os.listdir(boot) if f.startswith(prefix))
                if not found:
                    raise Failure(f"{image}: a bare file system without {boot}/{prefix}*")
                shutil.copy(os.path.join(boot, found[-1]), os.path.join(work, name))
            kernel, initrd = os.path.join(work, "vmlinuz"), os.path.join(work, "initrd.img")
    finally:
        if loop:
            subprocess.run(["umount", mnt], capture_output=True)
            subprocess.run(["losetup", "-d", loop], check=True)
    return raw, kernel, initrd


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError:
        return False


class Emulator:
    def __init__(self, exe, work):
        self.log = open(os.path.join(work, "emulator.log"), "w")
        self.proc = subprocess.Popen([exe, "--listen", f"127.0.0.1:{CP_PORT}", "--api-token", API_TOKEN,
                                      "--agent-token", AGENT_TOKEN], stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise Failure(f"emulator said {line!r} (port {CP_PORT} taken? set KPS_VM_CP_PORT and rebuild)")
        self.url = "http://" + line.split()[-1]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-Auth-Token": API_TOKEN, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, json.loads(text) if text else None

    def import_keypair(self, name, pub):
        st, body = self.call("POST", f"/v3/{PROJECT}/keypairs", {"keypair": {"name": name, "public_key": pub}})
        if st != 200:
            raise Failure(f"import {name}: {st} {body}")

    def submit(self, kind, body):
        st, res = self.call("POST", f"/v3/{PROJECT}/keypairs/{kind}", body)
        if st != 202:
            raise Failure(f"{kind}: {st} {res}")
        return res["task_id"]

    def wait(self, task_id, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, t = self.call("GET", f"/v3/{PROJECT}/tasks/{task_id}")
            if st == 200 and t["task_status"].startswith(("SUCCESS_", "FAILED_")):
                return t
            time.sleep(0.02)
        raise Failure(f"task {task_id} not done in {timeout} s")

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class Qemu:
    """One boot. ACCEL is 'kvm' or 'tcg'; the guest's sshd port 22 and 2222
    are forwarded to free host ports; the virtio-serial port
    org.kps.agent.0 is a unix socket in WORK."""

    def __init__(self, work, disk, accel, cpu, kernel=None, initrd=None, uuid="3b0c2f9e-5a1d-4c2e-9f6b-7a8d9e0f1a2b"):
        self.work = work
        self.accel = accel
        self.cpu = cpu
        self.uuid = uuid
        self.port = {22: free_port(), 2222: free_port()}
        self.serial = os.path.join(work, f"serial-{accel}.log")
        self.vport = os.path.join(work, "vport.sock")
        overlay = os.path.join(work, "overlay.qcow2")
        if os.path.exists(overlay):
            os.unlink(overlay)
        fmt = "qcow2" if open(disk, "rb").read(4) == b"QFI\xfb" else "raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", os.path.abspath(disk), overlay],
                       check=True)
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for g, h in self.port.items())
        argv = ["nice", "qemu-system-x86_64", "-accel", accel, "-cpu", cpu, "-m", "1024", "-smp", "2", "-nographic", "-nodefaults",
                "-uuid", uuid, "-serial", f"file:{self.serial}",
                "-drive", f"file={overlay},if=virtio,format=qcow2",
                "-netdev", f"user,id=n0,{fwd}", "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=kps,path={self.vport},server=on,wait=off",
                "-device", "virtserialport,chardev=kps,name=org.kps.agent.0",
                "-device", "virtio-rng-pci"]
        if kernel:
            argv += ["-kernel", kernel, "-initrd", initrd, "-append", "root=/dev/vda rw console=ttyS0"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=open(os.path.join(work, f"qemu-{accel}.log"), "w"),
                                     stderr=subprocess.STDOUT)

    def alive_within(self, seconds):
        """True once the guest shows life: a kernel line on the serial port or
        sshd's banner on the forward. False if qemu died or stayed silent."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if b"Linux version" in open(self.serial, "rb").read():
                    return True
            except FileNotFoundError:
                pass
            try:
                with socket.create_connection(("127.0.0.1", self.port[22]), 1) as s:
                    s.settimeout(1)
                    if s.recv(8).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def channel(self, task, timeout=120):
        """One task over the virtio-serial port; its result line."""
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.vport)
        s.settimeout(timeout)
        try:
            s.sendall((json.dumps(task) + "\n").encode())
            out = b""
            while not out.endswith(b"\n"):
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    raise Failure(f"no result on the virtio port within {timeout} s for {task.get('task_id')}")
                if not chunk:
                    raise Failure("the virtio port closed before a result")
                out += chunk
            return json.loads(out.decode().splitlines()[-1])
        finally:
            s.close()


SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=10"]


def ssh_key(qemu, user, key, cmd="true", guest_port=22, timeout=90):
    """A real ssh login with KEY only; (ok, output)."""
    argv = ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-i", key, "-p", str(qemu.port[guest_port]),
            f"{user}@127.0.0.1", cmd]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    return r.returncode == 0, r.stdout + r.stderr


def ssh_password(qemu, user, password, guest_port=22, timeout=90):
    argv = ["sshpass", "-p", password, "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1",
            "-p", str(qemu.port[guest_port]), f"{user}@127.0.0.1", "true"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def wait_for(pred, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False
