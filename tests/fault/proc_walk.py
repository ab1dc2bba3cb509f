#!/usr/bin/env python3
"""Process fault walk: `kps-agent run`'s processes killed at every step of
a task (issue 13: "kill each one at each step: nothing lost, nothing
half-applied").

    proc_walk.py AGENT SHIM EMULATOR [--scenario b] [--every K]
                 [--targets worker,net,monitor,all] [--only N,..] [-v]

The daemon takes the task from the control-plane emulator and applies it in
an exec'd worker (argv[0] kps-agent-worker). The shim (faultshim.c) counts
the steps of that first worker only (KPS_FAULT_ARGV0, KPS_FAULT_ONCE; the
worker that rolls a task back counts nothing) and stops it with SIGSTOP
right before step N (KPS_FAULT_STOP). Then, by target:

  worker   SIGKILL the worker: the monitor rolls the task back in a fresh
           worker (or keeps it, past the commit point) and reports it;
  net      SIGKILL the network side (kps-agent-net), let the worker go on:
           the monitor starts a new network side, which posts the result;
  monitor  SIGKILL the monitor alone, let the worker go on: its network
           side must end by itself, the worker finishes; the next
           `kps-agent run` posts what was recorded;
  all      SIGKILL the monitor, the network side and the worker at once
           (systemd killing the unit's cgroup); the next start rolls back.

The emulator never hands a task out again (--redeliver-ms a day): a result
the agent recorded must reach it from the outbox within 25 s by itself;
only a task killed with all three processes before its backups were on disk
may be missing (the README: the control plane delivers it again), and then
the VM must be old and nothing recorded.

After each point: the emulator holds the task's result, posted exactly once;
authorized_keys, sshd_config and its drop-ins are all old (FAILED) or all
new (SUCCESS), never a mix; the result recorded matches; no inflight.json,
an empty outbox, `sshd -t` passes. Ends with `procs: W points walked, F
failed`."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import sandbox as sb  # noqa: E402
from cases import USER_LINE, Failure, reset_home  # noqa: E402
from daemon_cases import Agent, ControlPlane  # noqa: E402
import fault_walk as fw  # noqa: E402

USER = os.environ.get("KPS_FAULT_USER", "kpsfault")
TARGETS = ("worker", "net", "monitor", "all")
RESULT_WAIT_S = 25
# The emulator hands a RUNNING task out again after this: never, in a walk.
NO_REDELIVERY = ("--redeliver-ms", str(24 * 3600 * 1000))


def scenarios():
    """key -> (title, the server options, whether sshd_config changes)."""
    return {
        "a": ("associate, no sshd_config change", {}, False),
        "b": ("associate with disable_password", {"disable_password": True}, True),
    }


def children(pid):
    """pid -> argv[0] of pid's children."""
    out = {}
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for k in kids:
        try:
            with open(f"/proc/{k}/cmdline", "rb") as f:
                out[k] = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            pass
    return out


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = state(pid)
        if st is None or st == "Z":
            return True
        time.sleep(0.02)
    return False


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Daemon(Agent):
    """daemon_cases' Agent, started with the shim's environment."""

    def start_env(self, env):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.exe, "-c", self.config, "run"], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=env, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline and not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise Failure("agent exited: " + open(self.log).read()[-2000:])
            time.sleep(0.01)


def shim_env(shim, box, n):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("KPS_FAULT_") or k == "LD_PRELOAD":
            env.pop(k)
    log = os.path.join(box.dir, "walk.log")
    if os.path.exists(log):
        os.unlink(log)
    once = os.path.join(box.dir, "walk.once")
    if os.path.exists(once):
        os.unlink(once)
    env.update(LD_PRELOAD=shim, KPS_FAULT_ARGV0="kps-agent-worker", KPS_FAULT_ONCE=once,
               KPS_FAULT_LOG=os.path.join(box.dir, "walk.log"))
    if n:
        env.update(KPS_FAULT_STEP=str(n), KPS_FAULT_STOP="1")
    return env


def plain_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("KPS_FAULT_") and k != "LD_PRELOAD"}


