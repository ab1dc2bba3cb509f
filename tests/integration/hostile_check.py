#!/usr/bin/env python3
"""The monitor with a hostile program in its network side's place (issue 13
§1: "the privileged side survives, changes nothing it was not validly asked
to, and logs it").

    hostile_check.py --list
    hostile_check.py HOSTILE_AGENT KPS_AGENT KPS_AGENT_TOOL NAME [--keep]

HOSTILE_AGENT is tests/integration/hostile-agent.c, a program that sends
what KPS_HOSTILE names (see that file). Each case copies the real monitor
(kps-agent) and tool into a directory with HOSTILE_AGENT as kps-agent-net
beside them, runs that `kps-agent -c CONF run` against a sandbox sshd and
checks:
  - the monitor is alive at the end and stops cleanly on SIGTERM;
  - authorized_keys, sshd_config and its drop-ins are byte for byte as
    before (the valid cases: changed exactly as their task asks);
  - no result SUCCESS recorded but for a task validly handed over;
  - the outbox changes only by an acknowledgement of a result handed over;
  - the monitor's log says what it refused and why it restarted its
    network side, and a restarted one (a well-behaved probe) is served;
  - no descriptor the hostile side passed stays open in the monitor."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox as sb  # noqa: E402
from cases import USER_LINE, Failure, check, reset_home, snapshot  # noqa: E402

OTHER_SERVER = "00000000-0000-4000-8000-000000000000"
REFUSED = "network side: sent a frame it may not send; starting a new one"
TOO_BIG = "network side: sent a frame over the size limit; starting a new one"

CASES = {}


def case(closes=False, url=False, device=False):
    def wrap(fn):
        fn.closes, fn.url, fn.device = closes, url, device
        CASES[fn.__name__.replace("_", "-")] = fn
        return fn
    return wrap


class Run:
    """One monitor with one hostile mode."""

    def __init__(self, box, exe, mode, fn):
        self.box, self.exe, self.mode = box, exe, mode
        self.dir = os.path.join(box.dir, "hostile")
        os.makedirs(self.dir)
        self.valid = box.task(keypair_name="kp-valid", public_key=box.keys.pub("a"))
        self.probe = box.task(keypair_name="kp-probe", public_key=box.keys.pub("c"), server={"id": OTHER_SERVER})
        for name, t in (("valid.json", self.valid), ("probe.json", self.probe)):
            with open(os.path.join(self.dir, name), "w") as f:
                json.dump(t, f)
        conf = open(box.agent_config).read()
        if fn.url:
            token = os.path.join(box.dir, "token")
            with open(token, "w") as f:
                f.write("agent-token\n")
            os.chmod(token, 0o600)
            conf = conf.replace("[control_plane]\n", "[control_plane]\nurl = http://127.0.0.1:9/\n"
                                f"token_file = {token}\n")
        if fn.device:
            self.fifo = os.path.join(box.dir, "port.fifo")
            os.mkfifo(self.fifo, 0o600)
            conf = conf.replace("[channel]\n", f"[channel]\ndevice = {self.fifo}\n")
        self.config = os.path.join(box.dir, "hostile.conf")
        with open(self.config, "w") as f:
            f.write(conf)
        self.log = os.path.join(box.dir, "agent.log")
        self.proc = None

    def start(self):
        env = dict(os.environ, KPS_HOSTILE=self.mode, KPS_HOSTILE_DIR=self.dir,
                   KPS_HOSTILE_KEYS=self.box.keys_path())
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.exe, "-c", self.config, "run"], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=env, start_new_session=True)

    def report(self, gen):
        try:
            with open(os.path.join(self.dir, f"report-{gen}.txt")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return None

    def wait_report(self, gen, line_prefix, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            check(self.proc.poll() is None, f"the monitor exited ({self.proc.returncode}): {self.tail()}")
            lines = self.report(gen) or []
            hit = [l for l in lines if l.startswith(line_prefix)]
            if hit:
                return hit, lines
            time.sleep(0.05)
        raise Failure(f"network side {gen} never wrote {line_prefix!r}: {self.report(gen)}; log: {self.tail()}")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def tail(self):
        return self.log_text()[-1500:]

    def fds(self):
        """The monitor's descriptors: target -> count."""
        out = {}
        d = f"/proc/{self.proc.pid}/fd"
        for n in os.listdir(d):
            try:
                t = os.readlink(os.path.join(d, n))
            except OSError:
                continue
            out[t] = out.get(t, 0) + 1
        return out

    def stop(self):
        check(self.proc.poll() is None, f"the monitor died: rc {self.proc.returncode}: {self.tail()}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise Failure("the monitor did not stop on SIGTERM")
        check(rc == 0, f"the monitor exited {rc} on SIGTERM: {self.tail()}")


def results(box):
    d = os.path.join(box.state, "results")
    out = {}
    for n in os.listdir(d) if os.path.isdir(d) else []:
        if n.endswith(".json"):
            with open(os.path.join(d, n)) as f:
                out[n[:-5]] = json.load(f)
    return out


def outbox(box):
    d = os.path.join(box.state, "outbox")
    out = {}
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, n), "rb") as f:
            out[n] = f.read()
    return out


