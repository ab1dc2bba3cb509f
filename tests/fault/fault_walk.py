#!/usr/bin/env python3
"""Fault walk: every file-system/process step of an apply, failed in turn.

    fault_walk.py AGENT SHIM [--every K] [--scenario a,b,c,d] [--keep]

For each scenario a clean run under the shim (KPS_FAULT_LOG) counts the
steps M and records the old and the new bytes of authorized_keys,
sshd_config and its drop-ins. Then for N in 1..M (every K-th with --every),
from the same baseline: apply with KPS_FAULT_STEP=N and ENOSPC, and again
with KPS_FAULT_KILL=1. After each run every file is exactly old or exactly
new, `sshd -t` passes, and a plain follow-up apply (no shim) recovers:
after a kill with a backup on disk everything is old and the task is
recorded FAILED once; an errno fault before the commit point (the result
recorded in state/results/; formerly the removal
of inflight.json) fails the task with the VM exactly old; after it the VM
is new, never a mix. Ends with `fault: W points walked, F failed`."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, reset_home  # noqa: E402

USER = os.environ.get("KPS_FAULT_USER", "kpsfault")
OTHER_SERVER = "00000000-0000-4000-8000-000000000000"
# Steps whose failure the agent tolerates by design: the sshd -T cache.
TOLERATED = ("/cache.", "/.cache.")
SPAWN_CODES = {"IO_ERROR", "SSHD_UNREACHABLE", "SSHD_CONFIG_INVALID", "RELOAD_FAILED", "PROBE_FAILED"}


class Scenario:
    def __init__(self, key, title, setup, task, config_change=False, port=None):
        self.key, self.title, self.setup, self.task = key, title, setup, task
        self.config_change, self.port = config_change, port


def scenarios(box_for):
    def plain(box):
        reset_home(box, USER_LINE)

    def associated(box, agent):
        reset_home(box, USER_LINE)
        rc, res, err, _ = box.apply(box.task(keypair_name="kp0", public_key=box.keys.pub("b"),
                                             server={"disable_password": True}), agent)
        if not res or res["status"] != "SUCCESS":
            raise RuntimeError(f"setup of disassociate failed: {res} {err[-300:]}")

    port = box_for.port
    while port == box_for.port:
        port = sb.free_port()
    return [
        Scenario("a", "associate, no sshd_config change", lambda b, ag: plain(b),
                 lambda b: b.task(task_id="fault-a", keypair_name="kp1", public_key=b.keys.pub("a"))),
        Scenario("b", "associate with disable_password", lambda b, ag: plain(b),
                 lambda b: b.task(task_id="fault-b", keypair_name="kp1", public_key=b.keys.pub("a"),
                                  server={"disable_password": True}), config_change=True),
        Scenario("c", "disassociate restoring password", associated,
                 lambda b: b.task("disassociate", task_id="fault-c"), config_change=True),
        Scenario("d", "associate with a port change", lambda b, ag: plain(b),
                 lambda b: b.task(task_id="fault-d", keypair_name="kp1", public_key=b.keys.pub("a"),
                                  server={"port": port}), config_change=True, port=port),
    ]


# -- the sandbox's files ----------------------------------------------------

def files(box):
    """path -> bytes (None: absent) for everything the agent may write."""
    out = {}
    paths = [box.keys_path(), box.sshd_config]
    paths += [os.path.join(box.dropins, n) for n in sorted(os.listdir(box.dropins))]
    for p in paths:
        try:
            with open(p, "rb") as f:
                out[p] = f.read()
        except FileNotFoundError:
            out[p] = None
    return out


def temp_files(box):
    found = []
    for d in [os.path.dirname(box.keys_path()), box.dir, box.dropins, box.state,
              os.path.join(box.state, "results"), os.path.join(box.state, "outbox")]:
        try:
            found += [os.path.join(d, n) for n in os.listdir(d) if ".kps-" in n]
        except FileNotFoundError:
            pass
    return found


def sshd_t(box):
    p = sb.run([sb.SSHD, "-t", "-f", box.sshd_config], check=False)
    return p.returncode == 0, p.stderr.strip()[-300:]


class Baseline:
    def __init__(self, box):
        self.files = files(box)
        self.state = os.path.join(box.dir, "baseline-state")
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.copytree(box.state, self.state, symlinks=True)

    def restore(self, box, reload_sshd):
        keys = self.files[box.keys_path()]
        reset_home(box, None if keys is None else keys.decode("latin-1"))
        if keys is not None:  # reset_home writes text; put the exact bytes back
            with open(box.keys_path(), "wb") as f:
                f.write(keys)
        for n in os.listdir(box.dropins):
            os.unlink(os.path.join(box.dropins, n))
        for p, data in self.files.items():
            if p == box.keys_path() or data is None:
                continue
            with open(p, "wb") as f:
                f.write(data)
        shutil.rmtree(box.state, ignore_errors=True)
        shutil.copytree(self.state, box.state, symlinks=True)
        for n in os.listdir(box.dir):
            if ".kps-" in n:
                os.unlink(os.path.join(box.dir, n))
        if reload_sshd:
            # A restart, not SIGHUP: after SIGHUP the old listener answers for a
            # moment, and an agent started then would see sshd go away mid-task.
            box.stop_sshd()
            box.start_sshd()


def wait_port(port, want=True, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sb.port_open(port) == want:
            return True
        time.sleep(0.02)
    return False


def harmless(box):
    """A valid task for another server: WRONG_SERVER, after the recovery ran."""
    return box.task(keypair_name="kpx", public_key=box.keys.pub("c"), server={"id": OTHER_SERVER})


# -- runs --------------------------------------------------------------------

def run_agent(box, agent, task, env_extra=None, shim=None):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "KPS_FAULT_STEP", "KPS_FAULT_KILL", "KPS_FAULT_ERRNO", "KPS_FAULT_LOG"):
        env.pop(k, None)
    if shim:
        env["LD_PRELOAD"] = shim
        env.update(env_extra or {})
    p = subprocess.run([agent, "-c", box.agent_config, "apply"], input=json.dumps(task).encode(),
                       capture_output=True, env=env, timeout=120)
    lines = [l for l in p.stdout.decode(errors="replace").splitlines() if l.strip()]
    res = None
    if lines:
        try:
            res = json.loads(lines[-1])
        except ValueError:
            res = None
    return p.returncode, res, p.stderr.decode(errors="replace")


def record(box, task_id):
    p = os.path.join(box.state, "results", task_id + ".json")
    try:
        with open(p) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def classify(cur, old, new):
    """'old', 'new', 'mixed' for the whole set; per-file bad paths."""
    bad = [p for p in set(cur) | set(old) | set(new)
           if cur.get(p) != old.get(p) and cur.get(p) != new.get(p)]
    if bad:
        return "torn", bad
    if cur == old:
        return "old", []
    if cur == new:
        return "new", []
    return "mixed", []


def read_log(path):
    steps = {}
    try:
        with open(path) as f:
            for line in f.read().splitlines():
                num, _, rest = line.partition(" ")
                if num.isdigit():
                    steps[int(num)] = rest.strip()
    except FileNotFoundError:
        pass
    return steps


def is_commit(detail):
    """The commit point: the task's result renamed into state/results/."""
    return detail.startswith("rename") and "/state/results/" in detail.split("->")[-1]


