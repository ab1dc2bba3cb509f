#!/usr/bin/env python3
"""The operator's controls end to end (issue 14): signed tasks checked
against an independent Ed25519 implementation (python3-cryptography),
[policy], key_expires_at enforced by sshd and swept by the daemon, the
audit trail, and the check / submit / list / status commands.
`operator_cases.py --list` names the cases; `operator_cases.py AGENT
EMULATOR NAME` runs one."""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, Failure, check, expect, read_keys, reset_home, snapshot, unchanged_after  # noqa: E402
from daemon_cases import Agent, ControlPlane  # noqa: E402

CASES = {}
# The MESSAGE_IDs kps-agent(8) documents: they never change.
MESSAGE_IDS = {
    "KEY_ADDED": "4c588f99f4644e2a840d89df6fe85ace",
    "KEY_REMOVED": "dab1d85a4cf7463f8cdefc4b3321bc6e",
    "KEY_EXPIRED": "f545002b50a248549ab7544a692848b8",
    "PASSWORD_LOGIN_CHANGED": "cf54b15c9a9a40fc90e685ea50491a5f",
    "PORT_CHANGED": "00e0236b7b554a96b5dd82f0612af80c",
    "TASK_REFUSED_POLICY": "c0a20e760b0f45c9be64108bcff0f7c2",
    "TASK_REFUSED_SIGNATURE": "99b76138a8154e698ec739ec38fa6261",
}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def b64(data):
    return base64.b64encode(data).decode()


def openssh_line(key, comment):
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode() + " " + comment


def signed(key, task, raw=None):
    data = raw if raw is not None else json.dumps(task).encode()
    return {"signed_task": b64(data), "signature": b64(key.sign(data))}


def configure(box, control_plane="", policy="", agent=""):
    """Adds lines to the sandbox's agent config, section by section."""
    with open(box.agent_config) as f:
        conf = f.read()
    conf = conf.replace("[control_plane]\n", "[control_plane]\n" + control_plane)
    conf = conf.replace("[agent]\n", "[agent]\n" + agent)
    if policy:
        conf += "[policy]\n" + policy
    with open(box.agent_config, "w") as f:
        f.write(conf)


def write_verify_key(box, lines, mode=0o644):
    path = os.path.join(box.dir, "verify_key")
    with open(path, "w") as f:
        f.write("# control plane signing keys\n" + "".join(l + "\n" for l in lines))
    os.chmod(path, mode)
    return path


def run_agent(agent, box, *args, stdin=None, config=None):
    p = subprocess.run([agent, "-c", config or box.agent_config, *args], input=stdin, capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def apply_json(box, agent, obj, cmd="apply"):
    """A task or an envelope through apply (or check): exit code, result, stderr."""
    rc, out, err = run_agent(agent, box, cmd, stdin=json.dumps(obj))
    lines = [l for l in out.splitlines() if l.strip()]
    return rc, (json.loads(lines[-1]) if lines else None), err


def audit_records(text):
    """The audit lines of a log stream, as (event, fields)."""
    recs = []
    for line in text.splitlines():
        m = re.match(r"kps-agent: audit (\w+) MESSAGE_ID=(\w+)(.*)$", line)
        if not m:
            continue
        fields = {k: v.replace('\\"', '"').replace("\\\\", "\\")
                  for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3))}
        fields["MESSAGE_ID"] = m.group(2)
        recs.append((m.group(1), fields))
    return recs


def check_audit(recs, event, **want):
    found = [f for e, f in recs if e == event and all(f.get(k) == v for k, v in want.items())]
    check(found, f"no audit record {event} with {want} in {recs}")
    check(found[0]["MESSAGE_ID"] == MESSAGE_IDS[event], f"{event}: MESSAGE_ID {found[0]['MESSAGE_ID']}")
    return found[0]


