#!/usr/bin/env python3
"""Integration cases: the built kps-agent against a real sshd on loopback,
checked with the real ssh client. `cases.py --list` names them (meson
registers one test per name); `cases.py AGENT NAME` runs one."""

import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox as sb  # noqa: E402

CASES = {}
USER_LINE = 'from="10.0.0.0/8",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJzIG93biBsaW5lIGtlcHQgYnl0ZSBmb3IgYnl0ZQ admin-line\n'


def case(fn):
    CASES[fn.__name__] = fn
    return fn


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def slow_reload(box, seconds):
    """A reload command that takes a while: room to kill the agent or send
    it a signal mid-task."""
    return reload_command(box, "slow-reload", f"#!/bin/sh\nsleep {seconds}\nkill -HUP $(cat {box.pidfile})\n")


def reload_command(box, name, script):
    """Writes script as box.dir/name and makes it the agent's reload."""
    path = os.path.join(box.dir, name)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o755)
    with open(box.agent_config) as f:
        conf = f.read()
    with open(box.agent_config, "w") as f:
        f.write(re.sub(r"(?m)^reload = .*$", f"reload = command:{path}", conf))
    return path


def snapshot(box):
    """Bytes, owner and mode of every file the agent may touch."""
    paths = [box.sshd_config, box.keys_path(), os.path.dirname(box.keys_path())]
    paths += [os.path.join(box.dropins, n) for n in sorted(os.listdir(box.dropins))]
    snap = {}
    for p in paths:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            snap[p] = None
            continue
        data = b""
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                data = f.read()
        snap[p] = (st.st_mode, st.st_uid, st.st_gid, hashlib.sha256(data).hexdigest())
    return snap


def reset_home(box, keys_text=None, mode=0o600):
    home = box.home()
    ssh = os.path.join(home, ".ssh")
    subprocess.run(["rm", "-rf", ssh], check=True)
    if keys_text is None:
        return
    pw = pwd.getpwnam(box.user)
    os.mkdir(ssh, 0o700)
    os.chown(ssh, pw.pw_uid, pw.pw_gid)
    path = os.path.join(ssh, "authorized_keys")
    with open(path, "w", newline="") as f:
        f.write(keys_text)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)


def read_keys(box, binary=False):
    with open(box.keys_path(), "rb" if binary else "r", **({} if binary else {"newline": ""})) as f:
        return f.read()


def expect(box, agent, task, code=None, raw=None, exit_code=None):
    rc, res, err, out = box.apply(task, agent, raw=raw)
    want_rc = exit_code if exit_code is not None else (0 if code is None else 1)
    check(rc == want_rc, f"exit {rc}, wanted {want_rc}; stdout={out!r} stderr={err[-600:]!r}")
    if res is None:
        return res
    status = "SUCCESS" if code is None else "FAILED"
    check(res.get("status") == status, f"status {res.get('status')}, wanted {status}: {res}")
    if code:
        check(res.get("error_code") == "KPS.AGENT." + code, f"code {res.get('error_code')}, wanted {code}: {res}")
        check(res.get("error_msg") and "\n" not in res["error_msg"], f"bad error_msg: {res}")
    return res


def unchanged_after(box, agent, task, code, raw=None):
    before = snapshot(box)
    res = expect(box, agent, task, code, raw=raw)
    after = snapshot(box)
    check(before == after, f"{code}: the VM changed: {before} -> {after}")
    return res


# -- associate and disassociate ------------------------------------------

@case
def associate_basic(box, agent):
    reset_home(box, USER_LINE)
    res = expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    check(res["server_id"] == box.server_id, f"server_id {res}")
    check(box.login_key("a"), "new key does not log in")
    check(not box.login_key("b"), "an unrelated key logs in")
    text = read_keys(box)
    check(text.startswith(USER_LINE), "the admin's line is not kept byte for byte at the top")
    check("# kps-agent:" in text and "kp1" in text, "no marker naming the key pair")
    check(box.login_password(), "password login was turned off without being asked")


@case
def associate_replaces_earlier(box, agent):
    reset_home(box, USER_LINE)
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    expect(box, agent, box.task(keypair_name="kp2", public_key=box.keys.pub("b")))
    check(box.login_key("b"), "new key does not log in")
    check(not box.login_key("a"), "the earlier association's key still logs in")
    check(read_keys(box).startswith(USER_LINE), "admin line lost")


@case
def associate_several(box, agent):
    reset_home(box)
    kps = [{"name": "kp1", "public_key": box.keys.pub("a")},
           {"name": "kp2", "public_key": box.keys.pub("b", "ecdsa")}]
    expect(box, agent, box.task(keypairs=kps))
    check(box.login_key("a"), "first key does not log in")
    check(box.login_key("b", kind="ecdsa"), "second key does not log in")


@case
def creates_ssh_dir(box, agent):
    reset_home(box)
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    pw = pwd.getpwnam(box.user)
    st = os.stat(os.path.dirname(box.keys_path()))
    check(st.st_uid == pw.pw_uid and (st.st_mode & 0o777) == 0o700, f"~/.ssh mode {oct(st.st_mode)} uid {st.st_uid}")
    st = os.stat(box.keys_path())
    check(st.st_uid == pw.pw_uid and (st.st_mode & 0o777) == 0o600, f"keys mode {oct(st.st_mode)} uid {st.st_uid}")
    check(box.login_key("a"), "new key does not log in")


@case
def keeps_crlf_and_unterminated(box, agent):
    original = "# admin\r\n" + USER_LINE.rstrip("\n") + "\r\n#last line without newline"
    reset_home(box, original)
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    text = read_keys(box, binary=True)
    check(text.startswith(original.encode()), f"original bytes changed: {text[:200]!r}")
    check(box.login_key("a"), "key after a CRLF file does not log in")
    expect(box, agent, box.task("disassociate"))
    text = read_keys(box, binary=True)
    check(text == original.encode() + b"\n", f"after disassociate: {text!r}")