def stage1_config(box, sc, data):
    """Make before break: sshd_config listening on the old and the new port."""
    if not sc.port or data is None:
        return False
    text = data.decode(errors="replace")
    return f"Port {sc.port}" in text and f"Port {box.port}" in text


def walk_point(sc, box, agent, shim, base, new, n, mode):
    """One fault point; returns (problems, ...); problems None: step not reached."""
    problems = []
    old = base.files
    task = sc.task(box)
    base.restore(box, sc.config_change)
    log = os.path.join(box.dir, "run.log")
    if os.path.exists(log):
        os.unlink(log)
    env = {"KPS_FAULT_STEP": str(n), "KPS_FAULT_LOG": log}
    env.update({"KPS_FAULT_KILL": "1"} if mode == "kill" else {"KPS_FAULT_ERRNO": "ENOSPC"})
    rc, res, err = run_agent(box, agent, task, env, shim)
    steps = read_log(log)
    detail = steps.get(n)
    if detail is None:
        # This run took fewer steps than the clean one (timing): nothing to judge,
        # but the follow-up below still must find the VM consistent.
        detail = "(not reached)"
    # A fault on the removal of inflight.json itself is judged like one after
    # it: the VM must end consistent with the result, whichever it is.
    commit_done = any(is_commit(d) for k, d in steps.items() if k <= n)
    killed = rc == -9
    if mode == "kill" and not killed and detail != "(not reached)":
        problems.append(f"not killed (rc {rc}) at a step that happened")
    if mode == "errno" and res is None:
        problems.append(f"no result line (rc {rc}): {err[-300:]}")

    cur = files(box)
    state, bad = classify(cur, old, new)
    if state == "torn" and all(p == box.sshd_config and stage1_config(box, sc, cur[p]) for p in bad):
        state = "stage1"
    if state == "torn":
        problems.append(f"file(s) neither old nor new: {bad}")
    ok, why = sshd_t(box)
    if not ok:
        problems.append(f"sshd -t fails after the run: {why}")
    inflight = os.path.exists(os.path.join(box.state, "inflight.json"))
    status = res.get("status") if res else None
    code = (res.get("error_code") or "").replace("KPS.AGENT.", "") if res else ""
    if res and res.get("error_msg"):
        code += f" ({res['error_msg'][:160]})"

    tolerated = any(t in detail for t in TOLERATED)
    if mode == "errno" and res is not None:
        if not commit_done and not tolerated:
            if status != "FAILED":
                problems.append(f"fault before the commit point but {status}")
            else:
                spawn = detail.split()[0] in ("fork", "execve", "posix_spawn", "kill")
                bare = code.split(" ")[0]
                if bare != "IO_ERROR" and not (spawn and bare in SPAWN_CODES):
                    problems.append(f"fault before the commit point gave {code}, not IO_ERROR")
            if state != "old":
                problems.append(f"fault before the commit point left the VM {state}")
        elif status == "SUCCESS" and state != "new":
            problems.append(f"SUCCESS but the VM is {state}")
        elif status == "FAILED" and state != "old":
            problems.append(f"FAILED ({code}) but the VM is {state}")
        leftovers = temp_files(box)
        if leftovers:
            problems.append(f"temp files left after an errno fault: {leftovers}")

    # The follow-up: a harmless task (another server's id: WRONG_SERVER), no shim.
    follow = harmless(box)
    frc, fres, ferr = run_agent(box, agent, follow)
    if not fres or fres.get("error_code") != "KPS.AGENT.WRONG_SERVER":
        problems.append(f"follow-up gave {fres} rc {frc}: {ferr[-300:]}")
    after = files(box)
    fstate, fbad = classify(after, old, new)
    if fstate not in ("old", "new"):
        problems.append(f"after recovery the VM is {fstate} {fbad}")
    if os.path.exists(os.path.join(box.state, "inflight.json")):
        problems.append("inflight.json still there after the follow-up")
    rec = record(box, task["task_id"])
    if mode == "kill":
        if inflight and rec and rec.get("status") == "SUCCESS" and commit_done:
            # Killed after the commit (the result recorded) but before the
            # backups went: recovery keeps the change.
            if fstate != "new":
                problems.append(f"killed after the commit, but after recovery the VM is {fstate}")
        elif inflight:
            if fstate != "old":
                problems.append(f"killed with a backup on disk, but after recovery the VM is {fstate}")
            if not rec or rec.get("status") != "FAILED":
                problems.append(f"interrupted task not recorded FAILED: {rec}")
        elif rec and rec.get("status") != ("SUCCESS" if fstate == "new" else "FAILED"):
            problems.append(f"record {rec.get('status')} but the VM is {fstate}")
        elif fstate != state:
            problems.append(f"no backup on disk, yet recovery moved the VM {state} -> {fstate}")
    else:
        want = "new" if status == "SUCCESS" else "old"
        if res is not None and fstate != want:
            problems.append(f"result {status} but after the follow-up the VM is {fstate} (recovery undid it?)")
    if rec is not None and rec.get("task_id") != task["task_id"]:
        problems.append(f"record names {rec.get('task_id')}")
    n_records = len([x for x in os.listdir(os.path.join(box.state, "results")) if x == task["task_id"] + ".json"])
    if n_records > 1:
        problems.append("recorded more than once")
    if fres and fres.get("task_id") != follow["task_id"]:
        problems.append(f"follow-up reported another task: {fres}")
    # A recorded result is what a replay returns, and a replay changes nothing.
    if rec is not None:
        before = files(box)
        _, rres, _ = run_agent(box, agent, task)
        if not rres or rres.get("status") != rec.get("status") or files(box) != before:
            problems.append(f"replay of the recorded task gave {rres} or changed the VM")
    # sshd answers where the surviving config says.
    want_port = sc.port if (sc.port and fstate == "new") else box.port
    if not wait_port(want_port):
        problems.append(f"sshd does not answer on port {want_port} after recovery")
    ok, why = sshd_t(box)
    if not ok:
        problems.append(f"sshd -t fails after recovery: {why}")
    return problems, (status or ("killed" if killed else f"rc{rc}")), code, state, fstate, detail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("shim")
    ap.add_argument("--every", type=int, default=int(os.environ.get("KPS_FAULT_EVERY", "1")))
    ap.add_argument("--scenario", default="a,b,c,d")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated step numbers")
    ap.add_argument("--modes", default="errno,kill")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    agent, shim = os.path.abspath(args.agent), os.path.abspath(args.shim)
    sb.ensure_user(USER)
    walked = failed = 0
    started = time.time()
    for key in args.scenario.split(","):
        box = sb.Sandbox(f"fault-{key}", user=USER)
        sc = next(s for s in scenarios(box) if s.key == key)
        box_ok = True
        if args.verbose:
            print(f"scenario {sc.key}: sandbox {box.dir}")
        try:
            sc.setup(box, agent)
            # The sshd -T cache makes step counts depend on history: fill it.
            run_agent(box, agent, harmless(box))
            base = Baseline(box)
            base.restore(box, sc.config_change)  # the clean run sees what every faulted run sees
            log = os.path.join(box.dir, "clean.log")
            rc, res, err = run_agent(box, agent, sc.task(box), {"KPS_FAULT_LOG": log}, shim)
            if not res or res.get("status") != "SUCCESS":
                print(f"FAIL scenario {sc.key}: clean run {res} {err[-400:]}")
                failed += 1
                box_ok = False
                continue
            new = files(box)
            with open(log) as f:
                steps = [l.split(" ", 1)[1].strip() for l in f.read().splitlines() if l.strip()]
            m = len(steps)
            commit = next((i + 1 for i, s in enumerate(steps) if is_commit(s)), m + 1)
            points = list(range(1, m + 1, max(1, args.every)))
            if args.only:
                points = [int(x) for x in args.only.split(",")]
            n_walked = n_failed = 0
            for mode in args.modes.split(","):
                for n in points:
                    probs, status, code, state, fstate, detail = walk_point(sc, box, agent, shim, base, new, n,
                                                                            mode)
                    n_walked += 1
                    if args.verbose or probs:
                        print(f"  {sc.key} {mode:5} step {n:3}/{m} [{detail}]: {status} {code} "
                              f"{state}->{fstate}" + ("" if not probs else "\n    FAIL: " + "\n    FAIL: ".join(probs)))
                    if probs:
                        n_failed += 1
                        box_ok = False
            sampled = f" (every {args.every}th step)" if args.every > 1 else ""
            print(f"scenario {sc.key} ({sc.title}): {m} steps, commit at step {commit}; "
                  f"{n_walked} fault points walked{sampled} (ENOSPC + KILL), {n_failed} failed")
            walked += n_walked
            failed += n_failed
        finally:
            box.close(keep=args.keep or not box_ok)
            if not box_ok:
                print(f"  sandbox kept in {box.dir}")
    print(f"fault: {walked} points walked, {failed} failed  ({time.time() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