def sha256_file(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return hashlib.sha256(b"").hexdigest()


def fingerprint(pub):
    p = subprocess.run([sb.SSH_KEYGEN, "-l", "-f", "/dev/stdin"], input=pub, capture_output=True, text=True,
                       check=True)
    return p.stdout.split()[1]


class NoControlPlane:
    url = ""


# -- signed tasks -----------------------------------------------------------

@case
def signed_interop(box, agent):
    """Tasks signed by python3-cryptography verify; tampered, stranger-signed,
    unsigned, malformed and expired ones are refused and change nothing."""
    cp, old, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = write_verify_key(box, [openssh_line(old, "cp-2025"), openssh_line(cp, "cp-2026")])
    configure(box, control_plane=f"verify_key = {path}\n")
    reset_home(box, USER_LINE)
    soon = int(time.time()) + 600
    t1 = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), expires_at=rfc3339(soon),
                  requester="iam:user/alice req-1")
    rc, res, err = apply_json(box, agent, signed(cp, t1))
    check(rc == 0 and res["status"] == "SUCCESS", f"signed task: {rc} {res} {err[-800:]}")
    check(box.login_key("a"), "the signed task's key does not log in")
    check_audit(audit_records(err), "KEY_ADDED", TASK_ID=t1["task_id"], REQUESTER="iam:user/alice req-1")

    # The same envelope again: the recorded result, nothing changes.
    before = snapshot(box)
    rc, again, _ = apply_json(box, agent, signed(cp, t1))
    check(rc == 0 and again["task_id"] == t1["task_id"] and again["status"] == "SUCCESS", f"replay: {again}")
    check(snapshot(box) == before, "a replay changed the VM")

    # Rotation: the older key of verify_key verifies too.
    t2 = box.task(keypair_name="kp2", public_key=box.keys.pub("b"), expires_at=rfc3339(soon))
    rc, res, _ = apply_json(box, agent, signed(old, t2))
    check(rc == 0, f"signed with the older key: {res}")

    def refused(obj, code, task_id, what):
        before = snapshot(box)
        rc, res, err = apply_json(box, agent, obj)
        check(rc == 1 and res["error_code"] == "KPS.AGENT." + code, f"{what}: {rc} {res}")
        check(res["task_id"] == task_id, f"{what}: names task {res['task_id']!r}, wanted {task_id!r}")
        check(snapshot(box) == before, f"{what}: the VM changed")
        return res, err

    # Tampered: the bytes changed after signing (another key slipped in).
    t3 = box.task(keypair_name="kp3", public_key=box.keys.pub("a"), expires_at=rfc3339(soon))
    env = signed(cp, t3)
    t3_evil = dict(t3, public_key=box.keys.pub("c"))
    env["signed_task"] = b64(json.dumps(t3_evil).encode())
    _, err = refused(env, "BAD_SIGNATURE", t3["task_id"], "tampered")
    check_audit(audit_records(err), "TASK_REFUSED_SIGNATURE", TASK_ID=t3["task_id"])
    # Re-signed by a stranger; then the genuine task of that id still works:
    # a forged refusal is never recorded under the id.
    t4 = box.task(keypair_name="kp4", public_key=box.keys.pub("a"), expires_at=rfc3339(soon))
    refused(signed(stranger, t4), "BAD_SIGNATURE", t4["task_id"], "stranger")
    rc, res, _ = apply_json(box, agent, signed(cp, t4))
    check(rc == 0 and res["status"] == "SUCCESS", f"genuine task after a forged one of its id: {res}")
    # Unsigned, bad base64, a signature that is not one, no expires_at.
    t5 = box.task(keypair_name="kp5", public_key=box.keys.pub("a"), expires_at=rfc3339(soon))
    refused(t5, "BAD_SIGNATURE", t5["task_id"], "unsigned")
    refused({"signed_task": "not base64!", "signature": signed(cp, t5)["signature"]}, "BAD_SIGNATURE", "",
            "bad base64")
    refused({"signed_task": signed(cp, t5)["signed_task"], "signature": "AAAA"}, "BAD_SIGNATURE", t5["task_id"],
            "short signature")
    t6 = box.task(keypair_name="kp6", public_key=box.keys.pub("a"))
    refused(signed(cp, t6), "BAD_SIGNATURE", t6["task_id"], "no expires_at")
    # Expired (signed, verified, too late) and for another VM.
    t7 = box.task(keypair_name="kp7", public_key=box.keys.pub("a"), expires_at=rfc3339(time.time() - 5))
    refused(signed(cp, t7), "EXPIRED", t7["task_id"], "expired")
    t8 = box.task(keypair_name="kp8", public_key=box.keys.pub("a"), expires_at=rfc3339(soon))
    t8["server"]["id"] = str(uuid.uuid4())
    refused(signed(cp, t8), "WRONG_SERVER", t8["task_id"], "another VM")
    # check goes through the same door.
    rc, res, _ = apply_json(box, agent, t5, cmd="check")
    check(rc == 1 and res["error_code"] == "KPS.AGENT.BAD_SIGNATURE", f"check, unsigned: {res}")
    rc, res, _ = apply_json(box, agent, signed(cp, t5), cmd="check")
    check(rc == 0 and res["status"] == "SUCCESS", f"check, signed: {res}")