def wait_stopped(agent, cp, tid, timeout=60):
    """The stopped worker's pid, or None when the task finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid, name in children(agent.proc.pid).items():
            if name == "kps-agent-worker" and state(pid) == "T":
                return pid
        if cp.task(tid)["task_status"].startswith(("SUCCESS_", "FAILED_")):
            return None
        if agent.proc.poll() is not None:
            raise Failure(f"the monitor exited {agent.proc.returncode}")
        time.sleep(0.01)
    raise Failure(f"neither stopped nor done in {timeout}s")


def strike(target, agent, worker, problems):
    """Kills target's process(es); returns True when the daemon must be started again."""
    mon = agent.proc.pid
    net = [p for p, n in children(mon).items() if n == "kps-agent-net"]
    if target == "worker":
        kill(worker)
        return False
    if target == "net":
        if not net:
            problems.append("no network side to kill")
        for p in net:
            kill(p)
        kill(worker, signal.SIGCONT)
        return False
    if target == "monitor":
        kill(mon)
        agent.proc.wait()
        kill(worker, signal.SIGCONT)
        if not gone(worker, 90):
            problems.append("the orphaned worker did not finish")
        for p in net:
            if not gone(p, 10):
                problems.append("the network side outlived its monitor by 10 s")
                kill(p)
        return True
    for p in [mon] + net + [worker]:
        kill(p)
    agent.proc.wait()
    for p in net + [worker]:
        gone(p, 10)
    return True


def judge(box, cp, tid, base, new, durable, problems):
    # The new files name the task (its id in the key's comment): this one's.
    clean_tid, new_files = new
    new = {p: v and v.replace(clean_tid.encode(), tid.encode()) for p, v in new_files.items()}
    try:
        t = cp.wait(tid, timeout=RESULT_WAIT_S)
    except Failure:
        # The emulator never hands the task out again here: a result the
        # agent recorded must reach it from the outbox by itself.
        rec = fw.record(box, tid)
        st, _ = fw.classify(fw.files(box), base.files, new)
        if rec:
            problems.append(f"recorded {rec.get('status')} but never posted (not in the outbox: "
                            f"{os.listdir(os.path.join(box.state, 'outbox'))})")
        elif durable:
            problems.append("backups were on disk, yet no result was recorded or posted")
        elif st != "old":
            problems.append(f"nothing recorded, but the VM is {st}")
        else:
            return "not started (the control plane delivers it again)", st
        return "lost", st
    status = "SUCCESS" if t["task_status"].startswith("SUCCESS_") else "FAILED"
    time.sleep(0.5)  # a second post would come now
    posts = cp.task(tid).get("result_posts")
    if posts != 1:
        problems.append(f"result posted {posts} times")
    cur = fw.files(box)
    st, bad = fw.classify(cur, base.files, new)
    if st in ("torn", "mixed"):
        problems.append(f"the VM is {st} {bad}")
    elif st != ("new" if status == "SUCCESS" else "old"):
        problems.append(f"reported {status} ({t.get('error_code')}) but the VM is {st}")
    rec = fw.record(box, tid)
    if not rec or rec.get("status") != status:
        problems.append(f"recorded {rec and rec.get('status')}, reported {status}")
    if os.path.exists(os.path.join(box.state, "inflight.json")):
        problems.append("inflight.json left")
    # A temp file a killed worker was writing stays (nothing sweeps them:
    # counted in the summary); a result left in the outbox is a failure.
    def waiting():
        return [n for n in os.listdir(outbox) if ".kps-" not in n]
    deadline = time.time() + 5
    outbox = os.path.join(box.state, "outbox")
    while waiting() and time.time() < deadline:
        time.sleep(0.05)
    if waiting():
        problems.append(f"outbox not emptied: {waiting()}")
    ok, why = fw.sshd_t(box)
    if not ok:
        problems.append(f"sshd -t fails: {why}")
    return status, st


def litter(box):
    """Temp files (.NAME.kps-XXXX) left in the state dir and beside the
    files the task writes."""
    found = []
    for d in (box.state, os.path.join(box.state, "results"), os.path.join(box.state, "outbox"), box.dir,
              box.dropins, os.path.dirname(box.keys_path())):
        try:
            found += [os.path.join(d, n) for n in os.listdir(d) if ".kps-" in n]
        except FileNotFoundError:
            pass
    return found


