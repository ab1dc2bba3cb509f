#!/usr/bin/env python3
"""The control-plane client of `kps-agent run` against a scripted control
plane (Python http.server, plain or TLS): long poll, bearer token, Host
header, path prefix, result posting with backoff, 404, the outbox across a
restart, certificate and host-name verification, and no wake-ups while idle.
`cp_check.py --list` names the cases; `cp_check.py AGENT NAME` runs one.
Needs root (a sandbox sshd and a test user), openssl and strace."""

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, Failure, check, reset_home, run_main, slow_reload  # noqa: E402

CASES = {}
TOKEN = "cp-check-token-0123456789"
PREFIX = "/cp/base"


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise Failure(f"timed out waiting for {what}")


class ControlPlane:
    """Serves {PREFIX}/v1/servers/ID/tasks (long poll) and .../result, and
    records every request it saw."""

    def __init__(self, server_id, tls=None, host="127.0.0.1"):
        self.server_id = server_id
        self.token = TOKEN
        self.cond = threading.Condition()
        self.tasks = []
        self.requests = []
        self.results = {}
        self.get_mode = "ok"		# ok | 500 | badjson | instant (204 without waiting)
        self.post_fail = 0		# answer 503 to this many posts
        self.get_busy = []		# answer polls with these codes (429/503) first
        self.retry_after = None		# the Retry-After header of those answers
        self.post_mode = "ok"		# ok | 404
        self.close_after_tasks = False	# stop listening once tasks went out
        cp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, code, body=None, headers=()):
                data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
                self.send_response(code)
                for h in headers:
                    self.send_header(*h)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass	# an agent that went away mid long poll

            def record(self, body=None):
                with cp.cond:
                    cp.requests.append({"method": self.command, "path": self.path, "t": time.time(),
                                        "headers": dict(self.headers), "body": body})

            def authorized(self):
                if self.headers.get("Authorization") != "Bearer " + cp.token:
                    self.answer(401, {"error": "bad token"})
                    return False
                return True

            def do_GET(self):
                self.record()
                m = re.fullmatch(re.escape(PREFIX) + r"/v1/servers/([^/]+)/tasks\?wait=(\d+)", self.path)
                if not m or urllib.parse.unquote(m.group(1)) != cp.server_id:
                    return self.answer(404, {"error": "no such path"})
                if not self.authorized():
                    return
                with cp.cond:
                    busy = cp.get_busy.pop(0) if cp.get_busy else None
                if busy:
                    value = cp.retry_after() if callable(cp.retry_after) else cp.retry_after
                    ra = [("Retry-After", value)] if value else []
                    return self.answer(busy, {"error": "busy"}, ra)
                if cp.get_mode == "500":
                    return self.answer(500, {"error": "down"})
                if cp.get_mode == "badjson":
                    return self.answer(200, b"this is not json")
                if cp.get_mode == "instant":
                    return self.answer(204)
                with cp.cond:
                    cp.cond.wait_for(lambda: cp.tasks, timeout=int(m.group(2)))
                    tasks, cp.tasks = cp.tasks, []
                if tasks:
                    self.answer(200, {"tasks": tasks})
                    if cp.close_after_tasks:
                        threading.Thread(target=cp.close, daemon=True).start()
                    return
                self.answer(204)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                self.record(body)
                m = re.fullmatch(re.escape(PREFIX) + r"/v1/servers/([^/]+)/tasks/([^/]+)/result", self.path)
                # A server decodes each segment; "." or ".." as such would
                # have been a step up the path.
                if m and m.group(2) in (".", ".."):
                    return self.answer(400, {"error": "dot segment"})
                if not m or urllib.parse.unquote(m.group(1)) != cp.server_id:
                    return self.answer(404, {"error": "no such path"})
                if not self.authorized():
                    return
                with cp.cond:
                    if cp.post_fail > 0:
                        cp.post_fail -= 1
                        return self.answer(503, {"error": "busy"})
                    if cp.post_mode == "404":
                        return self.answer(404, {"error": "unknown task"})
                    cp.results.setdefault(urllib.parse.unquote(m.group(2)), []).append(json.loads(body))
                    cp.cond.notify_all()
                self.answer(200, {})

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host="127.0.0.1", scheme="http"):
        return f"{scheme}://{host}:{self.port}{PREFIX}/"

    def push(self, *tasks):
        with self.cond:
            self.tasks.extend(tasks)
            self.cond.notify_all()

    def seen(self, method):
        with self.cond:
            return [r for r in self.requests if r["method"] == method]

    def result(self, task_id, timeout=60):
        return wait_for(lambda: self.results.get(task_id), timeout, f"the result of {task_id}")[0]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Agent:
    def __init__(self, box, exe, url, ca_file=None, poll_wait=2, poll_jitter=None):
        self.box = box
        self.token_file = os.path.join(box.dir, "token")
        with open(self.token_file, "w") as f:
            f.write("  " + TOKEN + "\n\n")
        os.chmod(self.token_file, 0o600)
        conf = open(box.agent_config).read()
        cp = f"[control_plane]\nurl = {url}\ntoken_file = {self.token_file}\npoll_wait = {poll_wait}\n"
        if poll_jitter is not None:
            cp += f"poll_jitter = {poll_jitter}\n"
        if ca_file:
            cp += f"ca_file = {ca_file}\n"
        self.config = os.path.join(box.dir, "cp.conf")
        with open(self.config, "w") as f:
            f.write(conf.replace("[control_plane]\n", cp))
        self.exe = exe
        self.log = os.path.join(box.dir, "agent.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.exe, "-c", self.config, "run"], stdout=self.logf,
                                     stderr=self.logf, start_new_session=True)
        wait_for(lambda: "control plane: polling" in self.text() or self.proc.poll() is not None, 10,
                 "the agent to start")
        check(self.proc.poll() is None, "agent exited: " + self.text()[-2000:])

    def text(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        code = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if os.environ.get("CP_CHECK_LOG"):
            sys.stdout.write(self.text())
        return code

    def no_secret_logged(self):
        check(TOKEN not in self.text(), "the bearer token reached the log")


def associate(box, key="a"):
    return box.task(keypair_name="kp-" + key, public_key=box.keys.pub(key))


def with_agent(box, agent_exe, cp, fn, **kw):
    agent = Agent(box, agent_exe, cp.url(**{k: kw.pop(k) for k in ("host", "scheme") if k in kw}), **kw)
    agent.start()
    try:
        fn(agent)
        agent.no_secret_logged()
    finally:
        agent.stop()
        cp.close()


@case
def poll_apply_post(box, agent_exe):
    """A task arrives by long poll, is applied, and its result is posted
    with the token, the Host header and the URL's path prefix."""
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)

    def run(agent):
        task = associate(box)
        cp.push(42, task)
        res = cp.result(task["task_id"])
        check(res["status"] == "SUCCESS" and res["server_id"] == box.server_id, f"{res}")
        check(box.login_key("a"), "the new key does not log in")
        gets, posts = cp.seen("GET"), cp.seen("POST")
        for r in gets + posts:
            check(r["headers"].get("Authorization") == "Bearer " + TOKEN, f"token: {r['headers']}")
            check(r["headers"].get("Host") == f"127.0.0.1:{cp.port}", f"Host: {r['headers']}")
        # The first poll picks up what is queued without waiting; the long
        # poll follows at once.
        check(gets[0]["path"] == f"{PREFIX}/v1/servers/{box.server_id}/tasks?wait=0", gets[0]["path"])
        check(gets[1]["path"] == f"{PREFIX}/v1/servers/{box.server_id}/tasks?wait=2", gets[1]["path"])
        check(posts[0]["path"] == f"{PREFIX}/v1/servers/{box.server_id}/tasks/{task['task_id']}/result",
              posts[0]["path"])
        check(posts[0]["headers"].get("Content-Type") == "application/json", f"{posts[0]['headers']}")
        check(len(posts) == 1, f"{len(posts)} posts")
        check("element 1 of \"tasks\" is not an object" in agent.text(), "non-object task not reported")
        check("result of task " + task["task_id"] + " posted" in agent.text(), "no log line for the post")
        wait_for(lambda: not os.listdir(os.path.join(box.state, "outbox")), 5, "an empty outbox")
        # Back to the long poll afterwards, without a pause.
        n = len(cp.seen("GET"))
        wait_for(lambda: len(cp.seen("GET")) > n, 5, "the next poll")

    with_agent(box, agent_exe, cp, run)


