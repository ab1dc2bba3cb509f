#!/usr/bin/env python3
"""The VM suite: boots Debian images with the project's .deb under qemu
(KVM when it really starts, TCG otherwise) and checks the agent from the
host, through the virtio-serial port and the control-plane emulator, each
task followed by a real ssh login. See tests/vm/run.sh for the options.

Prints one line per check (`PASS name` / `FAIL name: why`), the figures
(`figure ...`), and exits 1 when any check failed."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm  # noqa: E402
from vm import Failure, log, ssh_key, ssh_password, wait_for  # noqa: E402

RESULTS = []
FIGURES = []


def record(image, name, ok, why=""):
    RESULTS.append((f"{image}:{name}", ok))
    print(f"{'PASS' if ok else 'FAIL'} {image}:{name}{'' if ok else ': ' + why}", flush=True)


def figure(image, accel, what, seconds):
    FIGURES.append((image, accel, what, seconds))
    print(f"figure {image} {accel} {what}: {seconds:.2f} s", flush=True)


class Keys:
    def __init__(self, work):
        self.dir = work
        self.path = {}

    def get(self, name):
        if name not in self.path:
            p = os.path.join(self.dir, f"key-{name}")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"vm-{name}", "-f", p], check=True)
            self.path[name] = p
        return self.path[name]

    def pub(self, name):
        return open(self.get(name) + ".pub").read().strip()

    def private(self, name):
        return open(self.get(name)).read()


class Run:
    """One image: boot, the checks, the figures."""

    def __init__(self, name, disk, kernel, initrd, emulator_exe, accel, work, socket_activation=False):
        self.name = name
        self.disk, self.kernel, self.initrd = disk, kernel, initrd
        self.work = work
        self.keys = Keys(work)
        self.cp = vm.Emulator(emulator_exe, work)
        self.accel_pref = accel
        self.socket_activation = socket_activation
        self.q = None
        self.n = 0
        self.only = set()

    # ---- helpers ----
    def check(self, name, fn):
        if self.only and name not in self.only:
            return True
        try:
            fn()
            record(self.name, name, True)
            return True
        except Failure as e:
            record(self.name, name, False, str(e))
        except Exception as e:  # a harness error is this check's failure, not the suite's end
            record(self.name, name, False, f"{type(e).__name__}: {e}")
        self.dump_journal(name)
        return False

    def dump_journal(self, name):
        """What the agent logged up to a failure, for whoever reads the CI log."""
        ok, out = ssh_key(self.q, "root", vm.harness_key(),
                          "journalctl -b -o short-monotonic -u kps-agent -n 25 --no-pager; "
                          "journalctl -b -o short-monotonic -u ssh.socket -u ssh.service -n 12 --no-pager; "
                          "ss -ltnp | grep -E ':(22|2222) '", timeout=30)
        for line in (out if ok else "(no journal: " + out.strip()[-200:] + ")").splitlines():
            print(f"info {self.name} after {name}: {line}", flush=True)

    def root(self, cmd, timeout=120, port=22):
        ok, out = ssh_key(self.q, "root", vm.harness_key(), cmd, guest_port=port, timeout=timeout)
        if not ok:
            raise Failure(f"guest command failed: {cmd}: {out.strip()[-500:]}")
        return out

    def tid(self, what):
        self.n += 1
        return f"vm-{self.name}-{what}-{self.n}-{int(time.time())}"

    def channel(self, task, want="SUCCESS", code=None):
        t = time.monotonic()
        res = self.q.channel(task)
        figure(self.name, self.q.accel, "call->result virtio " + task["task_id"].split("-")[2], time.monotonic() - t)
        if res.get("status") != want or (code and res.get("error_code") != code):
            raise Failure(f"virtio task {task['task_id']}: {res}")
        return res

    def cp_task(self, kind, body, want="SUCCESS", code=None):
        t = time.monotonic()
        tid = self.cp.submit(kind, body)
        res = self.cp.wait(tid, 120)
        figure(self.name, self.q.accel, f"call->result control-plane {kind}", time.monotonic() - t)
        if not res["task_status"].startswith(want) or (code and res.get("error_code") != code):
            raise Failure(f"control-plane {kind}: {res}")
        return res

    def login(self, user, key, port=22, want=True):
        ok, out = ssh_key(self.q, user, self.keys.get(key), guest_port=port)
        if ok != want:
            raise Failure(f"ssh {user} with key {key} on {port}: {'refused' if want else 'accepted'} {out.strip()[-300:]}")

    def login_pw(self, user, want=True, port=22):
        ok = ssh_password(self.q, user, vm.PASSWORDS[user], guest_port=port)
        if ok != want:
            raise Failure(f"ssh {user} with its password: {'refused' if want else 'accepted'}")

    # ---- boot ----
    def boot(self):
        """Boots with the first accelerator that really runs the guest."""
        cands = []
        if self.accel_pref in ("auto", "kvm") and vm.kvm_usable():
            cands += [("kvm", "host"), ("kvm", "host,-arch-capabilities")]
        if self.accel_pref in ("auto", "tcg"):
            cands.append(("tcg", "max"))
        first = time.monotonic()
        for accel, cpu in cands:
            self.q = vm.Qemu(self.work, self.disk, accel, cpu, self.kernel, self.initrd)
            if self.q.alive_within(20 if accel == "kvm" else 180):
                log(f"{self.name}: booting under {accel} (-cpu {cpu})")
                if self.q.started > first + 1:
                    figure(self.name, accel, "accelerators tried before this one", self.q.started - first)
                return
            log(f"{self.name}: {accel} -cpu {cpu} did not run the guest; next")
            self.q.stop()
        raise Failure("no accelerator ran the guest")

    def run(self):
        k0 = "pending"
        self.cp.import_keypair("vm-pending", self.keys.pub(k0))
        pending = self.cp.submit("associate", {"keypair_name": "vm-pending", "server": {"id": vm_uuid()}})
        self.boot()
        t0 = self.q.started
        try:
            res = self.cp.wait(pending, 600)
        except Failure as e:
            record(self.name, "pending_task_applied", False, str(e))
            return
        figure(self.name, self.q.accel, "qemu start->pending task result", time.monotonic() - t0)
        record(self.name, "pending_task_applied", res["task_status"] == "SUCCESS_RESET", json.dumps(res))
        if not wait_for(lambda: ssh_key(self.q, "root", vm.harness_key(), timeout=30)[0], 300, 2):
            record(self.name, "ssh_up", False, "no ssh login within 300 s")
            return
        figure(self.name, self.q.accel, "qemu start->first ssh login", time.monotonic() - t0)
        self.check("pending_before_sshd", lambda: self.pending_before_sshd(pending))
        self.check("pending_key_logs_in", lambda: self.login("root", k0))
        if self.socket_activation:
            self.check("switch_to_ssh_socket", self.switch_to_socket)
        self.check("virtio_back_to_back", self.back_to_back)
        self.check("associate_root_keypair_proof_virtio", self.root_keypair_proof)
        self.check("associate_user_no_proof_virtio", self.user_no_proof)
        self.check("associate_user_password_proof_virtio", self.user_password_proof)
        self.check("refused_password_is_auth_failed", self.refused_password)
        self.check("after_refusals_key_change_works", self.after_refusals)
        self.check("penalised_loopback_then_task", self.penalised_loopback)
        self.check("disable_password_on_control_plane", self.disable_password_on)
        self.check("disable_password_off_control_plane", self.disable_password_off)
        self.check("disassociate_control_plane", self.disassociate)
        self.check("journal_task_fields", self.journal_fields)
        self.check("no_tmpfiles_duplicates", self.no_tmpfiles_dup)
        self.check("security_score", self.security)
        self.check("watchdog", self.watchdog)
        # Last but the purge: a port change that breaks its promise can
        # leave sshd where the later checks cannot reach it.
        self.check("port_change_and_back", self.port_change)
        if not self.socket_activation and self.has_ssh_socket():
            self.check("socket_port_change_and_back", self.socket_port_change)
        self.check("no_sandbox_denials", self.no_denials)
        self.check("purge_leaves_nothing", self.purge)

    # ---- checks ----
    def pending_before_sshd(self, task_id):
        out = self.root(f"journalctl -o json TASK_ID={task_id} | tail -n 1")
        if not out.strip():
            raise Failure(f"no journal entry with TASK_ID={task_id}")
        task_us = int(json.loads(out)["__MONOTONIC_TIMESTAMP"])
        unit = "ssh.service"
        sshd_us = int(self.root(f"systemctl show -P ExecMainStartTimestampMonotonic {unit}").strip() or 0)
        if not sshd_us or task_us >= sshd_us:
            raise Failure(f"task result at {task_us} us, sshd started at {sshd_us} us")

    def has_ssh_socket(self):
        """Debian ships ssh.socket, off by default: Accept=yes (a sshd per
        connection) in 12, Accept=no (one sshd handed the socket) in 13 and
        later. Both are tested where they exist."""
        return self.root("systemctl list-unit-files ssh.socket --no-legend | wc -l").strip() != "0"

    def switch_to_socket(self):
        self.root("systemctl disable --now ssh.service && systemctl enable --now ssh.socket")
        self.root("systemctl is-active ssh.socket")

    def back_to_back(self):
        """The host connects, sends, reads its result, disconnects, and at
        once connects again with the next task, as a control side that
        opens the port per task does: every task gets its result. (Closing
        the port at the host's disconnect drops what the host sent in
        between: the third of three refused proofs never came back.)"""
        lost = []
        for i in range(40):
            tid = self.tid(f"b2b{i}")
            try:
                res = self.q.channel({"task_id": tid, "action": "associate"}, timeout=20)
            except (Failure, OSError) as e:
                lost.append(f"{tid}: {type(e).__name__} {e}")
                continue
            if res.get("task_id") != tid or res.get("error_code") != "KPS.AGENT.INVALID_TASK":
                lost.append(f"{tid}: {res}")
        if lost:
            raise Failure(f"{len(lost)} of 40 back-to-back tasks got no result of their own: " + "; ".join(lost[:3]))

    def root_keypair_proof(self):
        self.channel({"task_id": self.tid("rootkey"), "action": "associate", "keypair_name": "root1",
                      "public_key": self.keys.pub("root1"),
                      "server": {"id": vm_uuid(), "auth": {"type": "keypair", "key": self.keys.private("pending")}}})
        self.login("root", "root1")
        self.login("root", "pending", want=False)

    def user_no_proof(self):
        self.channel({"task_id": self.tid("user"), "action": "associate", "user": "kpsuser", "keypair_name": "user1",
                      "public_key": self.keys.pub("user1"), "server": {"id": vm_uuid()}})
        self.login("kpsuser", "user1")

    def user_password_proof(self):
        self.channel({"task_id": self.tid("userpw"), "action": "associate", "user": "kpsuser",
                      "keypair_name": "user2", "public_key": self.keys.pub("user2"),
                      "server": {"id": vm_uuid(), "auth": {"type": "password", "key": vm.PASSWORDS["kpsuser"]}}})
        self.login("kpsuser", "user2")
        self.login("kpsuser", "user1", want=False)
        self.login_pw("kpsuser")

    def refused_password(self):
        for i in range(3):
            t = time.monotonic()
            self.channel({"task_id": self.tid("badpw"), "action": "associate", "user": "kpsuser",
                          "keypair_name": "user3", "public_key": self.keys.pub("user3"),
                          "server": {"id": vm_uuid(), "auth": {"type": "password", "key": "wrong-password"}}},
                         want="FAILED", code="KPS.AGENT.AUTH_FAILED")
        self.login("kpsuser", "user2")

    def after_refusals(self):
        # Stock PerSourcePenalties (9.8+): three refused proofs must not
        # lock the agent's own later probes out.
        self.channel({"task_id": self.tid("afterpen"), "action": "associate", "user": "kpsuser",
                      "keypair_name": "user4", "public_key": self.keys.pub("user4"), "server": {"id": vm_uuid()}})
        self.login("kpsuser", "user4")

    def penalised_loopback(self):
        """Stock PerSourcePenalties (OpenSSH 9.8+), no exemption made by
        hand: refused logins from the guest's own loopback (as the agent's
        refused proofs and unauthenticated probes are, at full speed) get
        127.0.0.1 penalised; then a key change. sshd must refuse none of the
        agent's connections (a generous probe_timeout could otherwise wait
        the penalty out), and the change must work. Under TCG the agent's
        own refusals come too slowly to add up, so the refusals are made
        here, quickly, from inside the guest."""
        if "persourcepenalties" not in self.root("sshd -T | grep -i '^persourcepenalties ' ; true").lower():
            print(f"info {self.name}: sshd has no PerSourcePenalties", flush=True)
            return
        t0 = self.root("date +%s").strip()
        self.root("rm -f /root/stranger && ssh-keygen -q -t ed25519 -N '' -f /root/stranger && "
                  "for i in 1 2 3 4 5 6 7 8; do ssh -i /root/stranger -o BatchMode=yes -o IdentitiesOnly=yes "
                  "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 "
                  "kpsuser@127.0.0.1 true 2>/dev/null; done; true", timeout=300)
        active = self.root(f"journalctl -o cat -t sshd --since=@{t0} | grep -c 'activating .*penalty' ; true").strip()
        if active == "0":
            print(f"info {self.name}: the refusals activated no penalty (PerSourcePenaltyExemptList?)", flush=True)
        t1 = self.root("date +%s").strip()
        res = self.q.channel({"task_id": self.tid("penalised"), "action": "associate", "user": "kpsuser",
                              "keypair_name": "user5", "public_key": self.keys.pub("user5"),
                              "server": {"id": vm_uuid()}})
        drops = self.root(f"journalctl -o cat -t sshd --since=@{t1} | "
                          "grep -c 'drop connection .*from \\[127.0.0.1\\].*penalty' ; true").strip()
        if res.get("status") != "SUCCESS":
            raise Failure(f"the task after the penalty: {res}")
        if drops != "0":
            raise Failure(f"sshd dropped {drops} of the agent's connections as penalised "
                          f"(the task took {res.get('duration_ms')} ms)")
        self.login("kpsuser", "user5")

    def disable_password_on(self):
        self.cp.import_keypair("root2", self.keys.pub("root2"))
        self.cp_task("associate", {"keypair_name": "root2", "server": {
            "id": vm_uuid(), "auth": {"type": "keypair", "key": self.keys.private("root1")}, "disable_password": True}})
        self.login("root", "root2")
        self.login_pw("kpsuser", want=False)

    def disable_password_off(self):
        self.cp_task("associate", {"keypair_name": "root2", "server": {"id": vm_uuid(), "disable_password": False}})
        self.login_pw("kpsuser")
        self.login("root", "root2")

    def port_change(self):
        """SUCCESS means the new sshd serves the new port: a login at once
        must work, to 2222 and back to 22. When a login fails at once, how
        long it took to work is a figure, and the check fails. Then two
        changes with no pause between (2222, and 22 within a second of the
        first's result): both succeed and 22 serves at once."""
        if "port" not in self.keys.path:
            self.cp.import_keypair("port", self.keys.pub("port"))
        problems = []
        for port in (2222, 22):
            self.cp_task("associate", {"keypair_name": "port", "server": {"id": vm_uuid(), "port": port}})
            if self.sshd_socket_active(port):
                # Debian's ssh.socket has no generator of its own: the
                # package's moves it, and the unit says so.
                listen = self.root("systemctl show -P Listen ssh.socket", port=port)
                if f":{port} " not in listen + " ":
                    problems.append(f"port {port}: ssh.socket listens on {listen.strip()!r}")
            t = time.monotonic()
            ok, out = ssh_key(self.q, "root", self.keys.get("port"), guest_port=port, timeout=30)
            if not ok:
                problems.append(f"port {port}: no login right after SUCCESS ({out.strip()[-120:]})")
                if wait_for(lambda: ssh_key(self.q, "root", self.keys.get("port"), guest_port=port, timeout=10)[0],
                            60, 0.5):
                    figure(self.name, self.q.accel, f"port {port}: SUCCESS->login works", time.monotonic() - t)
                else:
                    problems.append(f"port {port}: no login within 60 s of SUCCESS")
        # A second change within a second of the first's result, no login
        # in between: it must succeed, and 22 serve at once.
        self.cp_task("associate", {"keypair_name": "port", "server": {"id": vm_uuid(), "port": 2222}})
        t = time.monotonic()
        try:
            self.cp_task("associate", {"keypair_name": "port", "server": {"id": vm_uuid(), "port": 22}})
        except Failure as e:
            problems.append(f"a second change {time.monotonic() - t:.1f} s after the first's result: {e}")
        else:
            ok, out = ssh_key(self.q, "root", self.keys.get("port"), guest_port=22, timeout=30)
            if not ok:
                problems.append(f"after two quick changes: no login on 22 right after SUCCESS ({out.strip()[-120:]})")
        if not wait_for(lambda: ssh_key(self.q, "root", vm.harness_key(), guest_port=22, timeout=10)[0], 5, 1):
            # Put sshd back on 22 through the virtio port, for the checks after this one.
            self.q.channel({"task_id": self.tid("portfix"), "action": "associate", "keypair_name": "port",
                            "public_key": self.keys.pub("port"), "server": {"id": vm_uuid(), "port": 22}})
            wait_for(lambda: ssh_key(self.q, "root", vm.harness_key(), guest_port=22, timeout=10)[0], 60, 1)
        if problems:
            raise Failure("; ".join(problems))

    def sshd_socket_active(self, port=22):
        return self.root("systemctl is-active ssh.socket; true", port=port).strip() == "active"

    def socket_port_change(self):
        """Debian 13 and later with ssh.socket (socket activation), which
        no generator of the distribution moves: the port change and back
        keep their promise there too (the socket moves, a login at once
        works), and sshd.service comes back as it was."""
        self.root("systemctl disable --now ssh.service && systemctl enable --now ssh.socket")
        try:
            self.port_change()
            # Any other change restarts the socket-activated sshd: a SIGHUP
            # made Debian 13's exit ("Cannot bind any address").
            for off in (True, False):
                self.cp_task("associate", {"keypair_name": "port",
                                           "server": {"id": vm_uuid(), "disable_password": off}})
                self.login_pw("kpsuser", want=not off)
                self.login("root", "port")
        finally:
            # Both stopped in one transaction: a socket-activated sshd that
            # outlives its socket's stop keeps port 22 bound, and the
            # service's own start would then fail to bind.
            self.root("systemctl disable ssh.socket; systemctl stop ssh.socket ssh.service; "
                      "systemctl enable --now ssh.service")

    def disassociate(self):
        self.cp_task("disassociate", {"server": {"id": vm_uuid()}}, want="SUCCESS_UNBIND")
        self.login("root", "root2", want=False)
        self.login_pw("kpsuser")
        ok, _ = ssh_key(self.q, "root", vm.harness_key())
        if not ok:
            raise Failure("the admin's own key line did not survive")

    def journal_fields(self):
        out = self.root("journalctl -o json SYSLOG_IDENTIFIER=kps-agent RESULT=SUCCESS | wc -l").strip()
        if int(out) < 5:
            raise Failure(f"only {out} journal entries with RESULT=SUCCESS")

    def no_denials(self):
        """The sandbox never got in the agent's way: no seccomp kill (audit
        type 1326, or the unit's process ending on SIGSYS), no AppArmor
        denial, no EPERM/EACCES in the agent's own lines."""
        out = self.root("journalctl -b -o cat _TRANSPORT=kernel | grep -E 'type=1326|apparmor=\"DENIED\"' ;"
                        " journalctl -b -o cat SYSLOG_IDENTIFIER=kps-agent | grep -iE "
                        "'operation not permitted|permission denied|access denied' ;"
                        " journalctl -b -o cat -u kps-agent | grep -E 'status=31/SYS' ; true")
        if out.strip():
            raise Failure("denials in the guest journal: " + out.strip()[-800:])

    def no_tmpfiles_dup(self):
        # The distribution's own duplicates (trixie: /run/lock) are not ours.
        out = self.root("journalctl -b -o cat | grep -i 'duplicate line' | "
                        "grep -E 'kps-agent|/run/sshd' ; true")
        if out.strip():
            raise Failure(out.strip()[-500:])

    def security(self):
        out = self.root("systemd-analyze security --no-pager kps-agent.service | tail -n 1")
        m = re.search(r"exposure level for kps-agent.service: ([0-9.]+)", out)
        if not m:
            raise Failure(f"no score: {out}")
        guest = float(m.group(1))
        offline = offline_score()
        print(f"figure {self.name} security: guest {guest} offline {offline}", flush=True)
        if offline is None or guest > offline:
            raise Failure(f"guest {guest} > offline {offline}")

    def watchdog(self):
        self.root("mkdir -p /run/systemd/system/kps-agent.service.d && printf '[Service]\\nWatchdogSec=4s\\n' "
                  ">/run/systemd/system/kps-agent.service.d/99-vm-watchdog.conf && systemctl daemon-reload && "
                  "systemctl restart kps-agent")
        pid = self.root("systemctl show -P MainPID kps-agent").strip()
        time.sleep(12)
        if self.root("systemctl show -P MainPID kps-agent").strip() != pid:
            raise Failure("the agent was restarted while it pinged the watchdog")
        self.root(f"kill -STOP {pid}")
        if not wait_for(lambda: "atchdog timeout" in self.root("journalctl -b -o cat -u kps-agent | tail -n 30"), 40, 2):
            raise Failure("a stopped agent was not caught by the watchdog")
        self.root(f"kill -CONT {pid}; true")
        self.root("rm -r /run/systemd/system/kps-agent.service.d && systemctl daemon-reload && "
                  "systemctl reset-failed kps-agent; systemctl restart kps-agent && systemctl is-active kps-agent")

    def purge(self):
        """apt-get purge takes every file of the package, its state and
        runtime directories, its units and the generator's drop-ins. What
        stays by design: the users' keys and the agent's block in
        sshd_config (removing either would change who can log in)."""
        files = [f for f in self.root("dpkg -L kps-agent | while read -r f; do "
                                      "[ -d \"$f\" ] || echo \"$f\"; done").split()]
        self.root("rm -f /etc/kps-agent/conf.d/50-vm-test.conf /etc/kps-agent/vm-test.token && "
                  "rmdir /etc/kps-agent/conf.d 2>/dev/null; "
                  "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kps-agent >/dev/null && systemctl daemon-reload")
        left = self.root("for f in " + " ".join(files) +
                         " /var/lib/kps-agent /etc/kps-agent /run/kps-agent "
                         "/run/systemd/generator/kps-agent.service.d; do [ -e $f ] && echo $f; done; "
                         "systemctl list-unit-files 'kps-agent*' --no-legend; "
                         "find /etc/systemd /run/systemd/system -name 'kps-agent*'; true")
        block = self.root("sed -n '/# kps-agent: begin/,/# kps-agent: end/p' /etc/ssh/sshd_config")
        print(f"info {self.name} sshd_config block after purge: {block.strip()!r}", flush=True)
        ok, _ = ssh_key(self.q, "root", vm.harness_key())
        if left.strip():
            raise Failure("left behind: " + " ".join(left.split()))
        if not ok:
            raise Failure("ssh login failed after the purge")

    def close(self):
        if self.q:
            self.q.stop()
        self.cp.close()


def vm_uuid():
    return "3b0c2f9e-5a1d-4c2e-9f6b-7a8d9e0f1a2b"


_OFFLINE = {}


def offline_score():
    if "v" not in _OFFLINE:
        out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                              os.path.join(vm.TOP, "unit/kps-agent.service")], capture_output=True, text=True).stdout
        m = re.search(r"exposure level for [^:]*: ([0-9.]+)", out)
        _OFFLINE["v"] = float(m.group(1)) if m else None
    return _OFFLINE["v"]