@case
def signed_journal_keeps_ids(box, agent):
    """results_keep = 0 forgets acknowledged results at once, but a signed
    task's id stays until its expires_at: a replay inside the window
    changes nothing."""
    cp = Ed25519PrivateKey.generate()
    path = write_verify_key(box, [openssh_line(cp, "cp")])
    configure(box, control_plane=f"verify_key = {path}\n", agent="results_keep = 0\n")
    reset_home(box)
    t1 = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), expires_at=rfc3339(time.time() + 3600))
    t2 = box.task(keypair_name="kp2", public_key=box.keys.pub("b"), expires_at=rfc3339(time.time() + 4))
    t3 = box.task(keypair_name="kp3", public_key=box.keys.pub("c"), expires_at=rfc3339(time.time() + 3600))
    for t in (t1, t2, t3):
        rc, res, _ = apply_json(box, agent, signed(cp, t))
        check(rc == 0, f"{t['task_id']}: {res}")
    results = os.path.join(box.state, "results")
    check(os.path.exists(os.path.join(results, t1["task_id"] + ".json")), "t1's id was pruned inside its window")
    before = snapshot(box)
    rc, res, _ = apply_json(box, agent, signed(cp, t1))
    check(rc == 0 and snapshot(box) == before, "replaying t1 changed the VM (t3's key is the managed one)")
    check(box.login_key("c") and not box.login_key("a"), "the replay put t1's key back")
    # Past its window t2's id may go: the next record prunes it.
    time.sleep(5)
    t4 = box.task(keypair_name="kp4", public_key=box.keys.pub("a"), expires_at=rfc3339(time.time() + 3600))
    apply_json(box, agent, signed(cp, t4))
    check(not os.path.exists(os.path.join(results, t2["task_id"] + ".json")), "t2 kept past its expires_at")
    check(os.path.exists(os.path.join(results, t1["task_id"] + ".json")), "t1 pruned inside its window")


@case
def verify_key_refused_at_start(box, agent):
    """A verify_key the agent cannot use stops it at start (exit 2)."""
    cp = Ed25519PrivateKey.generate()
    base = open(box.agent_config).read()
    cases = {
        "missing": os.path.join(box.dir, "no-such-file"),
        "rsa": write_verify_key(box, [sb.Keys(sb.ROOT).pub("r", "rsa")]),
    }
    loose = os.path.join(box.dir, "loose_key")
    with open(loose, "w") as f:
        f.write(openssh_line(cp, "cp") + "\n")
    os.chmod(loose, 0o666)
    cases["writable by others"] = loose
    for what, path in cases.items():
        with open(box.agent_config, "w") as f:
            f.write(base.replace("[control_plane]\n", f"[control_plane]\nverify_key = {path}\n"))
        rc, out, err = run_agent(agent, box, "apply", stdin="{}")
        check(rc == 2 and "verify_key" in err and out == "", f"{what}: exit {rc}, {err!r}")