@case
def post_retried_with_backoff(box, agent_exe):
    """503 three times: the result is posted again with growing, jittered
    gaps (never above base * 2^n + slack) and stored once."""
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)
    cp.post_fail = 3

    def run(agent):
        task = associate(box)
        cp.push(task)
        cp.result(task["task_id"], timeout=30)
        posts = [r["t"] for r in cp.seen("POST")]
        check(len(posts) == 4, f"{len(posts)} posts")
        for i, (a, b) in enumerate(zip(posts, posts[1:])):
            check(b - a <= 2 ** i + 0.5, f"gap {i + 1} was {b - a:.2f}s")
        check(len(cp.results[task["task_id"]]) == 1, "stored more than once")
        check(agent.text().count("busy (HTTP 503) while posting results") == 1, "the 503s were not logged once")
        check(agent.text().count("no longer busy") == 1, "the end of the 503s was not logged once")
        wait_for(lambda: not os.listdir(os.path.join(box.state, "outbox")), 5, "an empty outbox")

    with_agent(box, agent_exe, cp, run)


@case
def post_404_dropped(box, agent_exe):
    """A control plane that does not know the task: the result leaves the
    outbox instead of being retried for ever."""
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)
    cp.post_mode = "404"

    def run(agent):
        task = associate(box)
        cp.push(task)
        wait_for(lambda: cp.seen("POST"), 30, "a post")
        wait_for(lambda: not os.listdir(os.path.join(box.state, "outbox")), 5, "an empty outbox")
        time.sleep(2)
        check(len(cp.seen("POST")) == 1, f"{len(cp.seen('POST'))} posts")
        check("does not know task " + task["task_id"] in agent.text(), "the drop was not logged")

    with_agent(box, agent_exe, cp, run)


