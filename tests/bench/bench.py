#!/usr/bin/env python3
"""Benchmarks of `kps-agent apply` against a real sshd on loopback.

Usage: bench.py AGENT FLOOR [RUNS]

Prints, per scenario, median and p99 of the whole apply (wall time of the
process, and the agent's own duration_ms) with the median of each step as
the agent logs it under -v; beside them the floor (temp file + fsync +
rename of a file of the same size) and one plain OpenSSH login. Figures,
not assertions: nothing here fails on a slow machine."""

import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, reset_home  # noqa: E402

STEP_RE = re.compile(r"steps \(ms\): (.*)$")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def apply_once(box, agent, task):
    t0 = time.perf_counter()
    p = subprocess.run([agent, "-v", "-c", box.agent_config, "apply"], input=json.dumps(task).encode(),
                       capture_output=True)
    wall = (time.perf_counter() - t0) * 1000
    res = json.loads(p.stdout)
    if res["status"] != "SUCCESS":
        raise SystemExit(f"bench task failed: {res}")
    steps = {}
    for line in p.stderr.decode().splitlines():
        m = STEP_RE.search(line)
        if m:
            steps = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    return wall, res["duration_ms"], steps


def report(name, samples):
    walls = [s[0] for s in samples]
    durs = [s[1] for s in samples]
    steps = {k: statistics.median(s[2].get(k, 0.0) for s in samples) for k in samples[0][2]}
    print(f"{name:<44} wall p50 {statistics.median(walls):7.1f} p99 {pct(walls, 99):7.1f}  "
          f"agent p50 {statistics.median(durs):6.1f} p99 {pct(durs, 99):6.1f} ms")
    print("    steps p50 (ms): " + " ".join(f"{k}={v:.1f}" for k, v in steps.items() if v >= 0.05))
    return statistics.median(walls)


def floor(floor_exe, directory, size, runs):
    p = subprocess.run([floor_exe, directory, str(size), str(runs)], capture_output=True, text=True, check=True)
    us = [int(x) for x in p.stdout.split()]
    return statistics.median(us) / 1000, pct(us, 99) / 1000


def big_keys(box, n):
    lines = [USER_LINE]
    base = box.keys.pub("filler").split()
    for i in range(n - 1):
        lines.append(f"{base[0]} {base[1]} filler-{i}\n")
    return "".join(lines)


def main():
    agent, floor_exe = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    sb.ensure_user()
    box = sb.Sandbox("bench")
    try:
        print(f"kps-agent apply benchmarks, {runs} runs each, sshd on 127.0.0.1:{box.port}\n")
        pub = box.keys.pub("a")
        ssh_dir = os.path.dirname(box.keys_path())

        reset_home(box, USER_LINE)
        report("associate, 1-line authorized_keys", [
            apply_once(box, agent, box.task(keypair_name="kp1", public_key=pub)) for _ in range(runs)])
        f1 = floor(floor_exe, ssh_dir, len(USER_LINE) + 200, runs)
        print(f"    floor (temp+fsync+rename, same size): p50 {f1[0]:.2f} p99 {f1[1]:.2f} ms")

        text = big_keys(box, 10000)
        reset_home(box, text)
        report("associate, 10,000-line authorized_keys", [
            apply_once(box, agent, box.task(keypair_name="kp1", public_key=pub)) for _ in range(runs)])
        f2 = floor(floor_exe, ssh_dir, len(text) + 200, runs)
        print(f"    floor (temp+fsync+rename, same size): p50 {f2[0]:.2f} p99 {f2[1]:.2f} ms")

        reset_home(box, USER_LINE)
        report("associate + disable_password (sshd -T, reload)", [
            apply_once(box, agent, box.task(keypair_name="kp1", public_key=pub,
                                            server={"disable_password": i % 2 == 0})) for i in range(runs)])

        samples = []
        for _ in range(runs):
            reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
            samples.append(apply_once(box, agent, box.task(keypair_name="kp1", public_key=pub, server={
                "auth": {"type": "keypair", "key": box.keys.private("old")}})))
        report("associate with auth keypair (proof + probe)", samples)

        reset_home(box, USER_LINE)
        report("associate with auth password (proof + probe)", [
            apply_once(box, agent, box.task(keypair_name="kp1", public_key=pub, server={
                "auth": {"type": "password", "key": sb.TEST_PASSWORD}})) for _ in range(runs)])

        reset_home(box, USER_LINE + box.keys.pub("old") + "\n")
        walls = []
        for _ in range(max(10, runs // 2)):
            t0 = time.perf_counter()
            ok = box.login_key("old")
            walls.append((time.perf_counter() - t0) * 1000)
            assert ok
        print(f"{'ssh -o BatchMode=yes ... true (by hand)':<44} wall p50 {statistics.median(walls):7.1f} "
              f"p99 {pct(walls, 99):7.1f} ms")
    finally:
        box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