@case
def emulator_signs_tasks(box, agent_exe, emulator):
    """kps-control-plane --sign-key signs what it hands out; the daemon
    applies it. Unsigned tasks from a control plane are refused."""
    key = sb.Keys(sb.ROOT).get("cp_sign", "ed25519")
    with open(key + ".pub") as f:
        pub = f.read().strip()
    path = write_verify_key(box, [pub])
    configure(box, control_plane=f"verify_key = {path}\n")
    reset_home(box, USER_LINE)
    for sign in (True, False):
        cp = ControlPlane(emulator, *(["--sign-key", key] if sign else []))
        agent = Agent(box, agent_exe, cp)
        agent.start()
        try:
            cp.import_keypair("kp", box.keys.pub("a"))
            tid = cp.associate({"keypair_name": "kp", "server": {"id": box.server_id}})
            t = cp.wait(tid)
            if sign:
                check(t["task_status"] == "SUCCESS_RESET", f"signed by the emulator: {t}")
                check(box.login_key("a"), "the key does not log in")
            else:
                check(t["task_status"] == "FAILED_RESET" and t.get("error_code") == "KPS.AGENT.BAD_SIGNATURE",
                      f"unsigned from the control plane: {t}")
            # The socket route refuses an unsigned task as well.
            res = agent.send_lines([box.task(keypair_name="x", public_key=box.keys.pub("b"))])[0]
            check(res["error_code"] == "KPS.AGENT.BAD_SIGNATURE", f"socket, unsigned: {res}")
        finally:
            agent.stop()
            cp.close()


# -- policy -----------------------------------------------------------------

@case
def policy_rules(box, agent):
    reset_home(box, USER_LINE)
    base = open(box.agent_config).read()

    def with_policy(text):
        with open(box.agent_config, "w") as f:
            f.write(base + "[policy]\n" + text)

    with_policy("users = alice, bob\n")
    res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")), "POLICY_DENIED")
    check("users" in res["error_msg"], f"the rule is not named: {res}")
    rc, out, err = run_agent(agent, box, "apply", stdin=json.dumps(box.task(keypair_name="k", public_key=box.keys.pub("a"))))
    check_audit(audit_records(err), "TASK_REFUSED_POLICY", USER=box.user)

    with_policy(f"users = {box.user}, root\nallow_root = no\n")
    res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), user="root"),
                          "POLICY_DENIED")
    check("allow_root" in res["error_msg"], f"{res}")

    with_policy("allow_port = no\n")
    res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                               server={"port": sb.free_port()}), "POLICY_DENIED")
    check("allow_port" in res["error_msg"], f"{res}")
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": box.port}))

    with_policy("allow_password_login = no\n")
    res = unchanged_after(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                               server={"disable_password": False}), "POLICY_DENIED")
    check("allow_password_login" in res["error_msg"], f"{res}")
    expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": True}))
    check(not box.login_password(), "password login still on")
    res = expect(box, agent, box.task("disassociate"))
    check(not box.login_key("a"), "disassociate left the key")
    check(not box.login_password(), "disassociate turned password login on against the policy")
    check(any("allow_password_login" in w for w in res.get("warnings", [])), f"no warning: {res}")
    check(USER_LINE in read_keys(box), "the admin's line went")

    for bad in ("allow_root = maybe\n", "users = -x\n", "allow_port =\n", "colour = blue\n"):
        with_policy(bad)
        rc, out, err = run_agent(agent, box, "apply", stdin="{}")
        check(rc == 2 and out == "" and "policy" in err, f"{bad!r}: exit {rc} {err!r}")


@case
def policy_reread_on_sighup(box, agent_exe, emulator):
    del emulator
    reset_home(box)
    agent = Agent(box, agent_exe, NoControlPlane())
    agent.start()
    try:
        res = agent.send_lines([box.task(keypair_name="kp1", public_key=box.keys.pub("a"))])[0]
        check(res["status"] == "SUCCESS", f"{res}")
        with open(agent.config, "a") as f:
            f.write("[policy]\nusers = somebody-else\n")
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        res = agent.send_lines([box.task(keypair_name="kp2", public_key=box.keys.pub("b"))])[0]
        check(res.get("error_code") == "KPS.AGENT.POLICY_DENIED", f"after SIGHUP: {res}")
        # A bad value on SIGHUP: the old policy stays, the daemon runs on.
        with open(agent.config, "a") as f:
            f.write("allow_root = perhaps\n")
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        check(agent.proc.poll() is None, "a bad policy on SIGHUP stopped the daemon")
        res = agent.send_lines([box.task(keypair_name="kp2", public_key=box.keys.pub("b"))])[0]
        check(res.get("error_code") == "KPS.AGENT.POLICY_DENIED", f"old policy lost: {res}")
    finally:
        agent.stop()


# -- key_expires_at ---------------------------------------------------------

