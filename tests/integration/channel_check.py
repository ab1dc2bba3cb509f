#!/usr/bin/env python3
"""The local channel of `kps-agent run`, from outside: the unix socket (mode,
root-only peers, framing, order, bounds, several clients) and a virtio-like
port emulated by a pty behind a symlink (raw mode, reopen after the host
goes away), socket activation, and a clean SIGTERM. Runs against a real sshd
in a sandbox. `channel_check.py AGENT [CHECK...]`; prints PASS/FAIL per
check and exits non-zero when one failed."""

import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import threading
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sandbox as sb  # noqa: E402

NOBODY = 65534
CHANNEL_USER = "kpschannel"
RESULTS = []


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def header_int(path, name, fallback):
    """A constant from the agent's headers, so the test follows them."""
    try:
        with open(os.path.join(HERE, "..", "..", "agent", path)) as f:
            m = re.search(rf"#define {name} \(?(\d+)(?: \* (\d+))?\)?", f.read())
    except OSError:
        return fallback
    if not m:
        return fallback
    return int(m.group(1)) * (int(m.group(2)) if m.group(2) else 1)


TASK_MAX_BYTES = header_int("task.h", "TASK_MAX_BYTES", 64 * 1024)
QUEUE_MAX = header_int("daemon.h", "DAEMON_QUEUE_MAX", 1024)


def run_check(name, fn, *args):
    try:
        fn(*args)
    except Failure as e:
        RESULTS.append((name, False))
        print(f"FAIL {name}: {e}", flush=True)
        return
    except Exception as e:  # a crash of the check is a failure of it
        RESULTS.append((name, False))
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return
    RESULTS.append((name, True))
    print(f"PASS {name}", flush=True)


# --- talking to the channel ---------------------------------------------