@case
def poll_backoff(box, agent_exe):
    """500s and then a body that is not JSON: the poll backs off (no tight
    loop), logs once per kind of error, and delivers once the control plane
    is back."""
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)
    cp.get_mode = "500"

    def run(agent):
        time.sleep(6)
        n = len(cp.seen("GET"))
        check(2 <= n <= 12, f"{n} polls in 6 s against a failing control plane")
        check(agent.text().count("polling for tasks failed: HTTP 500") == 1, "the 500 was not logged once")
        cp.get_mode = "badjson"
        wait_for(lambda: "is not {\"tasks\"" in agent.text(), 70, "the bad JSON to be noticed")
        cp.get_mode = "ok"
        task = associate(box)
        cp.push(task)
        res = cp.result(task["task_id"], timeout=90)
        check(res["status"] == "SUCCESS", f"{res}")
        check("polling for tasks works again" in agent.text(), "the recovery was not logged")

    with_agent(box, agent_exe, cp, run)


@case
def outbox_survives_restart(box, agent_exe):
    """Results the control plane refused stay on disk across a restart and
    are posted by the next agent."""
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)
    cp.post_fail = 10 ** 6
    outbox = os.path.join(box.state, "outbox")
    task = associate(box)
    agent = Agent(box, agent_exe, cp.url())
    agent.start()
    try:
        cp.push(task)
        wait_for(lambda: cp.seen("POST"), 30, "a post")
    finally:
        agent.stop()
    check(os.listdir(outbox) == [task["task_id"] + ".json"], f"outbox: {os.listdir(outbox)}")
    cp.post_fail = 0
    # A wrong URL answers 404 to everything: that is no reason to drop results.
    agent = Agent(box, agent_exe, cp.url().replace(PREFIX, "/wrong"))
    agent.start()
    try:
        wait_for(lambda: len(cp.seen("POST")) >= 3, 10, "posts to the wrong URL")
    finally:
        agent.stop()
    check(os.listdir(outbox) == [task["task_id"] + ".json"], f"outbox after a wrong URL: {os.listdir(outbox)}")
    agent = Agent(box, agent_exe, cp.url())
    agent.start()
    try:
        res = cp.result(task["task_id"], timeout=10)
        check(res["status"] == "SUCCESS", f"{res}")
        wait_for(lambda: not os.listdir(outbox), 5, "an empty outbox")
        agent.no_secret_logged()
    finally:
        agent.stop()
        cp.close()