@case
def key_expiry_end_to_end(box, agent_exe, emulator):
    """sshd takes the key until key_expires_at and refuses it after; the
    daemon removes the entry within 60 s, with an audit record."""
    del emulator
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, NoControlPlane())
    agent.start()
    try:
        until = int(time.time()) + 8
        task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), key_expires_at=rfc3339(until))
        rc, out, err = run_agent(agent_exe, box, "submit", stdin=json.dumps(task), config=agent.config)
        check(rc == 0, f"submit: {rc} {out} {err}")
        text = read_keys(box)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(until))
        check(f'expiry-time="{stamp}Z" ' + box.keys.pub("a") in text, f"no expiry-time option: {text!r}")
        check(box.login_key("a"), "the key does not log in before key_expires_at")
        rc, out, _ = run_agent(agent_exe, box, "list", "--json", config=agent.config)
        entries = json.loads(out)
        check(len(entries) == 1 and entries[0]["expires_at"] == rfc3339(until), f"list: {entries}")
        while time.time() < until + 1.5:
            time.sleep(0.2)
        check(not box.login_key("a"), "sshd still takes the key after key_expires_at")
        deadline = until + 60
        while time.time() < deadline and box.keys.pub("a") in read_keys(box):
            time.sleep(0.5)
        gone_after = time.time() - until
        check(box.keys.pub("a") not in read_keys(box), "the expired entry is still there after 60 s")
        check(USER_LINE in read_keys(box), "the admin's line went with it")
        print(f"expired entry removed {gone_after:.1f} s after key_expires_at")
        log = open(agent.log).read()
        check_audit(audit_records(log), "KEY_EXPIRED", USER=box.user, KEYPAIR="kp1", TASK_ID=task["task_id"])
        check("expired; its entry was removed" in log, "no journal line for the expired key")
        rc, out, _ = run_agent(agent_exe, box, "list", "--json", config=agent.config)
        check(json.loads(out) == [], f"list still shows it: {out}")
    finally:
        agent.stop()


# -- the command line -------------------------------------------------------

@case
def check_is_a_dry_run(box, agent):
    reset_home(box, USER_LINE)
    task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": True})
    before = snapshot(box)
    rc, res, _ = apply_json(box, agent, task, cmd="check")
    check(rc == 0 and res["status"] == "SUCCESS", f"check: {rc} {res}")
    check(snapshot(box) == before, "check changed the VM")
    check(not os.path.exists(os.path.join(box.state, "results", task["task_id"] + ".json")), "check recorded a result")
    diffs = {c["path"]: c["diff"] for c in res["changes"]}
    keys = diffs.get(box.keys_path(), "")
    check(keys.startswith(f"--- a{box.keys_path()}\n+++ b{box.keys_path()}\n@@ ") and
          "\n+" + box.keys.pub("a") + "\n" in keys and "\n " + USER_LINE in keys, f"authorized_keys diff: {keys!r}")
    conf = diffs.get(box.sshd_config, "")
    check("\n+PasswordAuthentication no\n" in conf, f"sshd_config diff: {conf!r}")
    # The diff is the change apply then makes.
    with open(box.sshd_config) as f:
        conf_before = f.read()
    expect(box, agent, task)
    p = subprocess.run(["diff", "-u", "--label", "a" + box.keys_path(), "--label", "b" + box.keys_path(),
                        "/dev/stdin", box.keys_path()], input=USER_LINE, capture_output=True, text=True)
    check(p.stdout == keys, f"check's diff is not diff -u's:\n{keys}\n---\n{p.stdout}")
    check(conf_before != open(box.sshd_config).read(), "apply did not change sshd_config")
    # A task applied before: check says so and changes nothing.
    rc, res, _ = apply_json(box, agent, task, cmd="check")
    check(rc == 0 and res["changes"] == [] and any("applied before" in w for w in res.get("warnings", [])),
          f"check of an applied task: {res}")
    # The proof runs: a wrong password fails as apply would.
    bad = box.task(keypair_name="kp2", public_key=box.keys.pub("b"), server={
        "auth": {"type": "password", "key": "not-the-password"}})
    rc, res, _ = apply_json(box, agent, bad, cmd="check")
    check(rc == 1 and res["error_code"] == "KPS.AGENT.AUTH_FAILED" and res["changes"] == [], f"{res}")
    # A port change: the candidate is judged, sshd stays where it is.
    new_port = sb.free_port()
    rc, res, _ = apply_json(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"),
                                                 server={"port": new_port}), cmd="check")
    diffs = {c["path"]: c["diff"] for c in res["changes"]} if res else {}
    check(rc == 0 and f"+Port {new_port}\n" in diffs.get(box.sshd_config, ""), f"port check: {res}")
    check(sb.port_open(box.port) and not sb.port_open(new_port), "check moved sshd")


