#!/usr/bin/env python3
"""`kps-agent check` against `kps-agent apply` on the same tasks, against a
real sshd on loopback: a one-line associate and one with disable_password
(candidate config, sshd -T). Then the cost of signature verification per
task (bench-verify). Figures, not assertions.

Usage: bench_check.py AGENT VERIFY [RUNS]"""

import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, reset_home  # noqa: E402


def once(box, agent, cmd, task):
    t0 = time.perf_counter()
    p = subprocess.run([agent, "-c", box.agent_config, cmd], input=json.dumps(task).encode(), capture_output=True)
    wall = (time.perf_counter() - t0) * 1000
    res = json.loads(p.stdout)
    if res["status"] != "SUCCESS":
        raise SystemExit(f"{cmd} failed: {res}")
    return wall, res["duration_ms"]


def main():
    agent, verify = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    sb.ensure_user()
    box = sb.Sandbox("bench-check")
    try:
        for name, flip in (("one-line associate", False), ("associate, password on/off", True)):
            reset_home(box, USER_LINE)
            samples = {"check": [], "apply": []}
            for i in range(runs):
                key = "a" if i % 2 else "b"
                for cmd in ("check", "apply"):
                    server = {"disable_password": i % 2 == 0} if flip else {}
                    task = box.task(keypair_name="kp1", public_key=box.keys.pub(key), server=server)
                    samples[cmd].append(once(box, agent, cmd, task))
            for cmd, s in samples.items():
                print(f"{name:<30} {cmd:<6} wall p50 {statistics.median(w for w, _ in s):6.1f} ms   "
                      f"agent p50 {statistics.median(d for _, d in s):6.1f} ms")
    finally:
        box.close()
    sys.stdout.flush()
    subprocess.run([verify], check=True)


if __name__ == "__main__":
    main()