@case
def sighup_rereads_token(box, agent_exe):
    reset_home(box, USER_LINE)
    cp = ControlPlane(box.server_id)

    def run(agent):
        wait_for(lambda: cp.seen("GET"), 10, "a poll")
        cp.token = "a-new-token"
        with open(agent.token_file, "w") as f:
            f.write("a-new-token\n")
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(r["headers"].get("Authorization") == "Bearer a-new-token" for r in cp.seen("GET")),
                 10, "a poll with the new token")
        # The old poller's request may still wait in the server: a task
        # given to it would be lost (a real control plane delivers it again).
        time.sleep(2.5)
        task = associate(box)
        cp.push(task)
        res = cp.result(task["task_id"], timeout=30)
        check(res["status"] == "SUCCESS", f"{res}")
        check("a-new-token" not in agent.text(), "the new token reached the log")

    with_agent(box, agent_exe, cp, run)


@case
def sighup_mid_task(box, agent_exe):
    """SIGHUP while a task runs: the poller that took the task is gone when
    it finishes, and the new one still posts its result."""
    reset_home(box, USER_LINE)
    slow_reload(box, 2)
    cp = ControlPlane(box.server_id)

    def run(agent):
        task = associate(box)
        task["server"]["disable_password"] = True	# an sshd reload: the slow part
        cp.push(task)
        wait_for(lambda: "1 task received" in agent.text(), 10, "the task")
        time.sleep(0.5)
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in agent.text(), 10, "the reload")
        check(not cp.results, "the task finished before the SIGHUP: nothing tested")
        res = cp.result(task["task_id"], timeout=30)
        check(res["status"] == "SUCCESS", f"{res}")

    with_agent(box, agent_exe, cp, run)


def poll_starts(cp, long_only=True):
    return [g["t"] for g in cp.seen("GET") if not (long_only and g["path"].endswith("?wait=0"))]


@case
def instant_empty_answers_spaced(box, agent_exe):
    """A server that answers 204 at once (no long poll): a poll starts
    poll_wait after the last one did, never sooner, plus the jitter."""
    cp = ControlPlane(box.server_id)
    cp.get_mode = "instant"

    def run(agent):
        wait_for(lambda: len(poll_starts(cp)) >= 4, 20, "four long polls")
        t = poll_starts(cp)
        gaps = [b - a for a, b in zip(t, t[1:])]
        check(all(1.95 <= g <= 2.2 + 0.5 for g in gaps), f"gaps {gaps}: wanted poll_wait 2 s plus up to 10 %")

    with_agent(box, agent_exe, cp, run)


@case
def poll_jitter_spreads(box, agent_exe):
    """poll_jitter = 100 with poll_wait = 1: each cycle lasts 1 to 2 s, drawn
    anew each time (agents started together drift apart), and the first
    poll after start waits up to 1 s too."""
    cp = ControlPlane(box.server_id)

    def run(agent):
        wait_for(lambda: len(poll_starts(cp)) >= 8, 30, "eight long polls")
        t = poll_starts(cp)
        gaps = [b - a for a, b in zip(t, t[1:])]
        check(all(0.95 <= g <= 2.5 for g in gaps), f"gaps {gaps}: wanted 1 to 2 s")
        check(max(gaps) - min(gaps) > 0.1, f"gaps {gaps}: no jitter")
        m = re.search(r"jitter 100%; first poll in (\d+\.\d+) s", agent.text())
        check(m and float(m.group(1)) <= 1.0, "the first poll's jitter was not logged or past 1 s")

    with_agent(box, agent_exe, cp, run, poll_wait=1, poll_jitter=100)