@case
def check_judges_match_blocks(box, agent):
    b = box.reconfigure(extra_sshd=f"Match User {box.user}\n\tPasswordAuthentication yes\n")
    reset_home(b)
    before = snapshot(b)
    rc, res, _ = apply_json(b, agent, b.task(keypair_name="kp1", public_key=b.keys.pub("a"),
                                             server={"disable_password": True}), cmd="check")
    check(rc == 1 and res["error_code"] == "KPS.AGENT.SSHD_CONFIG_INVALID", f"{res}")
    check(snapshot(b) == before, "check changed the VM")


@case
def list_and_status(box, agent):
    reset_home(box, USER_LINE)
    rc, out, _ = run_agent(agent, box, "status", "--json")
    st = json.loads(out)
    check(rc == 0 and st["running"] is False and st["pending_results"] == 0 and st["last_result"] is None and
          st["sources"] == [], f"status, nothing yet: {st}")
    until = int(time.time()) + 86400
    task = box.task(keypairs=[{"name": "kp1", "public_key": box.keys.pub("a")},
                              {"name": "kp-two", "public_key": box.keys.pub("b", "ecdsa")}],
                    key_expires_at=rfc3339(until))
    expect(box, agent, task)
    rc, out, _ = run_agent(agent, box, "list", "--json")
    entries = json.loads(out)
    want = [{"user": box.user, "path": box.keys_path(), "keypair_name": "kp1",
             "fingerprint": fingerprint(box.keys.pub("a")), "task_id": task["task_id"], "expires_at": rfc3339(until)},
            {"user": box.user, "path": box.keys_path(), "keypair_name": "kp-two",
             "fingerprint": fingerprint(box.keys.pub("b", "ecdsa")), "task_id": task["task_id"],
             "expires_at": rfc3339(until)}]
    check(rc == 0 and entries == want, f"list --json: {entries}\nwanted {want}")
    # For scripts (not a terminal): one entry a line, in aligned columns.
    rc, out, _ = run_agent(agent, box, "list")
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 2 and lines[0].split()[:3] == [box.user, "kp1", want[0]["fingerprint"]] and
          lines[0].split()[3:] == [rfc3339(until), task["task_id"], box.keys_path()], f"list: {out}")
    for start in ("SHA256:", task["task_id"], box.keys_path()):
        col = lines[0].index(start)
        check(lines[1][col:].startswith(start), f"columns not aligned:\n{out}")
    # For people (a terminal): a header line above them.
    p = subprocess.run(["script", "-qec", f"{agent} -c {box.agent_config} list", "/dev/null"], capture_output=True,
                       text=True)
    head = p.stdout.splitlines()[0].split() if p.stdout else []
    check(head == ["USER", "KEYPAIR", "FINGERPRINT", "EXPIRES_AT", "TASK", "PATH"], f"list at a terminal: {p.stdout!r}")
    rc, out, _ = run_agent(agent, box, "list", "--user", "root", "--json")
    check(rc == 0 and json.loads(out) == [], f"list --user root: {out}")
    rc, out, _ = run_agent(agent, box, "status", "--json")
    st = json.loads(out)
    check(st["running"] is False and st["last_result"]["task_id"] == task["task_id"], f"status: {st}")
    rc, out, _ = run_agent(agent, box, "status")
    check(rc == 0 and re.search(r"^running\s+no$", out, re.M) and task["task_id"] in out, f"status: {out}")
    for bad in (["list", "--bogus"], ["status", "extra"], ["list", "--user"]):
        rc, _, err = run_agent(agent, box, *bad)
        check(rc == 2, f"{bad}: exit {rc}")