@case
def disassociate_all(box, agent):
    reset_home(box, USER_LINE)
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                server={"disable_password": True}))
    check(not box.login_password(), "password login still works after disable_password")
    expect(box, agent, box.task("disassociate"))
    check(not box.login_key("a"), "removed key still logs in")
    check(box.login_password(), "password login not restored")
    check(read_keys(box) == USER_LINE, f"file not back to the admin's line: {read_keys(box)!r}")


@case
def disassociate_named(box, agent):
    reset_home(box)
    kps = [{"name": "kp1", "public_key": box.keys.pub("a")}, {"name": "kp2", "public_key": box.keys.pub("b")}]
    expect(box, agent, box.task(keypairs=kps))
    expect(box, agent, box.task("disassociate", keypair_name="kp1"))
    check(not box.login_key("a"), "kp1 still logs in")
    check(box.login_key("b"), "kp2 was removed too")


@case
def disassociate_restores_cloud_init_password(box, agent):
    box2 = box.reconfigure(dropin="PasswordAuthentication no\n")
    reset_home(box2)
    check(not box2.login_password(), "precondition: password login off by the drop-in")
    res = expect(box2, agent, box2.task("disassociate"))
    check(box2.login_password(), "password login not restored over the drop-in")
    check("password" in box2.offered_methods(), "password not offered")
    del res


@case
def disable_password(box, agent):
    reset_home(box)
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": True}))
    methods = box.offered_methods()
    check("password" not in methods and "keyboard-interactive" not in methods, f"still offered: {methods}")
    check(not box.login_password(), "password login works")
    check(box.login_key("a"), "key does not log in")
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": False}))
    check(box.login_password(), "disable_password false did not turn password login on")


@case
def disable_password_beats_dropin(box, agent):
    box2 = box.reconfigure(dropin="PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n")
    reset_home(box2)
    expect(box2, agent, box2.task(keypair_name="kp1", public_key=box2.keys.pub("a"),
                                  server={"disable_password": True}))
    methods = box2.offered_methods()
    check("password" not in methods and "keyboard-interactive" not in methods, f"drop-in won: {methods}")
    with open(os.path.join(box2.dropins, "50-cloud-init.conf")) as f:
        check(f.read() == "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n", "drop-in edited")


@case
def match_block_overrides(box, agent):
    box2 = box.reconfigure(extra_sshd=f"Match User {box.user}\n\tPasswordAuthentication yes\n")
    reset_home(box2, USER_LINE)
    unchanged_after(box2, agent, box2.task(keypair_name="kp1", public_key=box2.keys.pub("a"),
                                           server={"disable_password": True}), "SSHD_CONFIG_INVALID")
    check(box2.login_password(), "password login broken")


def match_line(path, text):
    """The 1-based line of text in the file at path."""
    with open(path) as f:
        return f.read().splitlines().index(text) + 1


@case
def match_blocks_for_other_clients(box, agent):
    """Issue 11.2: a Match block that only other clients meet (the probe
    sees loopback alone) still breaks the promise: refused, naming the file
    and line of the block, nothing changed. Each block here applies to the
    user from some client but not from 127.0.0.1."""
    group = grp.getgrgid(pwd.getpwnam(box.user).pw_gid).gr_name
    blocks = [
        ("Match Address *,!127.0.0.1", "PasswordAuthentication yes", {"disable_password": True}),
        ("Match Address 10.0.0.0/8", "PasswordAuthentication yes", {"disable_password": True}),
        ("Match Host *.example.com", "KbdInteractiveAuthentication yes", {"disable_password": True}),
        ("Match LocalAddress 192.0.2.1 User *", "ChallengeResponseAuthentication yes", {"disable_password": True}),
        (f"Match Group {group} Address 192.0.2.0/24", "PasswordAuthentication yes", {"disable_password": True}),
        ("Match RDomain other", "PasswordAuthentication yes", {"disable_password": True}),
        ("Match User kps*,!root Address 2001:db8::/32", "PasswordAuthentication no", {"disable_password": False}),
    ]
    for i, (match, setting, server) in enumerate(blocks):
        b = box.reconfigure(extra_sshd=f"{match}\n\t{setting}\n")
        reset_home(b, USER_LINE)
        res = unchanged_after(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a"), server=server),
                              "SSHD_CONFIG_INVALID")
        where = f"{b.sshd_config} line {match_line(b.sshd_config, match)}"
        check(where in res["error_msg"], f"{match}: the message does not name {where}: {res}")
        check(b.login_password(), f"{match}: password login broken")
    # The same from an Include'd drop-in, and a disassociate whose restored
    # password login some clients would not get.
    b = box.reconfigure(dropin="Match Address 203.0.113.0/24\n  PasswordAuthentication no\n")
    reset_home(b, USER_LINE)
    res = unchanged_after(b, agent, b.task("disassociate"), "SSHD_CONFIG_INVALID")
    dropin = os.path.join(b.dropins, "50-cloud-init.conf")
    check(f"{dropin} line 1" in res["error_msg"], f"the drop-in is not named: {res}")


@case
def match_blocks_that_cannot_apply(box, agent):
    """Blocks that cannot apply to the user from any client, or agree with
    the order, leave the task alone."""
    other_port = sb.free_port()
    blocks = [
        "Match User nobody,root\n\tPasswordAuthentication yes\n",
        f"Match User *,!{sb.TEST_USER}\n\tPasswordAuthentication yes\n",
        "Match Address !10.0.0.1\n\tPasswordAuthentication yes\n",   # negation alone never matches
        f"Match LocalPort {other_port}\n\tPasswordAuthentication yes\n",
        "Match Group nogroup-kps\n\tKbdInteractiveAuthentication yes\n",
        "Match Address *\n\tPasswordAuthentication no\n",
    ]
    for extra in blocks:
        b = box.reconfigure(extra_sshd=extra)
        reset_home(b, USER_LINE)
        expect(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a"), server={"disable_password": True}))
        check(not b.login_password(), f"{extra!r}: password login still on")


@case
def match_local_port_of_new_port(box, agent):
    """A Match LocalPort block for the port the task moves sshd to applies
    afterwards, although sshd -T for today's port does not show it."""
    new_port = sb.free_port()
    b = box.reconfigure(extra_sshd=f"Match LocalPort {new_port}\n\tPasswordAuthentication yes\n")
    reset_home(b, USER_LINE)
    res = unchanged_after(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a"),
                                           server={"disable_password": True, "port": new_port}), "SSHD_CONFIG_INVALID")
    check(f"line {match_line(b.sshd_config, f'Match LocalPort {new_port}')}" in res["error_msg"], f"{res}")
    check(b.login_password(), "password login broken")