def fill_outbox(box, n):
    """n results waiting for the control plane, oldest first (mtime)."""
    d = os.path.join(box.state, "outbox")
    os.makedirs(d, mode=0o700, exist_ok=True)
    now = time.time() - 1000
    for i in range(1, n + 1):
        tid = f"out-{i:02d}"
        res = {"task_id": tid, "status": "FAILED", "error_code": "KPS.AGENT.WRONG_SERVER",
               "error_msg": "for another server", "server_id": box.server_id}
        p = os.path.join(d, tid + ".json")
        with open(p, "w") as f:
            json.dump(res, f)
        os.chmod(p, 0o600)
        os.utime(p, (now + i, now + i))


def probe_served(run, gen=2):
    """A network side started after the hostile one is served: its task
    (for another server) answered WRONG_SERVER."""
    hit, lines = run.wait_report(gen, "result 7 ", timeout=90)
    res = json.loads(hit[0].split(" ", 2)[2])
    check(res.get("error_code") == "KPS.AGENT.WRONG_SERVER", f"probe answered {res}")
    check(any(l.startswith("gen ") and " privdrop 0" in l for l in lines), f"probe side not dropped: {lines}")


def unchanged(run, before, before_results):
    box = run.box
    check(snapshot(box) == before, "the sandbox's files changed")
    new = {k: v for k, v in results(box).items() if k not in before_results}
    check(run.valid["task_id"] not in new, f"the valid task of a refused frame ran: {new.get(run.valid['task_id'])}")
    bad = {k: v for k, v in new.items() if v.get("status") == "SUCCESS"}
    check(not bad, f"results SUCCESS recorded for tasks nobody validly sent: {bad}")


def log_has(run, text, count=1):
    n = run.log_text().count(text)
    check(n >= count, f"the log says {text!r} {n} times, want >= {count}: {run.tail()}")


def refused_frame(run, expect):
    """The refusal logged, the hostile side replaced (the monitor ends its
    link and SIGTERMs it: it may not live to write that down), and the new
    network side served."""
    probe_served(run)
    log_has(run, expect)


@case()
def garbage(run):
    refused_frame(run, REFUSED)


@case()
def unknown_type(run):
    refused_frame(run, REFUSED)


@case()
def monitor_type(run):
    refused_frame(run, REFUSED)


@case()
def worker_type(run):
    refused_frame(run, REFUSED)


@case()
def huge(run):
    refused_frame(run, TOO_BIG)


@case()
def oversize(run):
    refused_frame(run, TOO_BIG)


@case()
def cut(run):
    """A valid task's frame cut short, then EOF: nothing of it runs, and the
    log says the network side ended mid-frame."""
    run.wait_report(1, "cut after", timeout=30)
    probe_served(run)
    text = run.log_text()
    check("network side" in text and ("cut" in text or "short" in text or "mid-frame" in text
                                      or "exited" in text or "closed" in text),
          f"the monitor dropped a frame cut short and restarted its network side without a word: {run.tail()}")


@case()
def close(run):
    run.wait_report(1, "closed", timeout=30)
    probe_served(run)
    check("network side" in run.log_text(), f"a closed link and a restart, not logged: {run.tail()}")


@case()
def close_exit(run):
    run.wait_report(1, "closed", timeout=30)
    probe_served(run)
    check("network side" in run.log_text(), f"a closed link and a clean exit, restarted without a word: "
          f"{run.tail()}")


@case()
def short_task(run):
    run.wait_report(1, "end ", timeout=30)
    log_has(run, "network side: a task frame without its route; dropped")


@case()
def flood_tasks(run):
    hit, lines = run.wait_report(1, "end ", timeout=200)
    check(hit[0].startswith("end answered results 1200"), f"1200 tasks sent, answers: {hit[0]}")
    answers = [json.loads(l.split(" ", 2)[2]) for l in lines if l.startswith("result ")]
    check(all(a.get("status") == "FAILED" for a in answers),
          f"a flooded task succeeded: {[a for a in answers if a.get('status') != 'FAILED'][:3]}")
    full = [a for a in answers if "queue is full" in (a.get("error_msg") or "")]
    check(full, "1200 tasks and the queue (1024) never refused one")
    log_has(run, "the task queue is full; refusing tasks until it drains")


@case(url=True)
def forged_acks(run):
    hit, lines = run.wait_report(1, "acked ", timeout=30)
    check(hit[0] == "acked out-01", f"{hit}")
    # out-17 reaches the network side only after a valid acknowledgement.
    run.wait_report(1, "post out-17", timeout=10)
    posts = [l for l in lines[:lines.index(hit[0])] if l.startswith("post ")]
    check(len(posts) == 16, f"handed over {len(posts)} results at once, want 16 (DAEMON_POSTS_MAX)")
    log_has(run, "network side: acknowledged a result it was not given; ignored", 9)