def walk_point(box, agent_exe, emulator, shim, base, new, sc, n, target):
    problems = []
    opts, config_change = sc[1], sc[2]
    base.restore(box, config_change)
    cp = ControlPlane(emulator, *NO_REDELIVERY)
    agent = Daemon(box, agent_exe, cp)
    if os.path.exists(agent.sock):
        os.unlink(agent.sock)
    try:
        cp.import_keypair("kp1", box.keys.pub("a"))
        agent.start_env(shim_env(shim, box, n))
        tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id, **opts}})
        worker = wait_stopped(agent, cp, tid)
        what = "not reached"
        durable = False
        if worker:
            what = "stopped"
            durable = (os.path.exists(os.path.join(box.state, "inflight.json"))
                       or fw.record(box, tid) is not None)
            if strike(target, agent, worker, problems):
                if os.path.exists(agent.sock):
                    os.unlink(agent.sock)
                agent.start_env(plain_env())
        status, st = judge(box, cp, tid, base, new, durable, problems)
        if agent.proc.poll() is not None:
            problems.append(f"the monitor died: rc {agent.proc.returncode}")
        elif agent.stop() != 0:
            problems.append("the monitor did not stop cleanly on SIGTERM")
        left = litter(box)
        # The step as this run's worker logged it (timing may shift the count).
        here = fw.read_log(os.path.join(box.dir, "walk.log")).get(n)
        if here:
            what = f"[{here[:100]}] {what}"
        return problems, f"{what}: {status} {st}" + (f"; temp files left: {len(left)}" if left else "")
    except Failure as e:
        problems.append(str(e))
        return problems, "error"
    finally:
        if agent.proc and agent.proc.poll() is None:
            os.killpg(agent.proc.pid, signal.SIGKILL)
            agent.proc.wait()
        cp.close()


def clean_run(box, agent_exe, emulator, shim, sc):
    """The worker's steps for this scenario, and the files it leaves."""
    cp = ControlPlane(emulator)
    agent = Daemon(box, agent_exe, cp)
    log = os.path.join(box.dir, "walk.log")
    if os.path.exists(log):
        os.unlink(log)
    try:
        cp.import_keypair("kp1", box.keys.pub("a"))
        agent.start_env(shim_env(shim, box, 0))
        tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id, **sc[1]}})
        t = cp.wait(tid, timeout=60)
        if not t["task_status"].startswith("SUCCESS_"):
            raise Failure(f"clean run: {t}")
        agent.stop()
    finally:
        if agent.proc and agent.proc.poll() is None:
            os.killpg(agent.proc.pid, signal.SIGKILL)
        cp.close()
    with open(log) as f:
        steps = [line.split(" ", 1)[1].strip() for line in f.read().splitlines() if line.strip()]
    return steps, (tid, fw.files(box))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("shim")
    ap.add_argument("emulator")
    ap.add_argument("--scenario", default="b")
    ap.add_argument("--every", type=int, default=int(os.environ.get("KPS_PROC_EVERY", "8")))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--only", default="")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    agent, shim, emulator = (os.path.abspath(x) for x in (args.agent, args.shim, args.emulator))
    sb.ensure_user(USER)
    walked = failed = 0
    started = time.time()
    for key in args.scenario.split(","):
        sc = scenarios()[key]
        box = sb.Sandbox(f"procs-{key}", user=USER)
        ok = True
        try:
            reset_home(box, USER_LINE)
            # The state dir and the sshd -T cache, as every point will find them.
            fw.run_agent(box, agent, fw.harmless(box))
            base = fw.Baseline(box)
            steps, new = clean_run(box, agent, emulator, shim, sc)
            m = len(steps)
            points = [int(x) for x in args.only.split(",")] if args.only else list(range(1, m + 1, args.every))
            n_failed = n_litter = 0
            for target in args.targets.split(","):
                for n in points:
                    probs, what = walk_point(box, agent, emulator, shim, base, new, sc, n, target)
                    walked += 1
                    detail = steps[n - 1] if n <= m else "(past the end)"
                    if "temp files left" in what:
                        n_litter += 1
                    if args.verbose or probs:
                        print(f"  {key} {target:7} step {n:3}/{m} (clean run: {detail[:90]}): {what}"
                              + ("".join(f"\n    FAIL: {p}" for p in probs)))
                    if probs:
                        n_failed += 1
                        ok = False
            every = f", every {args.every}th step" if args.every > 1 and not args.only else ""
            print(f"scenario {key} ({sc[0]}): {m} worker steps; {len(points)} points x "
                  f"{len(args.targets.split(','))} targets{every}, {n_failed} failed; "
                  f"{n_litter} left a temp file behind")
            failed += n_failed
        except Failure as e:
            print(f"FAIL scenario {key}: {e}")
            failed += 1
            ok = False
        finally:
            box.close(keep=not ok)
            if not ok:
                print(f"  sandbox kept in {box.dir}")
    print(f"procs: {walked} points walked, {failed} failed  ({time.time() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