@case
def root_password_login_warning(box, agent):
    """Issue 11.3: restoring password login for root under PermitRootLogin
    prohibit-password (the default, which the agent never changes) is not
    password login for root: the result says so in warnings. With
    PermitRootLogin yes it is, and nothing is said."""
    keydir = os.path.join(sb.ROOT, "rootkeys")
    os.makedirs(keydir, exist_ok=True)
    os.chmod(keydir, 0o755)
    for extra, warned in (("", True), ("Match User root\n\tPermitRootLogin yes\n", False)):
        b = box.reconfigure(user="root", keys_file=keydir + "/%u", extra_sshd=extra)
        try:
            for t in (b.task("disassociate"), b.task(keypair_name="kp1", public_key=b.keys.pub("a"),
                                                      server={"disable_password": False})):
                res = expect(b, agent, t)
                said = [w for w in res.get("warnings", []) if "PermitRootLogin" in w]
                check(bool(said) == warned, f"{extra!r} {t['action']}: warnings {res.get('warnings')}")
                if warned:
                    check("prohibit-password" in said[0], f"{said}")
                check("password" in b.offered_methods(), "sshd does not offer password at all")
        finally:
            if os.path.exists(os.path.join(keydir, "root")):
                os.unlink(os.path.join(keydir, "root"))
    box.reconfigure()


@case
def port_change(box, agent):
    reset_home(box)
    new_port = sb.free_port()
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": new_port}))
    check(box.login_key("a", port=new_port), "new port does not take the key")
    time.sleep(0.2)
    check(not sb.port_open(box.port), "old port still answers")
    with open(box.sshd_config) as f:
        text = f.read()
    check(f"# kps-agent: disabled: Port {box.port}" in text, "old Port line not disabled")


SQUATTER = """import os, socket, sys, time
ready = open(sys.argv[3], "w")
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
ready.write(str(os.getpid()))
ready.close()
while True:
    c, _ = s.accept()
    c.sendall(b"SSH-2.0-OpenSSH_9.2p1 squatter\\r\\n")
    c.close()
"""


def squatter_script(box):
    path = os.path.join(box.dir, "squatter.py")
    with open(path, "w") as f:
        f.write(SQUATTER)
    os.chmod(box.dir, 0o755)
    return path


def start_squatter(box, address, port):
    """An unprivileged user's program listening on address:port."""
    pidfile = os.path.join(box.dir, f"squatter-{port}.pid")
    p = subprocess.Popen([sys.executable, squatter_script(box), address, str(port), pidfile])
    for _ in range(500):
        if os.path.exists(pidfile) and os.path.getsize(pidfile):
            return p
        time.sleep(0.01)
    raise Failure("the squatter did not start")


def reload_hook(box, lines):
    """A reload command whose Nth call runs lines[N-1] (shell) before the
    HUP; calls past the list just HUP. Counts its calls in box.dir/calls."""
    calls = os.path.join(box.dir, "calls")
    body = "".join(f"if [ $n = {i + 1} ]; then {line}; fi\n" for i, line in enumerate(lines))
    reload_command(box, "reload-hook", f"#!/bin/sh\nn=$(($(cat {calls} 2>/dev/null || echo 0) + 1))\n"
                   f"echo $n > {calls}\n{body}pid=$(cat {box.pidfile} 2>/dev/null) && kill -HUP $pid\nexit 0\n")
    return calls


def stop(p):
    p.kill()
    p.wait()


@case
def port_in_use_refused(box, agent):
    """Issue 11.1: a program already on the ordered port fails the task as
    PORT_IN_USE before anything changes, on every address sshd listens on."""
    for address in ("127.0.0.1", "0.0.0.0"):
        reset_home(box, USER_LINE)
        new_port = sb.free_port()
        sq = start_squatter(box, address, new_port)
        try:
            res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                                       server={"port": new_port}), "PORT_IN_USE")
            check(str(new_port) in res["error_msg"] and "65534" in res["error_msg"], f"{res}")
        finally:
            stop(sq)
        check(box.login_password(), "sshd does not serve its old port")


@case
def port_squatter_between_check_and_reload(box, agent):
    """Issue 11.1: the squatter arrives after the check, before sshd binds.
    sshd (listening on old and new) cannot take the new port; the agent
    sees no sshd there (a TCP connect would have been fooled: the squatter
    even speaks an SSH banner), rolls back, and sshd serves the old port."""
    reset_home(box, USER_LINE)
    new_port = sb.free_port()
    reload_hook(box, [f"{sys.executable} {squatter_script(box)} 127.0.0.1 {new_port} {box.dir}/sq.pid >/dev/null 2>&1 & sleep 0.5"])
    try:
        before = snapshot(box)
        res = expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                          server={"port": new_port}), "PROBE_FAILED")
        after = snapshot(box)
        check(after == before, f"not rolled back: {[(k, before[k], after.get(k)) for k in before if before[k] != after.get(k)]} {res}")
        check(box.login_password(), "no login on the old port after the rollback")
        check(not box.login_key("a", port=new_port), "the squatter's port logs in?")
    finally:
        with open(os.path.join(box.dir, "sq.pid")) as f:
            os.kill(int(f.read()), 9)