class Lines:
    """Result lines from a socket or a pty master fd, with a deadline."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.eof = False

    def _read(self):
        data = self.fd.recv(65536) if isinstance(self.fd, socket.socket) else os.read(self.fd, 65536)
        if not data:
            self.eof = True
        self.buf += data

    def raw_until(self, n, timeout):
        """Bytes up to and including the n-th newline (or what came by the deadline)."""
        deadline = time.time() + timeout
        while self.buf.count(b"\n") < n and not self.eof:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                break
            try:
                self._read()
            except OSError:
                self.eof = True
        cut = 0
        for _ in range(min(n, self.buf.count(b"\n"))):
            cut = self.buf.index(b"\n", cut) + 1
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def get(self, n, timeout=120):
        raw = self.raw_until(n, timeout)
        lines = raw.decode(errors="replace").splitlines()
        check(len(lines) == n, f"wanted {n} result lines, got {len(lines)}: {lines[-3:]!r}, eof={self.eof}")
        return [json.loads(line) for line in lines]

    def nothing_more(self, timeout=0.5):
        extra = self.raw_until(1, timeout) + self.buf
        check(not extra, f"unexpected extra output {extra[:200]!r}")


def connect(path, timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def send_lines(sock, lines, end=b"\n"):
    sock.sendall(b"".join((l if isinstance(l, bytes) else json.dumps(l).encode()) + end for l in lines))


def expect_result(res, task=None, code=None, msg=None):
    want_id = task["task_id"] if task else ""
    check(res.get("task_id") == want_id, f"task_id {res.get('task_id')!r}, wanted {want_id!r} ({res})")
    if code is None:
        check(res.get("status") == "SUCCESS", f"wanted SUCCESS: {res}")
    else:
        check(res.get("status") == "FAILED" and res.get("error_code") == "KPS.AGENT." + code,
              f"wanted FAILED {code}: {res}")
    if msg:
        check(msg in res.get("error_msg", ""), f"error_msg {res.get('error_msg')!r} lacks {msg!r}")


# --- the agent -------------------------------------------------------------

class Agent:
    def __init__(self, argv, log, wait_for):
        self.log = log
        self.logf = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logf)
        deadline = time.time() + 15
        while time.time() < deadline and self.proc.poll() is None and not wait_for():
            time.sleep(0.02)
        if not wait_for():
            raise RuntimeError(f"agent did not come up (exit {self.proc.poll()}):\n{self.log_text()[-3000:]}")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.logf.close()

    def has_fd_to(self, path):
        """The port is held by the network side, a child of the monitor."""
        for pid in [self.proc.pid] + children(self.proc.pid):
            base = f"/proc/{pid}/fd"
            try:
                if any(os.readlink(os.path.join(base, n)) == path for n in os.listdir(base)):
                    return True
            except OSError:
                pass
        return False


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def write_channel_config(src, dst, socket_path, device):
    with open(src) as f:
        text = f.read()
    text = text.split("[channel]")[0]
    with open(dst, "w") as f:
        f.write(text + f"[channel]\nsocket = {socket_path}\ndevice = {device}\n")


def new_pty(raw):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    if raw:
        tty.setraw(master)
    # Only the agent holds the port side, so closing the master is a hangup for it.
    os.close(slave)
    return master, path


def point(link, target):
    tmp = link + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


# --- the checks --------------------------------------------------------------

def check_socket_mode(env):
    st = os.lstat(env.sock)
    check(stat.S_ISSOCK(st.st_mode), "not a socket")
    check(stat.S_IMODE(st.st_mode) == 0o600, f"mode {stat.S_IMODE(st.st_mode):o}, wanted 600")
    check(st.st_uid == 0, f"owned by uid {st.st_uid}")


def check_three_in_one_write(env):
    box = env.box
    t1 = box.task(keypair_name="kp1", public_key=box.keys.pub("a"))
    t3 = box.task("disassociate")
    with connect(env.sock) as s:
        send_lines(s, [t1, b"not json", t3])
        r = Lines(s)
        got = r.get(3)
        expect_result(got[0], t1)
        expect_result(got[1], None, "INVALID_TASK")
        expect_result(got[2], t3)
        r.nothing_more()
    check(not box.login_key("a"), "kp1 still logs in after the disassociate")


def check_crlf_and_blank_lines(env):
    t = env.box.task("disassociate")
    with connect(env.sock) as s:
        s.sendall(b"\r\n\n\r\n" + json.dumps(t).encode() + b"\r\n\n\n")
        r = Lines(s)
        expect_result(r.get(1)[0], t)
        r.nothing_more(1.0)


def check_concurrent_clients(env):
    box = env.box
    ta = box.task(keypair_name="kp2", public_key=box.keys.pub("b"))
    tb = box.task("disassociate")
    with connect(env.sock) as a, connect(env.sock) as b:
        send_lines(a, [ta])
        send_lines(b, [tb])
        rb, ra = Lines(b), Lines(a)
        expect_result(rb.get(1)[0], tb)
        expect_result(ra.get(1)[0], ta)
        ra.nothing_more()
        rb.nothing_more()


def check_overlong_line_in_order(env):
    before, after = env.box.task("disassociate"), env.box.task("disassociate")
    with connect(env.sock) as s:
        send_lines(s, [before, b"x" * (TASK_MAX_BYTES + 10), after])
        r = Lines(s)
        got = r.get(3)
        expect_result(got[0], before)
        expect_result(got[1], None, "INVALID_TASK", "longer than")
        expect_result(got[2], after)
        r.nothing_more()


def check_overlong_line_streamed(env):
    """The refusal comes before the line ends; the rest of it is dropped."""
    after = env.box.task("disassociate")
    with connect(env.sock) as s:
        s.sendall(b'{"task_id": "' + b"y" * (TASK_MAX_BYTES + 10))
        r = Lines(s)
        expect_result(r.get(1, timeout=10)[0], None, "INVALID_TASK", "longer than")
        s.sendall(b"z" * 50000 + b'"}\n')
        time.sleep(0.3)
        send_lines(s, [after])
        expect_result(r.get(1)[0], after)
        r.nothing_more()


def check_exact_limit_accepted(env):
    """A line of exactly TASK_MAX_BYTES (CRLF ended) is taken as a task."""
    t = env.box.task("disassociate")
    text = json.dumps(t)
    text = text[:-1] + " " * (TASK_MAX_BYTES - len(text)) + "}"
    with connect(env.sock) as s:
        s.sendall(text.encode() + b"\r\n")
        expect_result(Lines(s).get(1)[0], t)


def check_half_close(env):
    """echo TASK | socat -: the client shuts its side and still gets the result."""
    t = env.box.task("disassociate")
    with connect(env.sock) as s:
        s.sendall(json.dumps(t).encode())
        s.shutdown(socket.SHUT_WR)
        r = Lines(s)
        expect_result(r.get(1)[0], t)
        r.raw_until(1, 5)
        check(r.eof, "the agent kept the connection open after answering a half-closed client")


def check_client_gone_midway(env):
    """A client that leaves with tasks queued: they still run, nobody is
    answered, and the agent goes on (a callback into a freed client would
    crash it, at once under ASan)."""
    tasks = [env.box.task("disassociate") for _ in range(5)]
    with connect(env.sock) as s:
        send_lines(s, tasks)
    t = env.box.task("disassociate")
    with connect(env.sock) as s:
        send_lines(s, [t])
        expect_result(Lines(s).get(1)[0], t)
    check(env.agent.proc.poll() is None, "the agent died")
    for gone in tasks:
        check(f"task {gone['task_id']} " in env.agent.log_text(), "a task of the client that left did not run")


def nobody_connects(path):
    """Exit 0: refused without a byte; 1: got a reply; 2: connect refused; 3: other."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                s = connect(path)
            except PermissionError:
                os._exit(2)
            try:
                s.sendall(b'{"task_id": "nobody-1", "action": "disassociate"}\n')
            except OSError:
                pass
            code = 0 if Lines(s).raw_until(1, 5) == b"" else 1
        except BaseException:
            code = 3
        os._exit(code)
    return os.waitpid(pid, 0)[1] >> 8


