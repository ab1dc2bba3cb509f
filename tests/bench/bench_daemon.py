#!/usr/bin/env python3
"""Benchmarks of `kps-agent run` through the control-plane emulator.

Usage: bench_daemon.py AGENT EMULATOR [RUNS]

- call-to-result: from the AssociateKeypair call at the emulator to the
  agent's result being stored there (ListKeypairTask says SUCCESS_), median
  and p99, probe included; the first call after start (which waits for
  the first, jittered poll) apart;
- the daemon right after the last task (with the spare worker that waits
  10 s for a next one) and idle (once it is gone): every kps-agent process
  (the monitor and its resident network side, kps-agent-net):
  RSS, Pss and Private memory each (/proc/PID/smaps_rollup), the Pss summed
  over all of them, and wake-ups per minute summed over all of them
  (context switches while nothing happens but the long poll);
- exec to READY=1 (a NOTIFY_SOCKET of our own), with the control plane
  (READY=1 follows the first poll) and without one;
- beside it, where qemu-guest-agent is installed: qemu-ga's idle memory and
  the time of one guest-ssh-add-authorized-keys over its socket.
Figures, never assertions."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "integration"))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, reset_home  # noqa: E402
from daemon_cases import Agent, ControlPlane, PROJECT  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def memory(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                out[k] = int(rest.split()[0])
    out["Private"] = out.pop("Private_Clean", 0) + out.pop("Private_Dirty", 0)
    return out


def switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def tree(pid):
    """[(pid, argv[0])] of pid and its descendants (the daemon's processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                name = os.path.basename(f.read().split(b"\0")[0].decode(errors="replace"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            continue
        out.append((p, name))
    return out


def tree_switches(procs):
    total = 0
    for pid, _ in procs:
        try:
            total += switches(pid)
        except OSError:
            pass
    return total


def call_to_result(box, cp, runs):
    if not getattr(cp, "bench_keypair", False):
        cp.import_keypair("bench", box.keys.pub("a"))
        cp.bench_keypair = True
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        tid = cp.associate({"keypair_name": "bench", "server": {"id": box.server_id}})
        while not cp.task(tid)["task_status"].startswith(("SUCCESS_", "FAILED_")):
            time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
        assert cp.task(tid)["task_status"] == "SUCCESS_RESET", cp.task(tid)
    return times


def exec_to_ready(agent_exe, config, runs=10):
    times = []
    for _ in range(runs):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(10)
        t0 = time.perf_counter()
        p = subprocess.Popen([agent_exe, "-c", config, "run"], env={**os.environ, "NOTIFY_SOCKET": path},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            msg = s.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                break
        times.append((time.perf_counter() - t0) * 1000)
        p.terminate()
        p.wait()
        s.close()
        os.unlink(path)
        os.rmdir(d)
    return times


def qemu_ga(box, runs):
    exe = "/usr/sbin/qemu-ga"
    if not os.path.exists(exe):
        return None
    d = tempfile.mkdtemp(dir=box.dir)
    sock = os.path.join(d, "qga.sock")
    p = subprocess.Popen([exe, "-m", "unix-listen", "-p", sock, "-t", d], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 5
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        idle = memory(p.pid)
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        f = c.makefile("rwb")
        times = []
        for _ in range(runs):
            cmd = {"execute": "guest-ssh-add-authorized-keys",
                   "arguments": {"username": box.user, "keys": [box.keys.pub("a")], "reset": True}}
            t0 = time.perf_counter()
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            answer = json.loads(f.readline())
            times.append((time.perf_counter() - t0) * 1000)
            assert "return" in answer, answer
        c.close()
        return idle, times
    finally:
        p.terminate()
        p.wait()


def main():
    agent_exe, emulator = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    sb.ensure_user()
    box = sb.Sandbox("bench-daemon")
    cp = ControlPlane(emulator)
    agent = None
    try:
        reset_home(box, USER_LINE)
        agent = Agent(box, agent_exe, cp)
        agent.start()
        # The first call after start waits for the agent's first poll,
        # which the fleet pacing delays by a random part of poll_wait.
        first = call_to_result(box, cp, 1)
        print(f"call-to-result, the first call after start: {first[0]:.1f} ms (waits for the first poll)")
        t = call_to_result(box, cp, runs)
        print(f"call-to-result (associate at the emulator -> result stored), {runs} runs: "
              f"p50 {statistics.median(t):.1f} ms, p99 {pct(t, 99):.1f} ms")
        time.sleep(1)
        busy = tree(agent.proc.pid)
        print("kps-agent 1 s after the last task: " + ", ".join(
            f"{name} Pss {memory(pid)['Pss']} kB" for pid, name in busy) +
            " (a spare worker waits up to 10 s for the next task)")
        # Idle: the spare worker gone.
        deadline = time.time() + 20
        while time.time() < deadline and any(n == "kps-agent-worker" for _, n in tree(agent.proc.pid)):
            time.sleep(0.2)
        time.sleep(0.5)
        procs = tree(agent.proc.pid)
        mem = {pid: memory(pid) for pid, _ in procs}
        for pid, name in procs:
            m = mem[pid]
            print(f"kps-agent idle, {name} (pid {pid}): Rss {m['Rss']} kB, Pss {m['Pss']} kB, "
                  f"Private {m['Private']} kB")
        pss = sum(m["Pss"] for m in mem.values())
        net_rss = [mem[pid]["Rss"] for pid, name in procs if name == "kps-agent-net"]
        print(f"kps-agent idle, all {len(procs)} processes: Pss {pss} kB summed")
        window = 20
        before = {pid: switches(pid) for pid, _ in procs}
        time.sleep(window)
        after = {pid: switches(pid) for pid, _ in tree(agent.proc.pid)}
        woke = sum(after.get(pid, 0) - n for pid, n in before.items())
        each = ", ".join(f"{name} {after.get(pid, 0) - before[pid]}" for pid, name in procs)
        gone = [name for pid, name in procs if pid not in after]
        print(f"kps-agent idle wake-ups, all processes: {woke} in {window} s ({woke * 60 / window:.1f}/min; "
              f"{each}; long poll wait 5 s here)" + (f"; ended meanwhile: {gone}" if gone else ""))
        agent.stop()
        r = exec_to_ready(agent_exe, agent.config)
        print(f"exec to READY=1, with the control plane, {len(r)} runs: p50 {statistics.median(r):.1f} ms, "
              f"max {max(r):.1f} ms (READY=1 follows the first poll, jittered)")
        local = agent.config + ".local"
        with open(agent.config) as f, open(local, "w") as g:
            g.write("".join(line for line in f if not line.startswith("url = ")))
        r = exec_to_ready(agent_exe, local)
        print(f"exec to READY=1, no control plane (the socket only), {len(r)} runs: "
              f"p50 {statistics.median(r):.1f} ms, max {max(r):.1f} ms")
        q = qemu_ga(box, runs)
        if q:
            idle, times = q
            print(f"qemu-ga idle: Rss {idle['Rss']} kB, Pss {idle['Pss']} kB, Private {idle['Private']} kB")
            print(f"side by side: Pss kps-agent (all) {pss} kB vs qemu-ga {idle['Pss']} kB; "
                  f"Rss kps-agent-net {net_rss[0] if net_rss else '-'} kB vs qemu-ga {idle['Rss']} kB")
            print(f"qemu-ga guest-ssh-add-authorized-keys, {runs} runs: p50 {statistics.median(times):.2f} ms, "
                  f"p99 {pct(times, 99):.2f} ms (no proof, no probe, no sshd_config)")
        else:
            print("qemu-ga: not installed, no comparison")
    finally:
        if agent:
            agent.stop()
        cp.close()
        box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