@case
def port_rollback_restarts_sshd(box, agent):
    """Issue 11.1: sshd exits in the second stage (the squatter took the new
    port in the moment sshd re-executed). The rollback finds no sshd to
    reload, starts it again, and sshd serves the old port: a real login."""
    reset_home(box, USER_LINE)
    new_port = sb.free_port()
    sq = f"{sys.executable} {squatter_script(box)} 127.0.0.1 {new_port} {box.dir}/sq.pid >/dev/null 2>&1"
    # Second reload: sshd goes away and the squatter takes the port first.
    reload_hook(box, ["true", f"kill -TERM $(cat {box.pidfile}); sleep 0.3; {sq} & sleep 0.5; exit 0"])
    try:
        before = snapshot(box)
        res = expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                          server={"port": new_port}), "PROBE_FAILED")
        after = snapshot(box)
        check(after == before, f"not rolled back: {[(k, before[k], after.get(k)) for k in before if before[k] != after.get(k)]} {res}")
        check(any("started again" in w for w in res.get("warnings", [])), f"no warning that sshd was started: {res}")
        check(box.login_password(), "no login on the old port after the rollback")
    finally:
        if os.path.exists(os.path.join(box.dir, "sq.pid")):
            with open(os.path.join(box.dir, "sq.pid")) as f:
                os.kill(int(f.read()), 9)


@case
def port_success_means_new_sshd(box, agent):
    """Issue 11.1 / 12.0: SUCCESS means the reloaded sshd serves the new port
    and the old one is gone, even where the reload returns before sshd has
    re-executed (systemd's reload job). A change back at once works too."""
    reset_home(box, USER_LINE)
    reload_command(box, "late-hup", f"#!/bin/sh\n(sleep 1; kill -HUP $(cat {box.pidfile})) >/dev/null 2>&1 &\nexit 0\n")
    old_port, new_port = box.port, sb.free_port()
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": new_port}))
    check(not sb.port_open(old_port), "SUCCESS while the old sshd still serves the old port")
    check(box.login_key("a", port=new_port), "the new port does not take the key")
    expect(box, agent, box.task(keypair_name="kp2", public_key=box.keys.pub("b"), server={"port": old_port}))
    check(not sb.port_open(new_port), "SUCCESS while sshd still serves the port it left")
    check(box.login_key("b", port=old_port), "the change back does not serve")


@case
def port_in_dropin_yields(box, agent):
    extra_port = sb.free_port()
    box2 = box.reconfigure(dropin=f"Port {extra_port}\n")
    check(sb.port_open(extra_port), "precondition: drop-in port listens")
    reset_home(box2)
    new_port = sb.free_port()
    expect(box2, agent, box2.task(keypair_name="kp1", public_key=box2.keys.pub("a"), server={"port": new_port}))
    time.sleep(0.2)
    check(box2.login_key("a", port=new_port), "new port does not take the key")
    check(not sb.port_open(extra_port), "drop-in port still answers")


@case
def port_refusals(box, agent):
    reset_home(box, USER_LINE)
    for bad in [0, 65536, -1, "22", 22.5, True, "22\nPermitRootLogin yes", 1e400]:
        t = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": bad})
        raw = json.dumps(t).replace("Infinity", "1e400")
        unchanged_after(box, agent, t, "INVALID_TASK", raw=raw)


# -- hostile input -------------------------------------------------------

@case
def symlinked_authorized_keys(box, agent):
    reset_home(box, USER_LINE)
    target = os.path.join(box.dir, "victim")
    with open(target, "w") as f:
        f.write("root's file\n")
    os.unlink(box.keys_path())
    os.symlink(target, box.keys_path())
    before = open(target).read()
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")), "UNSAFE_PATH")
    check(open(target).read() == before, "symlink target written")


@case
def symlinked_ssh_dir(box, agent):
    reset_home(box)
    target = os.path.join(box.dir, "elsewhere")
    os.mkdir(target, 0o700)
    pw = pwd.getpwnam(box.user)
    os.chown(target, pw.pw_uid, pw.pw_gid)
    os.symlink(target, os.path.join(box.home(), ".ssh"))
    try:
        unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")), "UNSAFE_PATH")
        check(os.listdir(target) == [], "wrote through the ~/.ssh symlink")
    finally:
        os.unlink(os.path.join(box.home(), ".ssh"))


@case
def hard_linked_authorized_keys(box, agent):
    reset_home(box, USER_LINE)
    other = os.path.join(box.home(), "other-link")
    os.link(box.keys_path(), other)
    try:
        unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")), "UNSAFE_PATH")
    finally:
        os.unlink(other)


@case
def hard_link_to_a_file_the_user_cannot_read(box, agent):
    """Issue 11.4: a hard link is UNSAFE_PATH whoever owns the inode; a
    root-owned one the user cannot open was IO_ERROR."""
    reset_home(box, USER_LINE)
    os.unlink(box.keys_path())
    for mode in (0o600, 0o400):
        # In the home, not the sandbox: a hard link cannot cross from /run
        # (a tmpfs on any systemd machine) to /home.
        src = os.path.join(box.home(), f"root-secret-{mode:o}")
        with open(src, "w") as f:
            f.write("root's secret line\n")
        os.chmod(src, mode)
        try:
            os.link(src, box.keys_path())
            try:
                for t in (box.task(keypair_name="kp1", public_key=box.keys.pub("a")), box.task("disassociate")):
                    unchanged_after(box, agent, t, "UNSAFE_PATH")
            finally:
                os.unlink(box.keys_path())
            with open(src) as f:
                check(f.read() == "root's secret line\n", "the linked file changed")
        finally:
            os.unlink(src)


def key_fragment(box, value):
    """Sets the agent's [sshd] key_fragment (auto: its own file where sshd
    reads a directory of them, OpenSSH 10+; no: the first plain entry)."""
    with open(box.agent_config) as f:
        conf = re.sub(r"(?m)^key_fragment = .*\n", "", f.read())
    with open(box.agent_config, "w") as f:
        f.write(conf.replace("[sshd]\n", f"[sshd]\nkey_fragment = {value}\n", 1))