@case
def backpressure_retry_after(box, agent_exe):
    """429 and 503 with Retry-After: 2: no poll before the server said, one
    log line when the backpressure starts and one when it ends."""
    cp = ControlPlane(box.server_id)
    cp.get_busy = [503, 429, 503, 503]
    cp.retry_after = "2"

    def run(agent):
        wait_for(lambda: len(cp.seen("GET")) >= 6, 30, "six polls")
        t = [g["t"] for g in cp.seen("GET")]
        gaps = [b - a for a, b in zip(t[:4], t[1:5])]
        check(all(g >= 1.95 for g in gaps), f"gaps {gaps}: Retry-After 2 s not obeyed")
        check(all(g <= 2.2 + 0.5 for g in gaps), f"gaps {gaps}: wanted 2 s plus up to 10 %")
        text = agent.text()
        check(text.count("busy (HTTP") == 1, "backpressure not logged exactly once: " + text[-1500:])
        check("as its Retry-After asks" in text, "the Retry-After was not named")
        check(text.count("no longer busy") == 1, "the end of the backpressure not logged once")

    with_agent(box, agent_exe, cp, run)


@case
def retry_after_http_date(box, agent_exe):
    """Retry-After as an HTTP date 3 s ahead: no poll before it."""
    from email.utils import formatdate
    cp = ControlPlane(box.server_id)
    cp.get_busy = [503, 503]
    cp.retry_after = lambda: formatdate(time.time() + 3, usegmt=True)

    def run(agent):
        wait_for(lambda: len(cp.seen("GET")) >= 3, 30, "three polls")
        t = [g["t"] for g in cp.seen("GET")]
        gaps = [b - a for a, b in zip(t[:2], t[1:3])]
        # the date has whole seconds: 2 to 3 s ahead when it is read
        check(all(g >= 1.95 for g in gaps), f"gaps {gaps}: the Retry-After date was not obeyed")

    with_agent(box, agent_exe, cp, run)


def trickle_server():
    """Accepts connections and answers each one byte every 0.3 s, for ever:
    no inactivity timeout fires. Returns (port, the connections' lifetimes)."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    lives = []

    def serve(conn):
        start = time.time()
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Slow: " + b"a" * 60000
        try:
            conn.recv(65536)
            for i in range(len(answer)):
                conn.sendall(answer[i:i + 1])
                time.sleep(0.3)
        except OSError:
            pass
        lives.append(time.time() - start)
        conn.close()

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv, lives


@case
def trickle_deadline(box, agent_exe):
    """A control plane that trickles its answer a byte at a time: the agent
    gives the request up at its deadline (the first poll: wait 0 plus 15 s),
    not when the peer pauses, and tries again."""
    srv, lives = trickle_server()
    agent = Agent(box, agent_exe, f"http://127.0.0.1:{srv.getsockname()[1]}{PREFIX}/")
    agent.start()
    try:
        wait_for(lambda: lives, 40, "the agent to give up on a trickled answer")
        check(lives[0] <= 15 + 3, f"the first poll lasted {lives[0]:.1f} s")
        check("no complete answer within 15 s" in agent.text(), agent.text()[-1500:])
    finally:
        agent.stop()
        srv.close()


def ids_posted_once(box, agent_exe, ids, encoded):
    cp = ControlPlane(box.server_id)

    def run(agent):
        cp.push(*[box.task("disassociate", task_id=i, server={"id": "another-server"}) for i in ids])
        wait_for(lambda: all(i in cp.results for i in ids), 30,
                 f"results for {ids}; got {sorted(cp.results)}")
        time.sleep(1)
        for i in ids:
            check(len(cp.results[i]) == 1, f"{i!r}: {len(cp.results[i])} results")
            check(cp.results[i][0]["error_code"] == "KPS.AGENT.WRONG_SERVER", f"{cp.results[i]}")
        paths = [r["path"] for r in cp.seen("POST")]
        for enc in encoded:
            check(any(p.endswith(f"/tasks/{enc}/result") for p in paths), f"no post to .../tasks/{enc}/result: {paths}")

    with_agent(box, agent_exe, cp, run)


@case
def task_ids_in_path(box, agent_exe):
    """Ids with dots inside or a leading dash: one result each, posted to
    the id's own path segment."""
    ids_posted_once(box, agent_exe, ["-x", "a..b", "-", "_.-", "x."], ["-x", "a..b", "-", "_.-", "x."])