def check_non_root_refused(env):
    check(nobody_connects(env.sock) == 2, "uid 65534 could connect to the 0600 socket")
    # With the file mode out of the way, SO_PEERCRED alone must refuse.
    os.chmod(env.sock, 0o666)
    try:
        rc = nobody_connects(env.sock)
    finally:
        os.chmod(env.sock, 0o600)
    check(rc == 0, {1: "a non-root peer got a result line", 2: "connect failed", 3: "child failed"}.get(rc, rc))
    time.sleep(0.2)
    check(re.search(r"uid 65534", env.agent.log_text()), "no log line naming the refused uid")


def check_device(env):
    t = env.box.task("disassociate")
    os.write(env.master, json.dumps(t).encode() + b"\n")
    raw = Lines(env.master).raw_until(1, 120)
    check(raw, "no result on the port")
    check(b"\r" not in raw, f"CR in what came back (no raw mode?): {raw[:200]!r}")
    res = json.loads(raw)
    check(res.get("task_id") == t["task_id"], f"first line is not the result (echo?): {raw[:200]!r}")
    expect_result(res, t)


def reattach(env, timeout):
    """The host's side on a new pty at the port's path; the agent must open it."""
    master, path = new_pty(raw=True)
    env.master = master
    point(env.link, path)
    deadline = time.time() + timeout
    while time.time() < deadline and not env.agent.has_fd_to(path):
        time.sleep(0.05)
    check(env.agent.has_fd_to(path), "the agent did not reopen the port")
    return master


def check_device_reopen(env):
    os.close(env.master)
    env.master = None
    os.unlink(env.link)
    time.sleep(2.5)
    check(env.agent.proc.poll() is None, "agent died when the host went away")
    master = reattach(env, 5)
    t = env.box.task("disassociate")
    os.write(master, json.dumps(t).encode() + b"\n")
    raw = Lines(master).raw_until(1, 120)
    check(raw, "no result on the reopened port")
    expect_result(json.loads(raw), t)
    fails = [l for l in env.agent.log_text().splitlines() if "cannot open" in l and env.link in l]
    check(len(fails) == 1, f"{len(fails)} log lines about failing to open the port, wanted 1")