def fragment_layout():
    """Does this sshd read every file an AuthorizedKeysFile wildcard
    matches (OpenSSH 10.0+), so that the agent writes a fragment of its own?"""
    return sb.sshd_version() >= (10, 0)


@case
def shared_authorized_keys_file(box, agent):
    """Issue 11.4: a key file that names no user (no %u, %U, %h; not under
    the home) is every user's: UNSAFE_PATH, nothing written. The shared
    file is the agent's target in each layout: the first plain entry (a
    wildcard skipped, OpenSSH 9 or key_fragment = no), and the agent's own
    fragment in a shared directory sshd reads (OpenSSH 10)."""
    shared = tempfile.mkdtemp(prefix="shared-keys.", dir=sb.ROOT)
    os.chmod(shared, 0o755)
    name = os.path.basename(shared)
    for spec, fragment in [(f"{shared}/authorized_keys", "auto"),
                           (f"%h/../../{shared.lstrip('/')}/authorized_keys", "auto"),
                           (f"{shared}/../{name}/all", "auto"),
                           (f".ssh/authorized_keys.d/* {shared}/keys", "no"),
                           (f"{shared}/* {shared}/keys", "auto"), (f"{shared}/* {shared}/keys", "no")]:
        b = box.reconfigure(keys_file=spec)
        key_fragment(b, fragment)
        reset_home(b, USER_LINE)
        before = sorted(os.listdir(shared))
        res = expect(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a")), "UNSAFE_PATH")
        what = f"{spec} (key_fragment = {fragment})"
        check("shared" in res["error_msg"], f"{what}: {res}")
        check(sorted(os.listdir(shared)) == before, f"{what}: a file was written in the shared place")
        check(not b.login_key("a"), f"{what}: the key logs in")
    # Where the agent keeps its own fragment in the user's directory, the
    # shared file after it is not the target: the key goes in the fragment
    # and the shared place stays as it was.
    if fragment_layout():
        b = box.reconfigure(keys_file=f".ssh/authorized_keys.d/* {shared}/keys")
        reset_home(b, USER_LINE)
        before = sorted(os.listdir(shared))
        expect(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a")))
        check(sorted(os.listdir(shared)) == before, "the fragment layout: a file was written in the shared place")
        with open(os.path.join(b.home(), ".ssh", "authorized_keys.d", "kps-agent")) as f:
            check(b.keys.pub("a").split()[1] in f.read(), "the fragment layout: the key is not in the fragment")
        check(b.login_key("a"), "the fragment layout: the key does not log in")
    shutil.rmtree(shared)


@case
def authorized_keys_file_as_sshd_splits_it(box, agent):
    """Issue 11.4: AuthorizedKeysFile is split as sshd splits it (a quoted
    path with a space is one path), a wildcard entry is never a literal
    path, and the agent writes the first file sshd reads."""
    keydir = os.path.join(sb.ROOT, "key dir")
    os.makedirs(keydir, exist_ok=True)
    os.chmod(keydir, 0o755)
    b = box.reconfigure(keys_file=f'"{keydir}/%u" .ssh/authorized_keys')
    reset_home(b, USER_LINE)
    expect(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a")))
    written = os.path.join(keydir, b.user)
    check(os.path.exists(written), f"the key is not in {written}: {os.listdir(keydir)}")
    check(b.login_key("a"), "the key does not log in")
    os.unlink(written)
    # OpenSSH 10 reads every file a wildcard matches; 9.x a file named "*".
    # Either way the agent never writes a "*": the first plain path, or,
    # where sshd reads a directory of fragments (OpenSSH 10, key_fragment =
    # auto), its own file in that directory. "*.pub" is no such directory.
    ssh = os.path.join(b.home(), ".ssh")
    fragments = os.path.join(ssh, "authorized_keys.d")
    for spec, fragment, in_fragment in [(".ssh/authorized_keys.d/* .ssh/authorized_keys", "no", False),
                                        (".ssh/authorized_keys.d/*.pub .ssh/authorized_keys", "auto", False),
                                        (".ssh/authorized_keys.d/* .ssh/authorized_keys", "auto", fragment_layout())]:
        b = b.reconfigure(keys_file=spec)
        key_fragment(b, fragment)
        reset_home(b, USER_LINE)
        expect(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a")))
        what = f"{spec} (key_fragment = {fragment})"
        if in_fragment:
            check(sorted(os.listdir(fragments)) == ["kps-agent"], f"{what}: {os.listdir(fragments)}")
            ours = os.path.join(fragments, "kps-agent")
        else:
            check(not os.path.exists(fragments), f"{what}: a wildcard taken as a path")
            ours = os.path.join(ssh, "authorized_keys")
        with open(ours) as f:
            check(b.keys.pub("a").split()[1] in f.read(), f"{what}: the key is not in {ours}")
        check(b.login_key("a"), f"{what}: the key does not log in")


@case
def loose_modes_and_foreign_owner(box, agent):
    t = box.task(keypair_name="kp1", public_key=box.keys.pub("a"))
    reset_home(box, USER_LINE, mode=0o666)
    unchanged_after(box, agent, dict(t, task_id=t["task_id"] + "-1"), "UNSAFE_PATH")
    reset_home(box, USER_LINE)
    os.chmod(os.path.dirname(box.keys_path()), 0o777)
    unchanged_after(box, agent, dict(t, task_id=t["task_id"] + "-2"), "UNSAFE_PATH")
    reset_home(box, USER_LINE)
    os.chown(box.keys_path(), pwd.getpwnam("nobody").pw_uid, -1)
    unchanged_after(box, agent, dict(t, task_id=t["task_id"] + "-3"), "UNSAFE_PATH")


@case
def bad_public_keys(box, agent):
    reset_home(box, USER_LINE)
    good = box.keys.pub("a")
    kind, blob = good.split()[:2]
    for bad in [good + "\nssh-ed25519 " + blob, 'command="/bin/sh" ' + good, good.replace(blob, blob[:-4]),
                "ssh-rsa " + blob, "", "not a key", good + "\r", good + "\u0000x"]:
        unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=bad), "INVALID_TASK")


@case
def bad_json(box, agent):
    reset_home(box, USER_LINE)
    tid = "bad-json-1"
    big = json.dumps(box.task(task_id=tid, keypair_name="kp1", public_key=box.keys.pub("a"), pad="x" * 70000))
    for raw in ["", "not json", "[]", "{", '{"task_id": "x"} trailing', "[" * 100000 + "]" * 100000, big,
                '{"task_id": "dup", "task_id": "dup2", "action": "associate"}',
                json.dumps(box.task(keypair_name="kp1", public_key=box.keys.pub("a"), extra=1))]:
        unchanged_after(box, agent, None, "INVALID_TASK", raw=raw)


@case
def refusals_by_code(box, agent):
    reset_home(box, USER_LINE)
    pub = box.keys.pub("a")
    unchanged_after(box, agent, box.task("rotate", keypair_name="kp1", public_key=pub), "UNSUPPORTED")
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=pub,
                                         server={"auth": {"type": "token", "key": "x"}}), "UNSUPPORTED")
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=pub, server={"id": "another-vm"}),
                    "WRONG_SERVER")
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=pub, expires_at="2020-01-01T00:00:00Z"),
                    "EXPIRED")
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=pub, user="no-such-user-kps"),
                    "USER_NOT_FOUND")