@case
def dot_task_ids(box, agent_exe):
    """".", ".." and "...": one result each, "." and ".." percent-encoded so
    that no server or proxy takes them for a step up the path."""
    ids_posted_once(box, agent_exe, [".", "..", "...", ".x"], ["%2E", "%2E%2E", "...", ".x"])


@case
def outbox_oldest_first(box, agent_exe):
    """Results queued while the control plane refuses them are all posted
    once it takes them again: each once, oldest first."""
    cp = ControlPlane(box.server_id)
    cp.post_fail = 10 ** 6
    ids = [f"order-{i}" for i in range(6)]
    outbox = os.path.join(box.state, "outbox")

    def run(agent):
        cp.push(*[box.task("disassociate", task_id=i, server={"id": "another-server"}) for i in ids])
        wait_for(lambda: len(os.listdir(outbox)) == len(ids), 30, "every result in the outbox")
        cp.post_fail = 0
        wait_for(lambda: all(i in cp.results for i in ids), 90, "every result posted")
        time.sleep(1)
        posted = [urllib.parse.unquote(r["path"].split("/")[-2]) for r in cp.seen("POST")]
        stored = [i for i in posted if i in cp.results]
        check(all(len(cp.results[i]) == 1 for i in ids), f"posted more than once: {cp.results}")
        check(list(dict.fromkeys(stored)) == ids, f"order {list(dict.fromkeys(stored))}")
        check(not os.listdir(outbox), "results left in the outbox")

    with_agent(box, agent_exe, cp, run)


@case
def queue_full_backs_off(box, agent_exe):
    """More tasks in one answer than the daemon queues: the rest is left to
    the control plane, the poll backs off, and every queued task is
    answered."""
    cp = ControlPlane(box.server_id)

    def run(agent):
        tasks = [box.task("disassociate", task_id=f"q{i}", server={"id": "another-server"}) for i in range(1100)]
        cp.push(*tasks)
        wait_for(lambda: "the task queue is full" in agent.text(), 30, "a full queue")
        wait_for(lambda: len(cp.results) >= 1024, 240, "1024 results")
        check(all(r[0]["error_code"] == "KPS.AGENT.WRONG_SERVER" for r in cp.results.values()), "wrong codes")
        check(len(cp.results) < 1100, f"{len(cp.results)} results: the queue was not bounded")

    with_agent(box, agent_exe, cp, run)


@case
def idle_no_wakeups(box, agent_exe):
    """While the long poll waits, the loop sleeps: no timer of ours fires."""
    cp = ControlPlane(box.server_id)

    def run(agent):
        long_poll = lambda: [g for g in cp.seen("GET") if g["path"].endswith("?wait=30")]
        wait_for(long_poll, 10, "a long poll")
        time.sleep(0.5)
        p = subprocess.run(["timeout", "-s", "INT", "4", "strace", "-qq", "-e", "trace=epoll_wait",
                            "-p", str(agent.proc.pid)], capture_output=True, text=True)
        calls = [l for l in p.stderr.splitlines() if l.startswith("epoll_wait")]
        check(len(calls) <= 1, "the idle agent woke up: " + "\n".join(calls[:10]))
        check(len(long_poll()) == 1, f"{len(long_poll())} long polls while idle")
        check(len(cp.seen("GET")) == 2, f"{len(cp.seen('GET'))} polls while idle")

    with_agent(box, agent_exe, cp, run, poll_wait=30)


