#!/usr/bin/env python3
"""A fleet of `kps-agent run` against one control-plane emulator, on loopback.

    fleet.py AGENT EMULATOR [--agents N] [--poll-wait S] [--steady S]
             [--outage S] [--recovery S] [--check]

N agents (default 1000), each with its own state directory and server id,
poll the emulator through a counting proxy (Python asyncio, in this
process) that sees every request and can take the control plane away. The
agents' default user does not exist, so each task fails as USER_NOT_FOUND
in a few ms without sshd and without touching a file outside the bench's
directory (/run/kps-fleet.*, removed at the end).

Phases, and what is reported:
1. start: all agents at once; wait for every first poll.
2. steady: a window of --steady s (default 60): requests per second, mean
   and worst second, and requests per idle agent per minute.
3. tasks: one AssociateKeypair per agent, called back to back: call ->
   result (the result's 2xx at the proxy) p50 and p99.
4. outage: result posts are refused with 503 while two more tasks per agent
   are handed out (so each agent holds two results in its outbox), then
   the control plane is gone (connections refused) for --outage s.
5. recovery: --recovery s (default 150): requests per second, mean and worst
   second, polls alone; every queued result posted once, oldest first.
Lost (a task with no stored result) and duplicated (stored more than once,
by the emulator's own count) over all tasks; the emulator's RSS, one
agent's RSS and the median agent's. Stops by itself; touches only
loopback. --check (the small run in the test suite) asserts zero lost,
zero duplicated, oldest first, and one backpressure log line per agent,
never a timing."""

import argparse
import asyncio
import http.client
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