@case
def replay_returns_recorded(box, agent):
    reset_home(box, USER_LINE)
    t = box.task(keypair_name="kp1", public_key=box.keys.pub("a"))
    first = expect(box, agent, t)
    expect(box, agent, box.task(keypair_name="kp2", public_key=box.keys.pub("b")))
    before = snapshot(box)
    again = expect(box, agent, t)
    check(snapshot(box) == before, "replay changed the VM")
    check(again["task_id"] == first["task_id"] and again["status"] == first["status"], f"{first} vs {again}")
    check(box.login_key("b") and not box.login_key("a"), "replay re-applied the old task")


@case
def every_task_id_and_results_keep(box, agent):
    """Issue 11.5: every id the contract allows gets its result and its
    replay, "." and ".." among them; acknowledged results are pruned to
    [agent] results_keep, whatever the ids."""
    with open(box.agent_config) as f:
        conf = f.read()
    with open(box.agent_config, "w") as f:
        f.write(conf.replace("[agent]\n", "[agent]\nresults_keep = 3\n", 1))
    reset_home(box, USER_LINE)
    ids = [".", "..", "...", "-", "-x", "_", ".hidden", "a" * 64]
    for tid in ids:
        res = expect(box, agent, box.task(task_id=tid, keypair_name="kp1", public_key=box.keys.pub("a")))
        check(res["task_id"] == tid, f"{tid!r}: {res}")
        again = expect(box, agent, box.task(task_id=tid, keypair_name="kp1", public_key=box.keys.pub("a")))
        check(again == res, f"{tid!r}: the replay is not the recorded result: {again} != {res}")
    kept = os.listdir(os.path.join(box.state, "results"))
    check(len(kept) == 3, f"results_keep = 3 but {len(kept)} results kept: {sorted(kept)}")
    # The oldest id was pruned: it is applied again, a new result.
    res = expect(box, agent, box.task(task_id=".", keypair_name="kp1", public_key=box.keys.pub("a")))
    check(res["task_id"] == ".", f"{res}")
    for bad in ("0", "-1", "many", "1e3"):
        with open(box.agent_config, "w") as f:
            f.write(conf.replace("[agent]\n", f"[agent]\nresults_keep = {bad}\n", 1))
        rc = box.apply(box.task(keypair_name="kp1", public_key=box.keys.pub("a")), agent)[0]
        check(rc == (0 if bad == "0" else 2), f"results_keep = {bad}: exit {rc}")


@case
def sshd_not_running(box, agent):
    reset_home(box)
    box.stop_sshd()
    res = expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                      server={"disable_password": True}))
    check(any("not running" in w for w in res.get("warnings", [])), f"no warning: {res}")
    box.start_sshd()
    check(box.login_key("a"), "key does not log in once sshd starts")
    check(not box.login_password(), "password login on once sshd starts")


@case
def config_errors_exit_2(box, agent):
    reset_home(box, USER_LINE)
    t = json.dumps(box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    bad = os.path.join(box.dir, "bad.conf")
    for text, needle in [("[agent]\nbogus = 1\n", "bogus"), ("[nosuch]\nx = 1\n", "nosuch"),
                         ("[sshd]\nreload = sometimes\n", "reload"), ("[agent]\nstate_dir = relative\n", "state_dir"),
                         ("[sshd]\nkey_fragment = maybe\n", "key_fragment"), ("[agent]\nresults_keep = -1\n", "results_keep")]:
        with open(bad, "w") as f:
            f.write(text)
        before = snapshot(box)
        p = subprocess.run([agent, "-c", bad, "apply"], input=t.encode(), capture_output=True)
        check(p.returncode == 2, f"{text!r}: exit {p.returncode}")
        check(needle in p.stderr.decode() and "bad.conf" in p.stderr.decode(), f"stderr {p.stderr!r}")
        check(p.stdout == b"", "printed a result")
        check(snapshot(box) == before, "changed the VM")
    p = subprocess.run([agent, "-c", "/nonexistent/kps.conf", "apply"], input=t.encode(), capture_output=True)
    check(p.returncode == 2, f"missing config: exit {p.returncode}")
    p = subprocess.run([agent, "--bogus"], capture_output=True)
    check(p.returncode == 2, f"bad option: exit {p.returncode}")
    p = subprocess.run([agent, "--version"], capture_output=True)
    check(p.returncode == 0 and p.stdout.startswith(b"kps-agent "), f"--version: {p}")


@case
def task_from_file(box, agent):
    reset_home(box)
    path = os.path.join(box.dir, "task.json")
    with open(path, "w") as f:
        json.dump(box.task(keypair_name="kp1", public_key=box.keys.pub("a")), f)
    p = subprocess.run([agent, "-c", box.agent_config, "apply", "--task", path], capture_output=True)
    check(p.returncode == 0, f"exit {p.returncode}: {p.stdout!r} {p.stderr!r}")
    lines = p.stdout.decode().splitlines()
    check(len(lines) == 1 and json.loads(lines[0])["status"] == "SUCCESS", f"stdout {p.stdout!r}")
    check(box.login_key("a"), "key does not log in")


@case
def no_secret_in_output(box, agent):
    reset_home(box, USER_LINE)
    secret = "Very-Secret-Password-987"
    t = box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                 server={"auth": {"type": "password", "key": secret}})
    rc, res, err, out = box.apply(t, agent)
    check(res and res["status"] == "FAILED", f"wrong password accepted: {res}")
    check(secret not in out and secret not in err, "the password reached stdout or stderr")
    for root, _, files in os.walk(box.state):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                check(secret.encode() not in f.read(), f"the password reached {name}")