@case
def submit_and_status_with_daemon(box, agent_exe, emulator):
    del emulator
    reset_home(box)
    agent = Agent(box, agent_exe, NoControlPlane())
    task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"))
    rc, _, err = run_agent(agent_exe, box, "submit", stdin=json.dumps(task), config=agent.config)
    check(rc == 2 and "no daemon" in err, f"submit without a daemon: {rc} {err}")
    agent.start()
    try:
        pretty = json.dumps(task, indent=2)	# several lines: submit makes it one
        rc, out, _ = run_agent(agent_exe, box, "submit", stdin=pretty, config=agent.config)
        res = json.loads(out)
        check(rc == 0 and res["status"] == "SUCCESS" and res["task_id"] == task["task_id"], f"submit: {rc} {out}")
        rc, out, _ = run_agent(agent_exe, box, "submit", stdin=json.dumps(box.task(keypair_name="kp1")),
                               config=agent.config)
        check(rc == 1 and json.loads(out)["error_code"] == "KPS.AGENT.INVALID_TASK", f"submit, invalid: {out}")
        rc, out, _ = run_agent(agent_exe, box, "status", "--json", config=agent.config)
        st = json.loads(out)
        check(st["running"] is True and st["pid"] == agent.proc.pid and "socket" in st["sources"], f"status: {st}")
    finally:
        agent.stop()
    rc, out, _ = run_agent(agent_exe, box, "status", "--json", config=agent.config)
    check(json.loads(out)["running"] is False, f"status after stop: {out}")


# -- the audit trail --------------------------------------------------------

@case
def audit_trail(box, agent):
    reset_home(box, USER_LINE)
    keys_before = sha256_file(box.keys_path())
    conf_before = sha256_file(box.sshd_config)
    task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": True},
                    requester='iam:user/"alice" req-5f1c')
    rc, res, err = apply_json(box, agent, task)
    check(rc == 0, f"{res}")
    recs = audit_records(err)
    r = check_audit(recs, "KEY_ADDED", USER=box.user, KEYPAIR="kp1", TASK_ID=task["task_id"],
                    REQUESTER='iam:user/"alice" req-5f1c', FINGERPRINT=fingerprint(box.keys.pub("a")))
    check(r["FILE"] == box.keys_path() and r["SHA256_BEFORE"] == keys_before and
          r["SHA256_AFTER"] == sha256_file(box.keys_path()), f"file hashes: {r}")
    r = check_audit(recs, "PASSWORD_LOGIN_CHANGED", TASK_ID=task["task_id"])
    check(r["FILE"] == box.sshd_config and r["SHA256_BEFORE"] == conf_before and
          r["SHA256_AFTER"] == sha256_file(box.sshd_config) and "-> no" in r["DETAIL"], f"{r}")

    task = box.task("disassociate", requester="ops")
    rc, res, err = apply_json(box, agent, task)
    recs = audit_records(err)
    check_audit(recs, "KEY_REMOVED", KEYPAIR="kp1", REQUESTER="ops", FINGERPRINT=fingerprint(box.keys.pub("a")))
    check_audit(recs, "PASSWORD_LOGIN_CHANGED", TASK_ID=task["task_id"])

    new_port = sb.free_port()
    task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": new_port})
    rc, res, err = apply_json(box, agent, task)
    check(rc == 0, f"{res}")
    r = check_audit(audit_records(err), "PORT_CHANGED", TASK_ID=task["task_id"])
    check(r["DETAIL"] == f"Port {box.port} -> {new_port}", f"{r}")
    # Nothing changed, nothing to audit: a replay is silent.
    rc, res, err = apply_json(box, agent, task)
    check(audit_records(err) == [], f"a replay left audit records: {err}")


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        return 0
    agent, emulator, name = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    sb.ensure_user()
    box = sb.Sandbox(name)
    ok = False
    try:
        fn = CASES[name]
        if fn.__code__.co_argcount == 3:
            fn(box, agent, emulator)
        else:
            fn(box, agent)
        ok = True
    except Failure as e:
        print(f"FAIL {name}: {e}")
    finally:
        box.close(keep=not ok)
    print(f"PASS {name}" if ok else f"sandbox kept in {box.dir}; sshd log: {box.log}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