def worker_running(agent):
    for pid in children(agent.proc.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("kps-agent-worke"):
                    return True
        except OSError:
            pass
    return False


def check_device_result_after_reconnect(env):
    """The host goes away while its task runs and comes back: the result
    waits for it, on the port's next reader (a port has one peer)."""
    t = env.box.task("associate", keypair_name="rc", public_key=env.box.keys.pub("rc"),
                     server={"auth": {"type": "keypair", "key": env.box.keys.private("stranger")}})
    os.write(env.master, json.dumps(t).encode() + b"\n")
    deadline = time.time() + 30
    while time.time() < deadline and not worker_running(env.agent):
        time.sleep(0.002)
    check(worker_running(env.agent), "no worker took the task")
    os.close(env.master)
    env.master = None
    master = reattach(env, 10)
    raw = Lines(master).raw_until(1, 60)
    check(raw, "the task's result was lost with the host's first session")
    expect_result(json.loads(raw), t, code="AUTH_FAILED")


def check_queue_full(env):
    """More lines than the agent holds for one client: it stops reading,
    keeps answering in order, reads on, and closes after the last answer."""
    n = 2 * QUEUE_MAX + 500
    ids = [f"q-{i:05d}" for i in range(n)]
    # Valid task_ids in tasks refused cheaply: every answer names its line.
    with connect(env.sock, timeout=600) as s:
        def writer():
            send_lines(s, [{"task_id": i, "action": "associate"} for i in ids])
            s.shutdown(socket.SHUT_WR)
        w = threading.Thread(target=writer)
        w.start()
        r = Lines(s)
        got = r.get(n, timeout=600)
        w.join()
        r.raw_until(1, 5)
        check(r.eof and not r.buf, "no clean close after the last answer")
    check([g.get("task_id") for g in got] == ids, "results out of order")
    full = [g for g in got if g.get("error_code") == "KPS.AGENT.IO_ERROR"]
    check(full, "the queue never filled")
    check(all("queue is full" in g.get("error_msg", "") for g in full), f"IO_ERROR not about the queue: {full[0]}")
    check(all(g.get("error_code") in ("KPS.AGENT.INVALID_TASK", "KPS.AGENT.IO_ERROR") for g in got),
          "an unexpected result")


def wait_log(agent, text, count, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and agent.log_text().count(text) < count:
        time.sleep(0.05)
    return agent.log_text().count(text) >= count


def check_sighup(env):
    """A reload reopens the channel: the socket is there again, 0600, and serves."""
    before = env.agent.log_text().count("configuration reloaded")
    env.agent.proc.send_signal(signal.SIGHUP)
    check(wait_log(env.agent, "configuration reloaded", before + 1), "no reload logged")
    check_socket_mode(env)
    t = env.box.task("disassociate")
    with connect(env.sock) as s:
        send_lines(s, [t])
        expect_result(Lines(s).get(1)[0], t)


def check_sighup_mid_line(env):
    """A reload while a client's line is in hand: the network side that
    took the line is the one stopped, and the client still gets its result
    (it used to be cut off: EOF, the task applied, its answer lost)."""
    t = env.box.task("associate", keypair_name="hup", public_key=env.box.keys.pub("hup"),
                     server={"auth": {"type": "keypair", "key": env.box.keys.private("stranger")}})
    before = env.agent.log_text().count("configuration reloaded")
    with connect(env.sock, timeout=60) as s:
        send_lines(s, [t])
        deadline = time.time() + 30
        while time.time() < deadline and not worker_running(env.agent):
            time.sleep(0.001)
        check(worker_running(env.agent), "no worker took the task")
        env.agent.proc.send_signal(signal.SIGHUP)
        expect_result(Lines(s).get(1, timeout=30)[0], t, code="AUTH_FAILED")
    check(wait_log(env.agent, "configuration reloaded", before + 1), "no reload logged")
    t = env.box.task("disassociate")
    with connect(env.sock) as s:
        send_lines(s, [t])
        expect_result(Lines(s).get(1)[0], t)


def check_sigterm(env):
    rc = env.agent.stop()
    check(rc == 0, f"exit {rc} on SIGTERM")
    check(not os.path.lexists(env.sock), "the socket file was left behind")


def check_socket_activation(env):
    activate = shutil.which("systemd-socket-activate")
    check(activate, "systemd-socket-activate not installed")
    sock = os.path.join(env.box.dir, "activated.sock")
    conf = os.path.join(env.box.dir, "activated.conf")
    write_channel_config(env.box.agent_config, conf, sock, "")
    log = os.path.join(env.box.dir, "activated.log")
    act = subprocess.Popen([activate, "-l", sock, env.agent_exe, "-c", conf, "run"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not os.path.exists(sock):
            time.sleep(0.02)
        t = env.box.task("disassociate")
        # The first connection makes systemd-socket-activate start the agent.
        with connect(sock, timeout=30) as s:
            send_lines(s, [t])
            expect_result(Lines(s).get(1)[0], t)
        # A reload must not close the socket systemd handed over.
        act.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "configuration reloaded" not in open(log, errors="replace").read():
            time.sleep(0.05)
        t = env.box.task("disassociate")
        with connect(sock, timeout=30) as s:
            send_lines(s, [t])
            expect_result(Lines(s).get(1)[0], t)
        with open(log, errors="replace") as f:
            check("socket activation" in f.read(), "the agent did not say it took the passed socket")
    finally:
        if act.poll() is None:
            act.send_signal(signal.SIGTERM)
        try:
            rc = act.wait(20)
        except subprocess.TimeoutExpired:
            act.kill()
            act.wait()
            rc = "none (killed after 20 s)"
    check(rc == 0, f"exit {rc}")
    check(os.path.exists(sock), "the agent unlinked a socket that systemd owns")


def check_stale_socket_path(env):
    """A dead agent's socket is replaced; a file that is not a socket is kept
    and the agent does not listen there."""
    for kind in ("socket", "file"):
        path = os.path.join(env.box.dir, f"stale-{kind}")
        if kind == "socket":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
                old.bind(path)
        else:
            with open(path, "w") as f:
                f.write("precious\n")
        conf = os.path.join(env.box.dir, f"stale-{kind}.conf")
        log = os.path.join(env.box.dir, f"stale-{kind}.log")
        write_channel_config(env.box.agent_config, conf, path, "")
        agent = Agent([env.agent_exe, "-c", conf, "run"], log, lambda: " running " in open(log).read())
        try:
            if kind == "socket":
                t = env.box.task("disassociate")
                with connect(path) as s:
                    send_lines(s, [t])
                    expect_result(Lines(s).get(1)[0], t)
            else:
                check(os.path.isfile(path) and open(path).read() == "precious\n", "the file was touched")
                check("not a socket" in agent.log_text(), "no log line saying the path is not a socket")
        finally:
            rc = agent.stop()
        check(rc == 0, f"exit {rc}")


class Env:
    pass


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    only = set(sys.argv[2:])
    env = Env()
    env.agent_exe = os.path.abspath(sys.argv[1])
    # A user of its own: other suites running at the same time edit kpstest's keys.
    sb.ensure_user(CHANNEL_USER)
    env.box = sb.Sandbox("channel", user=CHANNEL_USER)
    env.master = None
    env.agent = None
    try:
        env.sock = os.path.join(env.box.dir, "agent.sock")
        env.link = os.path.join(env.box.dir, "vport")
        # Left cooked on purpose: the agent must put the port in raw mode itself.
        env.master, path = new_pty(raw=False)
        point(env.link, path)
        write_channel_config(env.box.agent_config, env.box.agent_config, env.sock, env.link)
        env.agent = Agent([env.agent_exe, "-c", env.box.agent_config, "run"],
                          os.path.join(env.box.dir, "agent.log"), lambda: os.path.exists(env.sock))
        for name, fn in [("socket_mode_0600", check_socket_mode),
                         ("three_lines_one_write", check_three_in_one_write),
                         ("crlf_and_blank_lines", check_crlf_and_blank_lines),
                         ("concurrent_clients", check_concurrent_clients),
                         ("overlong_line_in_order", check_overlong_line_in_order),
                         ("overlong_line_streamed", check_overlong_line_streamed),
                         ("exact_limit_accepted", check_exact_limit_accepted),
                         ("half_close", check_half_close),
                         ("client_gone_midway", check_client_gone_midway),
                         ("non_root_refused", check_non_root_refused),
                         ("device_task", check_device),
                         ("device_reopen", check_device_reopen),
                         ("device_result_after_reconnect", check_device_result_after_reconnect),
                         ("queue_full_in_order", check_queue_full),
                         ("sighup_mid_line", check_sighup_mid_line),
                         ("sighup_reopens", check_sighup),
                         ("sigterm_exit_0", check_sigterm),
                         ("socket_activation", check_socket_activation),
                         ("stale_socket_path", check_stale_socket_path)]:
            if not only or name in only:
                run_check(name, fn, env)
    finally:
        if env.agent and env.agent.proc.poll() is None:
            env.agent.stop()
        if env.master is not None:
            os.close(env.master)
        failed = [n for n, ok in RESULTS if not ok]
        env.box.close(keep=bool(failed))
        if failed:
            print(f"kept {env.box.dir} for inspection", flush=True)
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