# -- proof before, probe after (with auth) ------------------------------

def proof_keypair(box, agent, kind, fmt):
    name = f"old-{kind}-{fmt or 'openssh'}"
    old_line = box.keys.pub(name, kind, fmt) + "\n"
    reset_home(box, USER_LINE + old_line)
    check(box.login_key(name, kind=kind), "precondition: the old key logs in")
    t = box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                 server={"auth": {"type": "keypair", "key": box.keys.private(name, kind, fmt)}})
    expect(box, agent, t)
    check(box.login_key("a"), "new key does not log in")
    check(not box.login_key(name, kind=kind), "the replaced key still logs in")
    check(read_keys(box).startswith(USER_LINE), "admin line lost")
    check(old_line not in read_keys(box), "the replaced key's line is still there")


@case
def auth_keypair_ed25519(box, agent):
    proof_keypair(box, agent, "ed25519", None)


@case
def auth_keypair_ecdsa_pem(box, agent):
    proof_keypair(box, agent, "ecdsa", "PEM")


@case
def auth_keypair_rsa_pem(box, agent):
    proof_keypair(box, agent, "rsa", "PEM")


@case
def auth_keypair_rsa_openssh(box, agent):
    proof_keypair(box, agent, "rsa", None)


@case
def auth_keypair_wrong_key(box, agent):
    reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
    for kind, fmt in [("ed25519", None), ("ecdsa", None), ("rsa", "PEM")]:
        stranger = box.keys.private(f"stranger-{kind}", kind, fmt)
        unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                             server={"auth": {"type": "keypair", "key": stranger}}), "AUTH_FAILED")
    check(not box.login_key("a"), "the new key got in anyway")


@case
def auth_keypair_bad_keys(box, agent):
    reset_home(box, USER_LINE)
    enc = os.path.join(box.dir, "encrypted")
    sb.run([sb.SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "pass-phrase", "-a", "5000", "-f", enc])
    with open(enc) as f:
        encrypted = f.read()
    for key in [encrypted, "-----BEGINRSAPRIVATEKEY-----M...", "not a key at all"]:
        t0 = time.monotonic()
        res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                                   server={"auth": {"type": "keypair", "key": key}}), "INVALID_TASK")
        check("pass-phrase" not in json.dumps(res), "secret in result")
        # 5000 bcrypt rounds take seconds: refused before any KDF ran.
        check(time.monotonic() - t0 < 2.0, f"took {time.monotonic() - t0:.1f}s: a KDF ran")


@case
def auth_password(box, agent):
    reset_home(box, USER_LINE)
    res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "password", "key": "Wrong-Password-1"}}), "AUTH_FAILED")
    check("Wrong-Password-1" not in json.dumps(res), "password in the result")
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "authentication": {"type": "password", "key": sb.TEST_PASSWORD}, "disable_password": True}))
    check(box.login_key("a"), "new key does not log in")
    check(not box.login_password(), "password login still works")


@case
def auth_password_slow_refusal(box, agent):
    """sshd through PAM refuses a password only after PAM's failure delay
    (pam_unix: 2 s), here past a 1 s connect_timeout, as on a slow VM past
    the default 5 s: that is a refusal (AUTH_FAILED), not an unreachable
    sshd."""
    reset_home(box, USER_LINE)
    with open(os.path.join(box.dropins, "10-pam.conf"), "w") as f:
        f.write("UsePAM yes\n")
    box.stop_sshd()
    box.start_sshd()
    conf = os.path.join(box.dir, "slow.conf")
    with open(conf, "w") as f:
        f.write(open(box.agent_config).read().replace("[sshd]\n", "[sshd]\nconnect_timeout = 1\n"))
    t0 = time.monotonic()
    rc, res, err, out = box.apply(box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "password", "key": "Wrong-Password-1"}}), agent, config=conf)
    took = time.monotonic() - t0
    check(res and res.get("error_code") == "KPS.AGENT.AUTH_FAILED", f"{res} after {took:.1f} s; {err[-400:]}")
    rc, res, err, out = box.apply(box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "password", "key": sb.TEST_PASSWORD}}), agent, config=conf)
    check(res and res.get("status") == "SUCCESS", f"{res}; {err[-400:]}")
    check(box.login_key("a"), "new key does not log in")


