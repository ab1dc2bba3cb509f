#!/usr/bin/env python3
"""End-to-end cases for `kps-agent run`: the control-plane emulator, the
daemon and a real sshd on loopback, checked with the real ssh client.
`daemon_cases.py --list` names them; `daemon_cases.py AGENT EMULATOR NAME`
runs one."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, Failure, check, reset_home, slow_reload, snapshot  # noqa: E402

CASES = {}
API_TOKEN = "api-token-for-tests"
AGENT_TOKEN = "agent-token-for-tests"
PROJECT = "0605767c1a80d5762f1ec00b4e2ad5f1"


def case(fn):
    CASES[fn.__name__] = fn
    return fn


class ControlPlane:
    """The emulator as a process, and its public API as the cloud's users call it."""

    def __init__(self, exe, *extra):
        self.proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--api-token", API_TOKEN,
                                      "--agent-token", AGENT_TOKEN, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        check(line.startswith("listening on "), f"emulator said {line!r}")
        self.url = "http://" + line.split()[-1]

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-Auth-Token": API_TOKEN, "Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, json.loads(text) if text else None

    def import_keypair(self, name, public_key):
        st, body = self.call("POST", f"/v3/{PROJECT}/keypairs", {"keypair": {"name": name, "public_key": public_key}})
        check(st == 200, f"import: {st} {body}")
        return body

    def associate(self, body):
        st, res = self.call("POST", f"/v3/{PROJECT}/keypairs/associate", body)
        check(st == 202 and res.get("task_id"), f"associate: {st} {res}")
        return res["task_id"]

    def disassociate(self, body):
        st, res = self.call("POST", f"/v3/{PROJECT}/keypairs/disassociate", body)
        check(st == 202 and res.get("task_id"), f"disassociate: {st} {res}")
        return res["task_id"]

    def task(self, task_id):
        st, res = self.call("GET", f"/v3/{PROJECT}/tasks/{task_id}")
        check(st == 200, f"task {task_id}: {st} {res}")
        return res

    def wait(self, task_id, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.task(task_id)
            if t["task_status"].startswith(("SUCCESS_", "FAILED_")):
                return t
            time.sleep(0.02)
        raise Failure(f"task {task_id} not done in {timeout}s: {self.task(task_id)}")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Agent:
    def __init__(self, box, exe, cp, extra_conf=""):
        token = os.path.join(box.dir, "token")
        with open(token, "w") as f:
            f.write(AGENT_TOKEN + "\n")
        os.chmod(token, 0o600)
        self.sock = os.path.join(box.dir, "agent.sock")
        conf = open(box.agent_config).read()
        conf = conf.replace("[control_plane]\n", f"[control_plane]\nurl = {cp.url}\ntoken_file = {token}\npoll_wait = 5\n")
        conf = conf.replace("[channel]\nsocket =\n", f"[channel]\nsocket = {self.sock}\n")
        self.config = os.path.join(box.dir, "daemon.conf")
        with open(self.config, "w") as f:
            f.write(conf + extra_conf)
        self.exe = exe
        self.log = os.path.join(box.dir, "agent.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.exe, "-c", self.config, "run"], stdout=self.logf, stderr=self.logf,
                                     start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline and not os.path.exists(self.sock):
            check(self.proc.poll() is None, "agent exited: " + open(self.log).read()[-2000:])
            time.sleep(0.01)
        check(os.path.exists(self.sock), "agent socket never appeared")

    def kill(self, whole_group=False):
        if whole_group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.kill()
        self.proc.wait()
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return None
        return self.proc.returncode if self.proc else None

    def send_lines(self, lines):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall("".join(json.dumps(l) + "\n" for l in lines).encode())
        out = b""
        s.settimeout(120)
        while out.count(b"\n") < len(lines):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        return [json.loads(l) for l in out.decode().splitlines()]


@case
def e2e_associate_disassociate(box, agent_exe, cp):
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        cp.import_keypair("newkeypair1", box.keys.pub("a"))
        tid = cp.associate({"keypair_name": "newkeypair1", "server": {"id": box.server_id}})
        t = cp.wait(tid)
        check(t["task_status"] == "SUCCESS_RESET", f"{t}")
        check(box.login_key("a"), "new key does not log in")
        tid = cp.associate({"keypair_name": "newkeypair1", "server": {
            "id": box.server_id, "auth": {"type": "keypair", "key": box.keys.private("a")},
            "disable_password": True}})
        t = cp.wait(tid)
        check(t["task_status"] == "SUCCESS_REPLACE", f"{t}")
        check(not box.login_password(), "password login still on")
        tid = cp.disassociate({"server": {"id": box.server_id}})
        t = cp.wait(tid)
        check(t["task_status"] == "SUCCESS_UNBIND", f"{t}")
        check(not box.login_key("a"), "key still logs in after disassociate")
        check(box.login_password(), "password login not restored")
        check(cp.task(tid).get("result_posts") == 1, f"result posted more than once: {cp.task(tid)}")
    finally:
        check(agent.stop() == 0, "SIGTERM did not end the agent with 0")


@case
def e2e_failure_reported(box, agent_exe, cp):
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        cp.import_keypair("kp1", box.keys.pub("a"))
        tid = cp.associate({"keypair_name": "kp1", "server": {
            "id": box.server_id, "auth": {"type": "password", "key": "not-the-password"}}})
        t = cp.wait(tid)
        check(t["task_status"] == "FAILED_REPLACE" and t.get("error_code") == "KPS.AGENT.AUTH_FAILED", f"{t}")
        check("not-the-password" not in open(agent.log).read(), "the password reached the log")
    finally:
        agent.stop()


def daemon_workers(agent):
    """pids of the daemon's kps-agent-worker processes."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0]
        except (OSError, ValueError, IndexError):
            continue
        if ppid == agent.proc.pid and name == b"kps-agent-worker":
            out.append(int(pid))
    return out


@case
def spare_worker(box, agent_exe, cp):
    """After a task a spare worker waits for the next one (10 s): a task
    it takes succeeds; a spare that was killed is replaced by a fresh
    worker; an idle daemon keeps none."""
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        cp.import_keypair("kp1", box.keys.pub("a"))
        cp.import_keypair("kp2", box.keys.pub("b"))
        check(daemon_workers(agent) == [], f"a worker before any task: {daemon_workers(agent)}")
        t = cp.wait(cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id}}))
        check(t["task_status"] == "SUCCESS_RESET", f"{t}")
        time.sleep(0.5)
        spare = daemon_workers(agent)
        check(len(spare) == 1, f"no spare worker after a task: {spare}")
        t = cp.wait(cp.associate({"keypair_name": "kp2", "server": {"id": box.server_id}}))
        check(t["task_status"] == "SUCCESS_RESET" and box.login_key("b"), f"the spare's task: {t}")
        time.sleep(0.5)
        spare = daemon_workers(agent)
        check(len(spare) == 1, f"no spare after the second task: {spare}")
        os.kill(spare[0], signal.SIGKILL)
        time.sleep(0.3)
        t = cp.wait(cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id}}))
        check(t["task_status"] == "SUCCESS_RESET" and box.login_key("a"), f"after the spare died: {t}")
        deadline = time.time() + 15
        while time.time() < deadline and daemon_workers(agent):
            time.sleep(0.2)
        check(daemon_workers(agent) == [], "the spare did not leave an idle daemon")
        check(agent.proc.poll() is None, "the daemon died")
        log = open(agent.log).read()
        check("rolled back" not in log and "died" not in log, "a worker was taken for dead: " + log[-1500:])
    finally:
        check(agent.stop() == 0, "SIGTERM did not end the agent with 0")


@case
def results_wait_for_control_plane(box, agent_exe, emulator):
    cp = ControlPlane(emulator, "--fail-results", "3")
    try:
        reset_home(box, USER_LINE)
        agent = Agent(box, agent_exe, cp)
        agent.start()
        cp.import_keypair("kp1", box.keys.pub("a"))
        tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id}})
        t = cp.wait(tid, timeout=60)
        check(t["task_status"] == "SUCCESS_RESET", f"{t}")
        check(t.get("result_posts") == 1, f"stored {t.get('result_posts')} times")
        outbox = os.path.join(box.state, "outbox")
        deadline = time.time() + 5
        while os.listdir(outbox) and time.time() < deadline:
            time.sleep(0.05)
        check(not os.listdir(outbox), "outbox not emptied after the result was stored")
        agent.stop()
    finally:
        cp.close()


@case
def result_survives_restart(box, agent_exe, emulator):
    """The control plane refuses results while the agent restarts: the
    result stays in the outbox on disk and arrives after the restart."""
    cp = ControlPlane(emulator, "--fail-results", "1000000")
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        cp.import_keypair("kp1", box.keys.pub("a"))
        tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id}})
        outbox = os.path.join(box.state, "outbox")
        deadline = time.time() + 20
        while not (os.path.isdir(outbox) and os.listdir(outbox)) and time.time() < deadline:
            time.sleep(0.05)
        check(os.listdir(outbox) == [f"{tid}.json"], f"outbox: {os.listdir(outbox)}")
        agent.stop()
    finally:
        cp.close()
    # A control plane that is back (the emulator keeps no state across runs:
    # the same task is created again under the same id is not possible, so
    # check the stored result file itself arrives as a POST to a fresh one).
    cp2 = ControlPlane(emulator)
    try:
        agent2 = Agent(box, agent_exe, cp2)
        agent2.start()
        deadline = time.time() + 10
        while os.listdir(outbox) and time.time() < deadline:
            time.sleep(0.05)
        # The fresh control plane does not know the task (404): the agent drops it.
        check(not os.listdir(outbox), "outbox not drained after restart")
        check(box.login_key("a"), "the task's change is not there")
        agent2.stop()
    finally:
        cp2.close()


@case
def sigkill_agent_mid_task(box, agent_exe, cp):
    """SIGKILL of the daemon alone: its worker finishes the task; after the
    restart the result arrives exactly once."""
    slow_reload(box, 1.5)
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    cp.import_keypair("kp1", box.keys.pub("a"))
    tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id, "disable_password": True}})
    time.sleep(0.7)
    agent.kill()
    agent.start()
    t = cp.wait(tid, timeout=60)
    check(t["task_status"] == "SUCCESS_RESET", f"{t}")
    time.sleep(1)
    check(cp.task(tid).get("result_posts") == 1, f"result posted {cp.task(tid).get('result_posts')} times")
    check(box.login_key("a") and not box.login_password(), "VM not in the new state")
    agent.stop()


@case
def sigkill_everything_mid_task(box, agent_exe, cp):
    """SIGKILL of the daemon and its worker (systemd kills the cgroup): the
    next start rolls the half-done task back and reports it FAILED once."""
    slow_reload(box, 2)
    reset_home(box, USER_LINE)
    before = snapshot(box)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    cp.import_keypair("kp1", box.keys.pub("a"))
    tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id, "disable_password": True}})
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(box.state, "inflight.json")) and time.time() < deadline:
        time.sleep(0.01)
    check(os.path.exists(os.path.join(box.state, "inflight.json")), "the task never started")
    time.sleep(0.3)
    agent.kill(whole_group=True)
    subprocess.run(["pkill", "-f", os.path.join(box.dir, "slow-reload")])
    agent.start()
    t = cp.wait(tid, timeout=60)
    check(t["task_status"] == "FAILED_RESET", f"{t}")
    check(snapshot(box) == before, "the VM was not rolled back")
    # The rollback reloads sshd; give its re-exec a moment.
    deadline = time.time() + 5
    while not (box.login_password() and not box.login_key("a")) and time.time() < deadline:
        time.sleep(0.2)
    check(box.login_password() and not box.login_key("a"), "sshd not in the old state")
    time.sleep(1)
    check(cp.task(tid).get("result_posts") == 1, f"posted {cp.task(tid).get('result_posts')} times")
    agent.stop()


@case
def sigterm_during_task(box, agent_exe, cp):
    slow_reload(box, 1)
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    cp.import_keypair("kp1", box.keys.pub("a"))
    tid = cp.associate({"keypair_name": "kp1", "server": {"id": box.server_id, "disable_password": True}})
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(box.state, "inflight.json")) and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.time()
    rc = agent.stop()
    check(rc == 0, f"exit {rc}")
    check(time.time() - t0 < 8, f"took {time.time() - t0:.1f}s to stop")
    check(not os.path.exists(os.path.join(box.state, "inflight.json")), "task left half-done")
    with open(os.path.join(box.state, "results", f"{tid}.json")) as f:
        res = json.load(f)
    check(res["status"] in ("SUCCESS", "FAILED"), f"{res}")


@case
def two_hundred_tasks_at_once(box, agent_exe, cp):
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        pub = box.keys.pub("a")
        lines = [box.task(task_id=f"bulk-{i:03d}", keypair_name=f"kp{i}", public_key=pub) for i in range(200)]
        results = agent.send_lines(lines)
        check(len(results) == 200, f"{len(results)} results")
        check([r["task_id"] for r in results] == [f"bulk-{i:03d}" for i in range(200)], "results out of order")
        check(all(r["status"] == "SUCCESS" for r in results), f"{[r for r in results if r['status'] != 'SUCCESS'][:2]}")
        check(box.login_key("a"), "key does not log in")
        check("keypair=kp199 " in open(box.keys_path()).read(), "last task not applied last")
    finally:
        agent.stop()


@case
def replay_from_any_source(box, agent_exe, cp):
    reset_home(box, USER_LINE)
    rc, res, _, _ = box.apply(box.task(task_id="replayed-1", keypair_name="kp1", public_key=box.keys.pub("a")),
                              agent_exe)
    check(rc == 0, f"apply: {res}")
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        again = agent.send_lines([box.task(task_id="replayed-1", keypair_name="kp2", public_key=box.keys.pub("b"))])
        check(again[0]["status"] == "SUCCESS" and again[0]["task_id"] == "replayed-1", f"{again}")
        check(not box.login_key("b"), "the replay applied the new body")
    finally:
        agent.stop()


@case
def every_task_id_over_the_socket(box, agent_exe, cp):
    """Issue 11.5: every id the contract allows gets exactly one result on
    the route it came by, in order, and a replay gets the same one."""
    reset_home(box, USER_LINE)
    agent = Agent(box, agent_exe, cp)
    agent.start()
    try:
        ids = [".", "..", "...", "-", "-x", "_", ".hidden", "Z" * 64]
        lines = [box.task(task_id=t, keypair_name="kp1", public_key=box.keys.pub("a")) for t in ids]
        got = agent.send_lines(lines + lines)
        check([r["task_id"] for r in got] == ids + ids, f"results: {[r['task_id'] for r in got]}")
        check(all(r["status"] == "SUCCESS" for r in got), f"{[r for r in got if r['status'] != 'SUCCESS'][:2]}")
        check(got[:len(ids)] == got[len(ids):], "a replay did not return the recorded result")
    finally:
        agent.stop()


@case
def journal_fields_from_worker(box, agent_exe, cp):
    """The worker's per-task line reaches journald with its fields. The
    daemon runs in a mount namespace whose /run/systemd/journal is this
    case's own directory, with a datagram socket standing in for journald;
    JOURNAL_STREAM names the daemon's stderr, as systemd sets it."""
    reset_home(box, USER_LINE)
    jdir = os.path.join(box.dir, "journal")
    os.mkdir(jdir)
    jsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    jsock.bind(os.path.join(jdir, "socket"))
    jsock.settimeout(0.2)
    made = [d for d in ("/run/systemd", "/run/systemd/journal") if not os.path.isdir(d)]
    for d in made:
        os.mkdir(d, 0o755)
    agent = Agent(box, agent_exe, cp)
    logf = open(agent.log, "a")
    st = os.fstat(logf.fileno())
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    agent.logf = logf
    # The bind must not propagate out of the namespace. "--propagation
    # private" would make / private, which fails (EINVAL) where / is not a
    # mount point (a chroot): the mount that holds /run/systemd/journal is
    # made private instead, which is all a mount on it needs, and any step
    # that fails ends the agent before it runs.
    agent.proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "unchanged", "sh", "-c",
         'm=$(findmnt -n -o TARGET -T /run/systemd/journal) && mount --make-private "$m" && '
         'mount --bind "$0" /run/systemd/journal && exec "$@"', jdir, agent_exe, "-c", agent.config, "run"],
        stdout=logf, stderr=logf, env=env, start_new_session=True)
    entries = []
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not os.path.exists(agent.sock):
            check(agent.proc.poll() is None, "agent exited: " + open(agent.log).read()[-2000:])
            time.sleep(0.01)
        tid = "journal-fields-1"
        res = agent.send_lines([{"task_id": tid, "action": "associate", "user": box.user,
                                 "keypair_name": "kp1", "public_key": box.keys.pub("a"),
                                 "server": {"id": box.server_id}}])
        check(res and res[0]["status"] == "SUCCESS", f"{res}")
        check(box.login_key("a"), "the key does not log in")
        deadline = time.time() + 5
        # The task's own line (RESULT=); the audit records carry TASK_ID too.
        while time.time() < deadline and not any(f"TASK_ID={tid}" in e and "\nRESULT=" in e for e in entries):
            try:
                entries.append(jsock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
        mine = [e for e in entries if f"TASK_ID={tid}" in e and "\nRESULT=" in e]
        check(mine, f"no journal entry with TASK_ID={tid}; got {entries}")
        fields = dict(line.split("=", 1) for line in mine[0].splitlines() if "=" in line)
        check(fields.get("RESULT") == "SUCCESS" and fields.get("USER") == box.user
              and fields.get("KEYPAIR") == "kp1" and fields.get("SYSLOG_IDENTIFIER") == "kps-agent",
              f"fields: {fields}")
    finally:
        agent.stop()
        jsock.close()
        for d in reversed(made):
            os.rmdir(d)


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        return 0
    agent, emulator, name = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    sb.ensure_user()
    box = sb.Sandbox(name)
    ok = False
    cp = None
    try:
        fn = CASES[name]
        if fn.__code__.co_varnames[2] == "cp":
            cp = ControlPlane(emulator)
            fn(box, agent, cp)
        else:
            fn(box, agent, emulator)
        ok = True
    except Failure as e:
        print(f"FAIL {name}: {e}")
    finally:
        if cp:
            cp.close()
        subprocess.run(["pkill", "-f", box.dir + "/daemon.conf"], check=False)
        box.close(keep=not ok)
    print(f"PASS {name}" if ok else f"sandbox kept in {box.dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