def summarise():
    """One line per image and accelerator: the boot figures and the median
    call->result per route (the figures, never an assertion)."""
    import statistics
    keys = sorted({(i, a) for i, a, _, _ in FIGURES})
    for image, accel in keys:
        mine = [(w, v) for i, a, w, v in FIGURES if (i, a) == (image, accel)]
        pick = {w: v for w, v in mine}
        parts = [f"{w} {pick[w]:.1f} s" for w in ("qemu start->pending task result", "qemu start->first ssh login")
                 if w in pick]
        for route in ("virtio", "control-plane"):
            vals = [v for w, v in mine if w.startswith("call->result " + route)]
            if vals:
                parts.append(f"call->result {route} median {statistics.median(vals):.2f} s (n={len(vals)})")
        print(f"summary {image} {accel}: " + "; ".join(parts), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", action="append", default=[], help="bookworm, trixie, forky, trixie-socket (repeatable)")
    ap.add_argument("--image", help="an image builder's disk image (raw or qcow2) with kps-agent installed; "
                    "partitioned: boots by its boot loader; a bare file system: by the kernel in its /boot")
    ap.add_argument("--deb", help="the .deb for --suite images")
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--socket-activation", action="store_true", help="also trixie with ssh.socket")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--only", default="", help="run only these checks (comma-separated names), after the boot ones")
    a = ap.parse_args()
    vm.harness_key()
    jobs = []
    for s in a.suite:
        if s == "trixie-socket":
            jobs.append((s, "trixie", True))
            continue
        jobs.append((s, s, False))
        if a.socket_activation and s == "trixie":
            jobs.append(("trixie-socket", s, True))
    if a.image:
        jobs.append(("image", None, False))
    for name, suite, sock in jobs:
        t = time.monotonic()
        work = tempfile.mkdtemp(prefix=f"kps-vm-{name}.", dir=os.environ.get("TMPDIR", "/var/tmp"))
        r = None
        try:
            if suite:
                d = vm.suite_image(suite, a.deb)
                disk, kernel, initrd = os.path.join(d, "rootfs.img"), os.path.join(d, "vmlinuz"), os.path.join(d, "initrd.img")
            else:
                disk, kernel, initrd = vm.inject_image(a.image, work)
            r = Run(name, disk, kernel, initrd, a.emulator, a.accel, work, sock)
            r.only = set(filter(None, a.only.split(",")))
            r.run()
        except Failure as e:
            record(name, "run", False, str(e))
        finally:
            if r:
                r.close()
            print(f"vm: {name} took {time.monotonic() - t:.0f} s (work dir {work})", flush=True)
            if not a.keep and all(ok for n, ok in RESULTS if n.startswith(name + ":")):
                subprocess.run(["rm", "-rf", work])
    summarise()
    failed = [n for n, ok in RESULTS if not ok]
    print(f"vm: {len(RESULTS) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