@case
def hostkey_libssh_cannot_read(box, agent):
    """OpenSSH 10 (Debian forky's ssh-keygen -A) makes an ML-DSA host key
    that libssh does not know. sshd lists it first here; the pinning takes
    the keys it can read and proves and probes as before. The fixture is a
    throwaway key from a forky image (tests/integration/fixtures)."""
    reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    for name in ("ssh_host_mldsa44_ed25519_key", "ssh_host_mldsa44_ed25519_key.pub"):
        dst = os.path.join(box.dir, name)
        with open(os.path.join(fixtures, name)) as src, open(dst, "w") as out:
            out.write(src.read())
        os.chmod(dst, 0o600)
    with open(os.path.join(box.dropins, "05-mldsa.conf"), "w") as f:
        f.write(f"HostKey {box.dir}/ssh_host_mldsa44_ed25519_key\n")
    box.stop_sshd()
    box.start_sshd()
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "keypair", "key": box.keys.private("old")}}))
    check(box.login_key("a"), "new key does not log in")
    check(not box.login_key("old"), "replaced key still logs in")


@case
def connects_from_sshd_address(box, agent):
    """With [sshd] address another loopback address, sshd sees the agent's
    proofs and probes come from that address, the one `sshd -T -C addr=`
    evaluates and a PerSourcePenaltyExemptList entry names; the kernel alone
    would pick 127.0.0.1."""
    reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
    with open(os.path.join(box.dropins, "05-listen.conf"), "w") as f:
        f.write("ListenAddress 127.0.0.2\n")
    box.stop_sshd()
    box.start_sshd()
    conf = os.path.join(box.dir, "other-address.conf")
    with open(conf, "w") as f:
        f.write(open(box.agent_config).read().replace("address = 127.0.0.1\n", "address = 127.0.0.2\n"))
    rc, res, err, out = box.apply(box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "keypair", "key": box.keys.private("old")}}), agent, config=conf)
    check(res and res.get("status") == "SUCCESS", f"{res}; {err[-400:]}")
    log = open(box.log).read()
    check("Accepted publickey for %s from 127.0.0.2 " % box.user in log,
          "sshd did not see the proof come from 127.0.0.2: " + log[-1500:])


@case
def impostor_sshd_gets_nothing(box, agent):
    reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
    box.stop_sshd()
    # Same port, other host keys: what a local user could start after sshd died.
    fake = os.path.join(box.dir, "impostor")
    os.mkdir(fake, 0o700)
    hostkey = os.path.join(fake, "host")
    sb.run([sb.SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", hostkey])
    log = os.path.join(fake, "log")
    with open(os.path.join(fake, "config"), "w") as f:
        f.write(f"Port {box.port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\nPidFile {fake}/pid\n"
                "UsePAM no\nPasswordAuthentication yes\nLogLevel DEBUG3\n")
    box.start_sshd(config=os.path.join(fake, "config"), log=log)
    try:
        for auth in [{"type": "password", "key": sb.TEST_PASSWORD},
                     {"type": "keypair", "key": box.keys.private("old")}]:
            unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                                 server={"auth": auth}), "SSHD_UNREACHABLE")
        time.sleep(0.2)
        text = open(log).read()
        check("Connection from 127.0.0.1" in text or "connection from 127.0.0.1" in text.lower(),
              "the impostor never saw the agent: the test proves nothing")
        for needle in ["userauth-request", "Failed password", "Accepted", "service_request"]:
            check(needle not in text, f"impostor log has {needle!r}: a credential reached it")
    finally:
        with open(os.path.join(fake, "pid")) as f:
            os.kill(int(f.read()), 15)


@case
def probe_catches_no_reload(box, agent):
    box2 = box.reconfigure(reload="command:/bin/true")
    reset_home(box2, USER_LINE)
    before = snapshot(box2)
    res = expect(box2, agent, box2.task(keypair_name="kp1", public_key=box2.keys.pub("a"),
                                        server={"disable_password": True}), "PROBE_FAILED")
    check("password" in res["error_msg"], f"error_msg does not name the check: {res}")
    check(snapshot(box2) == before, "not rolled back")
    check(box2.login_password(), "password login broken after rollback")


@case
def probe_catches_removed_key_still_live(box, agent):
    # sshd reads a second file the agent does not manage: the removed key
    # stays live there, and the agent must not claim it is gone.
    box2 = box.reconfigure(keys_file=".ssh/authorized_keys .ssh/authorized_keys2")
    reset_home(box2)
    expect(box2, agent, box2.task(keypair_name="kp1", public_key=box2.keys.pub("a")))
    keys2 = os.path.join(box2.home(), ".ssh", "authorized_keys2")
    with open(keys2, "w") as f:
        f.write(box2.keys.pub("a") + "\n")
    pw = pwd.getpwnam(box2.user)
    os.chown(keys2, pw.pw_uid, pw.pw_gid)
    os.chmod(keys2, 0o600)
    before = snapshot(box2)
    res = expect(box2, agent, box2.task("disassociate"), "PROBE_FAILED")
    check("removed key" in res["error_msg"], f"{res}")
    check(snapshot(box2) == before, "not rolled back")


@case
def auth_with_sshd_stopped(box, agent):
    reset_home(box, USER_LINE)
    box.stop_sshd()
    unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={
        "auth": {"type": "password", "key": sb.TEST_PASSWORD}}), "SSHD_UNREACHABLE")


def run_main(cases, kept):
    """`SCRIPT --list` names the cases; `SCRIPT AGENT NAME` runs one in a
    sandbox of its own, kept on failure with kept(box) saying where to look."""
    if sys.argv[1:] == ["--list"]:
        print("\n".join(cases))
        return 0
    agent, name = os.path.abspath(sys.argv[1]), sys.argv[2]
    sb.ensure_user()
    box = sb.Sandbox(name)
    ok = False
    try:
        cases[name](box, agent)
        ok = True
    except Failure as e:
        print(f"FAIL {name}: {e}")
    finally:
        box.close(keep=not ok)
    if ok:
        print(f"PASS {name}")
    else:
        print(f"sandbox kept in {box.dir}; {kept(box)}")
    return 0 if ok else 1


def main():
    return run_main(CASES, lambda box: f"sshd log: {box.log}")


if __name__ == "__main__":
    sys.exit(main())