# TLS ---------------------------------------------------------------------

class Pki:
    """A CA and server certificates made with the openssl command."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cp-pki.")

    def ca(self, name):
        key, crt = (os.path.join(self.dir, name + x) for x in (".key", ".crt"))
        sb.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN={name}", "-keyout", key, "-out", crt,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        return key, crt

    def server(self, ca, name, san):
        key, csr, crt = (os.path.join(self.dir, name + x) for x in (".key", ".csr", ".crt"))
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        sb.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key,
                "-out", csr])
        sb.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
                "-days", "2", "-extfile", ext, "-out", crt])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        return ctx

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_case(box, agent_exe, san, host, trusted=True):
    reset_home(box, USER_LINE)
    pki = Pki()
    try:
        ca = pki.ca("cp-check-ca")
        other = pki.ca("cp-check-other-ca")
        cp = ControlPlane(box.server_id, tls=pki.server(ca, "cp-server", san), host="127.0.0.1")
        result = {}

        def run(agent):
            # A key no other test adds: the test user is shared.
            task = associate(box, "a" if trusted else "cp-refused")
            cp.push(task)
            if trusted:
                result["res"] = cp.result(task["task_id"], timeout=30)
                check(box.login_key("a"), "the new key does not log in")
                return
            wait_for(lambda: "certificate verification failed" in agent.text(), 10, "a verification error")
            time.sleep(3)
            check(not cp.requests, f"a request passed an unverified handshake: {cp.requests}")
            check(not box.login_key("cp-refused"), "a task from an unverified control plane was applied")
            check(re.search(r"certificate verification failed.*; next attempt in", agent.text()),
                  "no backoff after the refusal")
            result["log"] = agent.text()

        with_agent(box, agent_exe, cp, run, host=host, scheme="https",
                   ca_file=(ca if trusted else other)[1])
        return result
    finally:
        pki.close()


@case
def tls_ip(box, agent_exe):
    r = tls_case(box, agent_exe, "IP:127.0.0.1", "127.0.0.1")
    check(r["res"]["status"] == "SUCCESS", f"{r}")


@case
def tls_dns_name(box, agent_exe):
    r = tls_case(box, agent_exe, "DNS:localhost", "localhost")
    check(r["res"]["status"] == "SUCCESS", f"{r}")


@case
def tls_untrusted_ca(box, agent_exe):
    r = tls_case(box, agent_exe, "IP:127.0.0.1", "127.0.0.1", trusted=False)
    check("unable to get local issuer certificate" in r["log"], r["log"][-1000:])


def tls_mismatch(box, agent_exe, san, host, why):
    """A trusted CA, but the certificate names another host."""
    reset_home(box, USER_LINE)
    pki = Pki()
    try:
        ca = pki.ca("cp-check-ca")
        cp = ControlPlane(box.server_id, tls=pki.server(ca, "cp-server", san))

        def run(agent):
            cp.push(associate(box, "cp-refused"))
            wait_for(lambda: why in agent.text(), 10, f"'{why}' in the log")
            check(not cp.requests, "a request passed a handshake with the wrong name")
            check(not box.login_key("cp-refused"), "a task from the wrong host was applied")

        with_agent(box, agent_exe, cp, run, host=host, scheme="https", ca_file=ca[1])
    finally:
        pki.close()


@case
def tls_wrong_ip(box, agent_exe):
    tls_mismatch(box, agent_exe, "DNS:localhost,IP:10.9.9.9", "127.0.0.1", "IP address mismatch")


@case
def tls_wrong_name(box, agent_exe):
    tls_mismatch(box, agent_exe, "DNS:cp.example.org,IP:127.0.0.1", "localhost", "hostname mismatch")


def main():
    return run_main(CASES, lambda box: f"agent log: {os.path.join(box.dir, 'agent.log')}")


if __name__ == "__main__":
    sys.exit(main())