@case(device=True)
def device_flood(run):
    hit, lines = run.wait_report(1, "device answers", timeout=30)
    sent = next(l for l in lines if l.startswith("sent device"))
    n_sent, ms = int(sent.split()[2]), int(sent.split()[4])
    answers, fds = int(hit[0].split()[2]), int(hit[0].split()[4])
    check(answers == n_sent, f"{n_sent} requests, {answers} answers")
    check(1 <= fds <= ms // 200 + 2, f"{fds} descriptors of the device in {ms} ms (at most one per 200 ms)")
    check(run.fds().get(run.fifo, 0) == 0, f"the monitor keeps the device open: {run.fds()}")


@case()
def pass_fds(run):
    run.wait_report(1, "passed fds", timeout=30)
    run.wait_report(1, "end ", timeout=60)
    check(run.fds().get("/dev/null", 0) <= 1, f"descriptors passed by the network side stay open: {run.fds()}")


@case()
def bad_routes(run):
    run.wait_report(1, "end ", timeout=30)
    for r in (99, 0, 4294967295):
        log_has(run, f"network side: a task on route {r}, which does not exist; dropped")


@case()
def escape(run):
    """Past the socket: authorized_keys cannot be opened, the monitor not
    signalled (kill(2) is outside the seccomp filter: it ends the network
    side, which the monitor logs and replaces)."""
    hit, lines = run.wait_report(1, "open keys", timeout=30)
    check(hit[0].startswith("open keys -1"), f"the network side opened authorized_keys: {lines}")
    probe_served(run)
    lines = run.report(1)
    check("kill next" in lines, f"{lines}")
    check(not any(l.startswith("kill monitor") for l in lines), f"kill(2) returned instead of ending it: {lines}")
    log_has(run, "kps-agent-net: system call 62 is not allowed to the network side; exiting")
    log_has(run, "network side: exited with status 159; starting a new one")


@case()
def valid(run):
    hit, _ = run.wait_report(1, "result 42 ", timeout=120)
    res = json.loads(hit[0].split(" ", 2)[2])
    check(res.get("status") == "SUCCESS" and res.get("task_id") == run.valid["task_id"], f"valid task: {res}")
    rec = results(run.box).get(run.valid["task_id"])
    check(rec and rec.get("status") == "SUCCESS", f"recorded {rec}")
    keys = open(run.box.keys_path()).read()
    check(run.box.keys.pub("a").split()[1] in keys and USER_LINE in keys, "the key was not added")


@case(url=True)
def valid_cp(run):
    tid = run.valid["task_id"]
    hit, lines = run.wait_report(1, f"post {tid}", timeout=120)
    rec = results(run.box).get(tid)
    check(rec and rec.get("status") == "SUCCESS", f"recorded {rec}")
    check(f"{tid}.json" in outbox(run.box), "the result is not in the outbox")
    keys = open(run.box.keys_path()).read()
    check(keys.count(run.box.keys.pub("a").split()[1]) == 1, "the key is not there exactly once")


VALID_CASES = ("valid", "valid-cp")


def install(box, hostile, monitor, tool):
    """The real monitor and tool, and the hostile program as the network
    side (both kps-agent-net and kps-agent-net-tls) beside them: the monitor
    takes its helpers from its own directory (agent/helper.h). Returns the
    monitor's path."""
    bindir = os.path.join(box.dir, "bin")
    os.makedirs(bindir)
    for src, name in ((monitor, "kps-agent"), (tool, "kps-agent-tool"), (hostile, "kps-agent-net"),
                      (hostile, "kps-agent-net-tls")):
        shutil.copy2(src, os.path.join(bindir, name))
        os.chmod(os.path.join(bindir, name), 0o755)
    return os.path.join(bindir, "kps-agent")


def run_case(exes, name):
    fn = CASES[name]
    box = sb.Sandbox(f"hostile-{name}")
    ok = False
    run = None
    try:
        reset_home(box, USER_LINE)
        run = Run(box, install(box, *exes), name, fn)
        if name == "forged-acks":
            fill_outbox(box, 20)
        before, before_results, before_outbox = snapshot(box), results(box), outbox(box)
        run.start()
        fn(run)
        # Not one file changed unless a task was validly handed over.
        if name not in VALID_CASES:
            unchanged(run, before, before_results)
        if name == "forged-acks":
            after = outbox(box)
            want = {k: v for k, v in before_outbox.items() if k != "out-01.json"}
            check(after == want, f"the outbox changed beyond the one valid acknowledgement: "
                  f"{sorted(set(before_outbox) ^ set(after))}")
        run.stop()
        ok = True
    except Failure as e:
        print(f"FAIL hostile-{name}: {e}")
    finally:
        if run and run.proc and run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        if run and not ok:
            print("monitor log:\n" + run.tail())
            for g in (1, 2, 3):
                if run.report(g) is not None:
                    print(f"report-{g}: " + " | ".join(run.report(g)[:30])[:1500])
        box.close(keep=not ok or "--keep" in sys.argv)
    print(f"PASS hostile-{name}" if ok else f"sandbox kept in {box.dir}")
    return 0 if ok else 1


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        return 0
    exes, name = [os.path.abspath(a) for a in sys.argv[1:4]], sys.argv[4]
    sb.ensure_user()
    return run_case(exes, name)


if __name__ == "__main__":
    sys.exit(main())
