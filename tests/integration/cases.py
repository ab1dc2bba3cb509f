#!/usr/bin/env python3
"""Integration cases: the built kps-agent against a real sshd on loopback,
checked with the real ssh client. `cases.py --list` names them (meson
registers one test per name); `cases.py AGENT NAME` runs one."""

import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
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
    path = os.path.join(box.dir, "slow-reload")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nsleep {seconds}\nkill -HUP $(cat {box.pidfile})\n")
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
                         ("[sshd]\nreload = sometimes\n", "reload"), ("[agent]\nstate_dir = relative\n", "state_dir")]:
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