API_TOKEN = "fleet-api-token"
AGENT_TOKEN = "fleet-agent-token"
PROJECT = "0605767c1a80d5762f1ec00b4e2ad5f1"
NOUSER = "kps-fleet-nobody"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_limits(n):
    """Each agent holds a few fds; the proxy two per request in flight."""
    want = max(4096, 8 * n + 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        hard = want	# root may raise the hard limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and soft < 4 * n + 1024:
        resource.setrlimit(resource.RLIMIT_NPROC, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


# -- the counting proxy --------------------------------------------------------

class Proxy:
    """Forwards each connection to the emulator and records every request:
    (arrival time, method, path, status, answer time). mode: "up",
    "results-503" (result posts refused here), "down" (not listening)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.events = []
        self.lock = threading.Lock()
        self.mode = "up"
        self.port = 0
        self.server = None
        self.writers = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._listen())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _listen(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True,
                                                 backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _down(self):
        self.server.close()
        await self.server.wait_closed()
        for w in list(self.writers):
            w.transport.abort()

    def set_mode(self, mode):
        if mode == "down" and self.mode != "down":
            # Closed first, then marked: a post arriving meanwhile is still
            # refused, never stored upstream with its answer cut off.
            self.call(self._down())
            self.mode = mode
        elif mode != "down" and self.mode == "down":
            self.mode = mode
            self.call(self._listen())
        else:
            self.mode = mode

    def record(self, ev):
        with self.lock:
            self.events.append(ev)
        return ev

    async def _handle(self, reader, writer):
        self.writers.add(writer)
        upw = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path = head.split(b"\r\n", 1)[0].decode().split(" ")[:2]
            ev = self.record([time.time(), method, path, None, None])
            if self.mode == "results-503" and method == "POST":
                n = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if n:
                    await reader.readexactly(int(n.group(1)))
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                ev[3], ev[4] = 503, time.time()
                return
            upr, upw = await asyncio.open_connection("127.0.0.1", self.upstream)
            self.writers.add(upw)
            upw.write(head)

            async def client_to_upstream():
                while data := await reader.read(65536):
                    upw.write(data)
                    await upw.drain()

            pump = asyncio.ensure_future(client_to_upstream())
            first = True
            while data := await upr.read(65536):
                if first:
                    ev[3], ev[4] = int(data.split(b" ", 2)[1]), time.time()
                    first = False
                writer.write(data)
                await writer.drain()
            pump.cancel()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, IndexError):
            pass
        finally:
            for w in (writer, upw):
                if w:
                    self.writers.discard(w)
                    w.transport.abort()

    def snapshot(self):
        with self.lock:
            return list(self.events)


# -- the emulator and the agents --------------------------------------------------

class Emulator:
    def __init__(self, exe, workdir):
        self.log = open(os.path.join(workdir, "emulator.log"), "wb")
        # Redelivery of a task handed out without a result is the control
        # plane's policy; past the run, so each result counts once.
        self.proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--api-token", API_TOKEN, "--agent-token",
                                      AGENT_TOKEN, "--redeliver-ms", "3600000"],
                                     stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        if not m:
            raise RuntimeError(f"emulator: {line!r}")
        self.port = int(m.group(1))
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-Auth-Token": API_TOKEN, "Content-Type": "application/json"}
        for attempt in (0, 1):
            try:
                self.conn.request(method, f"/v3/{PROJECT}{path}", data, headers)
                r = self.conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt:
                    raise

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def write_agent(root, i, proxy_port, poll_wait):
    d = os.path.join(root, f"a{i:04d}")
    os.makedirs(d, mode=0o700)
    conf = os.path.join(d, "kps-agent.conf")
    with open(conf, "w") as f:
        f.write(f"[agent]\nstate_dir = {d}/state\nuser = {NOUSER}\n"
                f"[control_plane]\nurl = http://127.0.0.1:{proxy_port}/\nserver_id = fleet-{i:04d}\n"
                f"token_file = {root}/token\npoll_wait = {poll_wait}\n"
                "[channel]\nsocket =\n")
    return d, conf


def start_agents(agent, root, n, proxy_port, poll_wait):
    procs = []
    for i in range(n):
        d, conf = write_agent(root, i, proxy_port, poll_wait)
        with open(os.path.join(d, "agent.log"), "wb") as out:
            procs.append(subprocess.Popen([agent, "-c", conf, "run"], stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=out, start_new_session=True))
    return procs


def stop_agents(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 30
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- measuring ----------------------------------------------------------------------

def per_second(events, t0, t1, only=None):
    buckets = [0] * max(1, int(t1 - t0))
    for t, method, path, *_ in events:
        if t0 <= t < t0 + len(buckets) and (only is None or only(method, path)):
            buckets[int(t - t0)] += 1
    return buckets


def is_poll(method, path):
    return method == "GET"


def wait_until(cond, timeout, what, step=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def stored_posts(events):
    """task id -> times of its result posts the emulator took (2xx)."""
    out = {}
    for t, method, path, status, t_ans in events:
        m = re.fullmatch(r"/v1/servers/[^/]+/tasks/([^/]+)/result", path)
        if method == "POST" and m and status and 200 <= status < 300:
            out.setdefault(m.group(1), []).append(t_ans)
    return out


def outbox_size(root, i):
    try:
        return len(os.listdir(os.path.join(root, f"a{i:04d}", "state", "outbox")))
    except OSError:
        return 0


def issue(emu, n, tag):
    """One AssociateKeypair per agent, back to back: {task_id: (server, call time)}."""
    tasks = {}
    for i in range(n):
        t = time.time()
        st, body = emu.api("POST", "/keypairs/associate", {"keypair_name": "fleet-kp",
                                                             "server": {"id": f"fleet-{i:04d}"}})
        if st != 202:
            raise RuntimeError(f"associate {tag} {i}: {st} {body}")
        tasks[body["task_id"]] = (f"fleet-{i:04d}", t)
    return tasks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("emulator")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--poll-wait", type=int, default=60)
    ap.add_argument("--steady", type=int, default=60)
    ap.add_argument("--outage", type=int, default=60)
    ap.add_argument("--recovery", type=int, default=150)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    n = a.agents
    raise_limits(n)
    root = tempfile.mkdtemp(prefix="kps-fleet.", dir="/run")
    os.chmod(root, 0o700)
    with open(os.path.join(root, "token"), "w") as f:
        f.write(AGENT_TOKEN + "\n")
    os.chmod(os.path.join(root, "token"), 0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f", os.path.join(root, "key")],
                   check=True)
    emu = Emulator(os.path.abspath(a.emulator), root)
    proxy = Proxy(emu.port)
    procs = []
    failures = []
    try:
        st, body = emu.api("POST", "/keypairs", {"keypair": {"name": "fleet-kp", "public_key":
                                                             open(os.path.join(root, "key.pub")).read().strip()}})
        if st != 200:
            raise RuntimeError(f"import: {st} {body}")
        log(f"starting {n} agents (poll_wait {a.poll_wait} s, default jitter) against the emulator via "
            f"127.0.0.1:{proxy.port}")
        t_start = time.time()
        procs = start_agents(os.path.abspath(a.agent), root, n, proxy.port, a.poll_wait)
        servers = {f"fleet-{i:04d}" for i in range(n)}

        def polled():
            return {p.split("/")[3] for _, m, p, *_ in proxy.snapshot() if m == "GET"}

        wait_until(lambda: polled() >= servers, 120, "every agent's first poll")
        dead = [i for i, p in enumerate(procs) if p.poll() is not None]
        if dead:
            raise RuntimeError(f"agents exited: {dead[:10]}")
        log(f"all {n} agents polled {time.time() - t_start:.1f} s after the first start")

        # steady
        time.sleep(min(10, a.steady / 6))
        s0 = time.time()
        time.sleep(a.steady)
        steady = per_second(proxy.snapshot(), s0, s0 + a.steady)
        steady_mean = sum(steady) / len(steady)
        per_agent_min = sum(steady) / n / (a.steady / 60)
        log(f"steady {a.steady} s: {steady_mean:.1f} req/s mean, worst second {max(steady)}; "
            f"{per_agent_min:.2f} requests per idle agent per minute")

        # tasks to every agent at once
        log(f"tasks: one AssociateKeypair per agent, {n} calls back to back")
        first = issue(emu, n, "round 1")
        calls_took = max(t for _, t in first.values()) - min(t for _, t in first.values())
        wait_until(lambda: set(stored_posts(proxy.snapshot())) >= set(first), 300, "every round-1 result")
        posts = stored_posts(proxy.snapshot())
        lat = [min(posts[i]) - t for i, (_, t) in first.items()]
        log(f"tasks: {n} calls in {calls_took:.2f} s; call -> result p50 {pct(lat, 50) * 1000:.0f} ms, "
            f"p99 {pct(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")

        # outage with results queued in every outbox
        proxy.set_mode("results-503")
        rounds = []
        for r in (2, 3):
            tasks = issue(emu, n, f"round {r}")
            rounds.append(tasks)
            wait_until(lambda: all(outbox_size(root, i) == r - 1 for i in range(n)), 300,
                       f"every round-{r} result in its agent's outbox")
        log(f"outage: results refused (503) while two more tasks per agent ran; now {a.outage} s without a "
            "control plane")
        proxy.set_mode("down")
        time.sleep(a.outage)
        proxy.set_mode("up")
        r0 = time.time()
        log(f"recovery: {a.recovery} s")
        queued = set(rounds[0]) | set(rounds[1])
        if a.check:	# no timing asserted: as long as delivery takes, then a while for duplicates
            wait_until(lambda: set(stored_posts(proxy.snapshot())) >= queued, 300, "every queued result")
            time.sleep(5)
            a.recovery = max(1, int(time.time() - r0))
        else:
            time.sleep(a.recovery)
        log("recovery, requests per second: " + " ".join(map(str, per_second(proxy.snapshot(), r0, r0 + a.recovery))))
        events = proxy.snapshot()
        rec = per_second(events, r0, r0 + a.recovery)
        rec_polls = per_second(events, r0, r0 + a.recovery, is_poll)
        posts = stored_posts(events)
        done = queued & set(posts)
        # Past the window, delivery may still go on (the backoff's cap is
        # two poll cycles): wait for it before counting what was lost.
        try:
            wait_until(lambda: set(stored_posts(proxy.snapshot())) >= queued, 300, "the last queued results")
        except RuntimeError:
            pass
        late = stored_posts(proxy.snapshot())
        t_all = max(min(late[i]) for i in queued & set(late)) - r0 if queued & set(late) else float("nan")
        log(f"recovery: worst second {max(rec)} requests ({max(rec_polls)} polls), mean {sum(rec) / len(rec):.1f} "
            f"req/s; {len(done)}/{len(queued)} queued results delivered in the window, all "
            f"{len(queued & set(late))} by {t_all:.1f} s after recovery")

        # exactly once, oldest first, from the emulator's own count too
        all_tasks = {**first, **rounds[0], **rounds[1]}
        events = proxy.snapshot()
        posts = stored_posts(events)
        lost = [i for i in all_tasks if i not in posts]
        dup = [i for i in all_tasks if len(posts.get(i, [])) > 1]
        emu_dup, emu_lost = 0, 0
        for i in all_tasks:
            st, body = emu.api("GET", f"/tasks/{i}")
            emu_dup += st == 200 and body.get("result_posts", 0) > 1
            emu_lost += st != 200 or not body.get("task_status", "").startswith(("SUCCESS_", "FAILED_"))
        order = [s for (i2, (s, _)), (i3, _) in zip(rounds[0].items(), rounds[1].items())
                 if i2 in posts and i3 in posts and min(posts[i2]) > min(posts[i3])]
        log(f"results: {len(all_tasks)} tasks, {len(lost)} lost, {len(dup)} duplicated (emulator: {emu_lost} "
            f"without a result, {emu_dup} stored twice); {len(order)} agents posted out of order")
        for i in dup[:3]:
            rnd = 1 if i in first else 2 if i in rounds[0] else 3
            seen = [(round(t - r0, 3), st, round((ta or t) - t, 3)) for t, m, p, st, ta in events
                    if m == "POST" and f"/tasks/{i}/" in p]
            log(f"  duplicated: task {i} (round {rnd}, {all_tasks[i][0]}): posts at (s from recovery, status, "
                f"took) {seen}")
            with open(os.path.join(root, "a" + all_tasks[i][0].split("-")[1], "agent.log")) as f:
                for line in f:
                    if i in line or "results" in line:
                        log("    " + line.rstrip())
        busy = sum(open(os.path.join(root, f"a{i:04d}", "agent.log")).read().count(
            "busy (HTTP 503) while posting results") for i in range(n))
        log(f"backpressure: {busy} 'busy' log lines over {n} agents")
        agent_rss = [rss_kib(p.pid) for p in procs]
        log(f"memory: emulator {rss_kib(emu.proc.pid) / 1024:.1f} MiB RSS; agent 0 {agent_rss[0] / 1024:.1f} MiB, "
            f"median agent {statistics.median(agent_rss) / 1024:.1f} MiB RSS")
        if a.check:
            for cond, what in ((not lost and not emu_lost, f"lost results: {lost[:5]} (emulator {emu_lost})"),
                               (not dup and not emu_dup, f"duplicated results: {dup[:5]} (emulator {emu_dup})"),
                               (not order, f"newer result first on {order[:5]}"),
                               (busy == n, f"{busy} backpressure lines for {n} agents: wanted one each")):
                if not cond:
                    failures.append(what)
    finally:
        stop_agents(procs)
        emu.stop()
        if failures:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for f in failures:
        print(f"FAIL {f}")
    print("PASS fleet" if not failures else "FAIL fleet", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
