#!/usr/bin/env python3
"""Checks kps-control-plane from outside, over HTTP: the Huawei KPS calls
(X-Auth-Token) and the agent's long poll and result POST; test_signing.py
checks the Tencent calls and both clouds' signatures with the Emulator
class from here.

    test_emulator.py PATH/TO/kps-control-plane

Prints PASS or FAIL per check and exits 1 when any check failed."""

import base64
import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import cloudsign as cs

API_TOKEN = "api-token-for-emulator-tests"
AGENT_TOKEN = "agent-token-for-emulator-tests"
PROJECT = "0605767c1a80d5762f1ec00b4e2ad5f1"
SECRET = "pa55-w0rd-that-must-never-be-logged"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-never-logged\n-----END OPENSSH PRIVATE KEY-----\n"

PUB1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOBxfiQKa58Ww6SAw64uFE7U29oH7LKIeKJPMbMPpfMV alice@example"
PUB2 = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIApvxQadst2Hf+fGZWr5SAWGO4"
        "Ta9tfPigRC1FejATJkDqPKvjLXK20XhShHz9UCZSgi9Q3GD4ZTh6SLPpll/w= bob")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

failures = []
passes = 0


def check(name, ok, detail=""):
    global passes
    if ok:
        passes += 1
        print(f"PASS {name}")
    else:
        failures.append(name)
        print(f"FAIL {name}: {detail}")
    sys.stdout.flush()
    return ok


def fingerprint(pub):
    """What ssh-keygen -l prints, computed here independently."""
    blob = base64.b64decode(pub.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class Emulator:
    def __init__(self, exe, *extra, bare=False):
        creds = ["--huawei-aksk", f"{cs.HUAWEI_AK}:{cs.HUAWEI_SK}", "--tencent-secret",
                 f"{cs.TENCENT_ID}:{cs.TENCENT_KEY}"] if not bare else []
        self.proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0", "--api-token", API_TOKEN,
                                      "--agent-token", AGENT_TOKEN, *creds, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first_line = self.proc.stdout.readline()
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", self.first_line)
        if not m:
            raise RuntimeError(f"emulator said {self.first_line!r}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=15):
        """(status, parsed JSON or None, raw text, seconds)."""
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        elapsed = time.monotonic() - t0
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return status, parsed, text, elapsed

    def api(self, method, path, body=None, token=API_TOKEN):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Auth-Token"] = token
        return self.request(method, f"/v3/{PROJECT}{path}", body, headers)

    def poll(self, server, wait=0, token=AGENT_TOKEN, timeout=15):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.request("GET", f"/v1/servers/{server}/tasks?wait={wait}", None, headers, timeout)

    def result(self, server, task_id, body, token=AGENT_TOKEN):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", f"/v1/servers/{server}/tasks/{task_id}/result", body, headers)

    def task(self, task_id):
        return self.api("GET", f"/tasks/{task_id}")

    def cvm(self, params, method="GET", path="/", signed=True, headers=None, **sign):
        """The old API, signed as it documents (cloudsign.tencent_v1)."""
        query = urllib.parse.urlencode(cs.tencent_v1(method, self.host, path, params, **sign) if signed else params)
        if method == "GET":
            return self.request("GET", f"{path}?{query}", None, dict(headers or {}))
        return self.request("POST", path, query, {"Content-Type": "application/x-www-form-urlencoded",
                                                  **(headers or {})})

    def stop(self):
        """SIGTERM; (exit status, rest of stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            return None, out, err
        return self.proc.returncode, out, err


def tasks_of(poll_answer):
    status, body, _, _ = poll_answer
    if status != 200 or not isinstance(body, dict):
        return None
    return body.get("tasks")


def associate(emu, keypair, server):
    status, body, text, _ = emu.api("POST", "/keypairs/associate", {"keypair_name": keypair, "server": server})
    if status != 202:
        raise RuntimeError(f"associate: {status} {text}")
    return body["task_id"]


# ---- checks --------------------------------------------------------------


def check_startup(emu):
    check("startup line", emu.first_line == f"listening on 127.0.0.1:{emu.port}\n" and emu.port > 0,
          repr(emu.first_line))


def check_auth(emu):
    for label, token in (("missing", None), ("wrong", "nope"), ("agent token", AGENT_TOKEN)):
        st, body, text, _ = emu.api("GET", "/running-tasks", token=token)
        check(f"api refuses {label} X-Auth-Token", st == 401 and body and body.get("error_code") == "KPS.0401"
              and isinstance(body.get("error_msg"), str), f"{st} {text}")
    st, _, text, _ = emu.api("POST", "/keypairs", {"keypair": {"name": "x", "public_key": PUB1}}, token="nope")
    check("import refused without the token", st == 401, f"{st} {text}")
    for label, token in (("missing", None), ("wrong", "nope"), ("api token", API_TOKEN)):
        st, body, text, _ = emu.poll("srv-auth", 0, token=token)
        check(f"agent poll refuses {label} bearer", st == 401 and body and body.get("error_code") == "KPS.0401",
              f"{st} {text}")
    st, _, text, _ = emu.result("srv-auth", "t1", {"task_id": "t1", "status": "SUCCESS"}, token="nope")
    check("agent result refuses a wrong bearer", st == 401, f"{st} {text}")
    st, _, text, _ = emu.request("GET", "/v1/servers/srv-auth/tasks?wait=0",
                                 headers={"Authorization": f"Basic {AGENT_TOKEN}"})
    check("agent poll refuses a non-Bearer scheme", st == 401, f"{st} {text}")


def check_import(emu):
    st, body, text, _ = emu.api("POST", "/keypairs", {"keypair": {"name": "kp1", "public_key": PUB1}})
    kp = (body or {}).get("keypair") or {}
    check("import answers 200", st == 200, f"{st} {text}")
    check("import echoes name and public key", kp.get("name") == "kp1" and kp.get("public_key") == PUB1, text)
    check("import fingerprint is ssh-keygen's", kp.get("fingerprint") == fingerprint(PUB1),
          f"{kp.get('fingerprint')} != {fingerprint(PUB1)}")
    check("import gives a skey- id", re.fullmatch(r"skey-[0-9a-f]{8}", kp.get("id", "")) is not None, text)
    emu.kp1_id = kp.get("id", "")
    st, body, text, _ = emu.api("POST", "/keypairs", {"keypair": {"name": "kp2", "public_key": "  " + PUB2 + " "}})
    kp2 = (body or {}).get("keypair") or {}
    check("import normalises the key line", st == 200 and kp2.get("public_key") == PUB2
          and kp2.get("fingerprint") == fingerprint(PUB2), text)
    st, body, text, _ = emu.api("POST", "/keypairs", {"keypair": {"name": "kp1", "public_key": PUB2}})
    check("duplicate name refused", st == 400 and body and body.get("error_code") == "KPS.0003", f"{st} {text}")
    bad_keys = ["ssh-ed25519 AAAAnotbase64!!", "ssh-rsa " + PUB1.split()[1], PUB1 + "\nssh-ed25519 AAAA",
                "command=\"x\" " + PUB1, "", "not a key"]
    for i, bad in enumerate(bad_keys):
        st, body, text, _ = emu.api("POST", "/keypairs", {"keypair": {"name": f"bad{i}", "public_key": bad}})
        check(f"bad public key {i} refused", st == 400 and body and body.get("error_code") == "KPS.0006",
              f"{st} {text}")
    for label, payload in (("bad name", {"keypair": {"name": "a b", "public_key": PUB1}}),
                           ("long name", {"keypair": {"name": "n" * 65, "public_key": PUB1}}),
                           ("no keypair", {"name": "kp9", "public_key": PUB1}),
                           ("key not a string", {"keypair": {"name": "kp9", "public_key": 5}})):
        st, body, text, _ = emu.api("POST", "/keypairs", payload)
        check(f"import {label} refused", st == 400 and body and body.get("error_code") == "KPS.0001",
              f"{st} {text}")


def check_malformed(emu):
    cases = {"truncated": '{"keypair_name": "kp1", "server": {"id": "s"}', "trailing garbage": '{"a": 1} x',
             "empty": "", "not json": "keypair_name=kp1", "array": "[]", "NUL byte": '{"a": "\u0000"}\x00',
             "duplicate key": '{"keypair_name": "kp1", "server": {"id": "s1", "id": "s2"}}',
             "single quotes": "{'keypair_name': 'kp1'}", "bare word": '{"keypair_name": kp1}'}
    for label, text_body in cases.items():
        st, body, text, _ = emu.request("POST", f"/v3/{PROJECT}/keypairs/associate", text_body.encode(),
                                        {"X-Auth-Token": API_TOKEN, "Content-Type": "application/json"})
        check(f"malformed JSON ({label}) -> 400", st == 400 and body and body.get("error_code") == "KPS.0001",
              f"{st} {text}")
    st, body, text, _ = emu.result("srv-x", "t1", "{nope")
    check("malformed result JSON -> 400", st == 400, f"{st} {text}")
    big = {"keypair": {"name": "big", "public_key": PUB1}, "pad": "x" * (1024 * 1024)}
    try:
        st = emu.api("POST", "/keypairs", big)[0]
    except (urllib.error.URLError, ConnectionError) as e:
        st = f"connection dropped ({e})"
    check("body over 1 MiB answered 413", st == 413, f"{st}")
    big["pad"] = "x" * 1000
    st, _, text, _ = emu.api("POST", "/keypairs", big)
    check("the oversized import stored nothing", st == 200, f"{st} {text}")
    st, body, text, _ = emu.api("GET", "/nowhere")
    check("unknown path -> 404", st == 404 and body and body.get("error_code") == "KPS.0404", f"{st} {text}")
    st, body, text, _ = emu.api("GET", "/keypairs/associate")
    check("wrong method -> 405", st == 405 and body and body.get("error_code") == "KPS.0405", f"{st} {text}")


def check_associate(emu):
    bad = [("unknown key pair", {"keypair_name": "nope", "server": {"id": "s1"}}, "KPS.0002"),
           ("missing server", {"keypair_name": "kp1"}, "KPS.0001"),
           ("server not an object", {"keypair_name": "kp1", "server": "s1"}, "KPS.0001"),
           ("missing server.id", {"keypair_name": "kp1", "server": {}}, "KPS.0001"),
           ("bad server.id", {"keypair_name": "kp1", "server": {"id": "a/b"}}, "KPS.0001"),
           ("auth not an object", {"keypair_name": "kp1", "server": {"id": "s1", "auth": "x"}}, "KPS.0001"),
           ("missing keypair_name", {"server": {"id": "s1"}}, "KPS.0001"),
           ("disable_password not bool", {"keypair_name": "kp1", "server": {"id": "s1", "disable_password": 1}},
            "KPS.0001")]
    for label, payload, code in bad:
        st, body, text, _ = emu.api("POST", "/keypairs/associate", payload)
        check(f"associate {label} refused", st == 400 and body and body.get("error_code") == code, f"{st} {text}")

    # reset: no auth
    st, body, text, _ = emu.api("POST", "/keypairs/associate", {"keypair_name": "kp1", "server": {"id": "vm-reset"}})
    tid = (body or {}).get("task_id", "")
    check("associate answers 202 with a UUID v4", st == 202 and UUID4.match(tid) is not None, f"{st} {text}")
    st, body, text, _ = emu.task(tid)
    check("new task is READY_RESET", st == 200 and body.get("task_status") == "READY_RESET"
          and body.get("server_id") == "vm-reset" and body.get("task_id") == tid
          and body.get("result_posts") == 0, text)
    tasks = tasks_of(emu.poll("vm-reset", 1))
    want = {"task_id": tid, "action": "associate", "keypair_name": "kp1", "public_key": PUB1,
            "server": {"id": "vm-reset"}}
    check("agent receives the reset task", tasks == [want], f"{tasks}")
    st, body, _, _ = emu.task(tid)
    check("delivered task is RUNNING_RESET", body.get("task_status") == "RUNNING_RESET", f"{body}")
    st, body, text, _ = emu.result("vm-reset", tid, {"task_id": tid, "server_id": "vm-reset", "status": "SUCCESS",
                                                     "duration_ms": 12})
    check("result POST answers 200 {}", st == 200 and body == {}, f"{st} {text}")
    st, body, _, _ = emu.task(tid)
    check("result makes SUCCESS_RESET", body.get("task_status") == "SUCCESS_RESET" and body.get("result_posts") == 1
          and "error_code" not in body, f"{body}")
    st, _, _, _ = emu.poll("vm-reset", 0)
    check("finished task not delivered again", st == 204, f"{st}")

    # replace: auth with a private key, password off, a port
    server = {"id": "vm-replace", "auth": {"type": "keypair", "key": PRIVATE_KEY}, "disable_password": True,
              "port": 2222}
    tid = associate(emu, "kp2", server)
    st, body, _, _ = emu.task(tid)
    check("associate with auth is READY_REPLACE", body.get("task_status") == "READY_REPLACE", f"{body}")
    tasks = tasks_of(emu.poll("vm-replace", 1))
    want = {"task_id": tid, "action": "associate", "keypair_name": "kp2", "public_key": PUB2, "server": server}
    check("agent receives the server object as sent", tasks == [want], f"{tasks}")
    st, body, text, _ = emu.result("vm-replace", tid, {"task_id": tid, "server_id": "vm-replace", "status": "FAILED",
                                                       "error_code": "KPS.AGENT.AUTH_FAILED",
                                                       "error_msg": "sshd refused the key"})
    check("FAILED result stored", st == 200, f"{st} {text}")
    st, body, _, _ = emu.task(tid)
    check("FAILED_REPLACE carries the agent's error", body.get("task_status") == "FAILED_REPLACE"
          and body.get("error_code") == "KPS.AGENT.AUTH_FAILED" and body.get("error_msg") == "sshd refused the key",
          f"{body}")
    emu.failed_tid = tid


def check_disassociate(emu):
    server = {"id": "vm-unbind", "authentication": {"type": "password", "key": SECRET}}
    st, body, text, _ = emu.api("POST", "/keypairs/disassociate", {"server": server, "keypair_name": "kp1"})
    tid = (body or {}).get("task_id", "")
    check("disassociate answers 202 with a UUID v4", st == 202 and UUID4.match(tid) is not None, f"{st} {text}")
    st, body, _, _ = emu.task(tid)
    check("disassociate task is READY_UNBIND", body.get("task_status") == "READY_UNBIND", f"{body}")
    tasks = tasks_of(emu.poll("vm-unbind", 1))
    want = {"task_id": tid, "action": "disassociate", "keypair_name": "kp1", "server": server}
    check("agent receives the disassociate task", tasks == [want], f"{tasks}")
    emu.result("vm-unbind", tid, {"task_id": tid, "status": "SUCCESS"})
    st, body, _, _ = emu.task(tid)
    check("result makes SUCCESS_UNBIND", body.get("task_status") == "SUCCESS_UNBIND", f"{body}")

    st, body, text, _ = emu.api("POST", "/keypairs/disassociate", {"server": {"id": "vm-unbind2"}})
    tid = (body or {}).get("task_id", "")
    tasks = tasks_of(emu.poll("vm-unbind2", 1))
    check("disassociate without keypair_name", tasks == [{"task_id": tid, "action": "disassociate",
                                                          "server": {"id": "vm-unbind2"}}], f"{tasks}")
    for label, payload in (("missing server", {}), ("server.id missing", {"server": {"auth": {}}}),
                           ("auth not an object", {"server": {"id": "s", "auth": []}}),
                           ("bad keypair_name", {"server": {"id": "s"}, "keypair_name": 7})):
        st, body, text, _ = emu.api("POST", "/keypairs/disassociate", payload)
        check(f"disassociate {label} refused", st == 400 and body and body.get("error_code") == "KPS.0001",
              f"{st} {text}")


def check_batch(emu):
    entries = [{"keypair_name": "kp1", "server": {"id": f"vm-batch-{i}"}} for i in range(3)]
    entries[1]["server"]["auth"] = {"type": "password", "key": SECRET}
    st, body, text, _ = emu.api("POST", "/keypairs/batch-associate", {"batch_keypairs": entries})
    answer = (body or {}).get("tasks") or []
    check("batch answers 202 with one task per server", st == 202 and len(answer) == 3
          and [t.get("server_id") for t in answer] == ["vm-batch-0", "vm-batch-1", "vm-batch-2"]
          and all(UUID4.match(t.get("task_id", "")) for t in answer), f"{st} {text}")
    for i, t in enumerate(answer):
        tasks = tasks_of(emu.poll(f"vm-batch-{i}", 1))
        want = {"task_id": t["task_id"], "action": "associate", "keypair_name": "kp1", "public_key": PUB1,
                "server": entries[i]["server"]}
        check(f"batch task {i} reaches its server", tasks == [want], f"{tasks}")
    st, body, _, _ = emu.task(answer[1]["task_id"]) if len(answer) > 1 else (0, {}, "", 0)
    check("batch entry with auth is RUNNING_REPLACE", body.get("task_status") == "RUNNING_REPLACE", f"{body}")

    ten = [{"keypair_name": "kp2", "server": {"id": f"vm-ten-{i}"}} for i in range(10)]
    st, body, text, _ = emu.api("POST", "/keypairs/batch-associate", {"batch_keypairs": ten})
    check("batch of 10 accepted", st == 202 and len((body or {}).get("tasks", [])) == 10, f"{st} {text}")
    _, before, _, _ = emu.api("GET", "/running-tasks")
    eleven = ten + [{"keypair_name": "kp2", "server": {"id": "vm-ten-10"}}]
    for label, payload in (("of 11", {"batch_keypairs": eleven}), ("empty", {"batch_keypairs": []}),
                           ("with two key pairs", {"batch_keypairs": [
                               {"keypair_name": "kp1", "server": {"id": "vm-mix-1"}},
                               {"keypair_name": "kp2", "server": {"id": "vm-mix-2"}}]}),
                           ("naming a server twice", {"batch_keypairs": [
                               {"keypair_name": "kp1", "server": {"id": "vm-twice"}},
                               {"keypair_name": "kp1", "server": {"id": "vm-twice"}}]}),
                           ("with a bad entry", {"batch_keypairs": [
                               {"keypair_name": "kp1", "server": {"id": "vm-ok"}}, {"keypair_name": "kp1"}]}),
                           ("not a list", {"batch_keypairs": {"keypair_name": "kp1"}})):
        st, body, text, _ = emu.api("POST", "/keypairs/batch-associate", payload)
        check(f"batch {label} refused", st == 400 and body and body.get("error_code") == "KPS.0001",
              f"{st} {text}")
    _, after, _, _ = emu.api("GET", "/running-tasks")
    check("refused batches queue nothing", before.get("total") == after.get("total"), f"{before} {after}")


def check_long_poll(emu):
    st, body, _, elapsed = emu.poll("vm-idle", 1)
    check("long poll answers 204 after wait=1", st == 204 and body is None and 0.9 <= elapsed < 3,
          f"{st} after {elapsed:.2f}s")
    st, _, _, elapsed = emu.poll("vm-idle", 0)
    check("wait=0 answers at once", st == 204 and elapsed < 0.5, f"{st} after {elapsed:.2f}s")
    for w in ("601", "-1", "x", "1.5"):
        st, _, text, _ = emu.poll("vm-idle", w)
        check(f"wait={w} refused", st == 400, f"{st} {text}")
    # Without ?wait= a poll is held the default minute (it answers no sooner
    # than 2 s here), and a server id arrives percent-decoded ("%2E" is ".").
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    try:
        st, _, _, elapsed = emu.request("GET", "/v1/servers/vm-idle/tasks", None, headers, 2)
    except OSError:
        st, elapsed = None, 2
    check("a poll without wait is held", st is None and elapsed >= 1.9, f"{st} after {elapsed:.2f}s")
    st, _, text, _ = emu.request("GET", "/v1/servers/%2E/tasks?wait=0", None, headers)
    check("a %2E segment is the id \".\"", st == 204, f"{st} {text}")

    got = {}

    def waiter():
        got["answer"] = emu.poll("vm-wake", 10)

    th = threading.Thread(target=waiter)
    t0 = time.monotonic()
    th.start()
    time.sleep(0.5)
    tid = associate(emu, "kp1", {"id": "vm-wake"})
    th.join(15)
    ans = got.get("answer")
    check("a task wakes the waiting poll at once", ans is not None and tasks_of(ans)
          and tasks_of(ans)[0]["task_id"] == tid and 0.4 < ans[3] < 2.5 and time.monotonic() - t0 < 3,
          f"{ans}")

    ids = [associate(emu, "kp1", {"id": "vm-many"}) for _ in range(3)]
    tasks = tasks_of(emu.poll("vm-many", 5))
    check("a poll gets all READY tasks in creation order", [t["task_id"] for t in tasks or []] == ids, f"{tasks}")
    st, _, _, _ = emu.poll("vm-many", 0)
    check("RUNNING tasks are not handed out again at once", st == 204, f"{st}")


def check_client_gone(emu):
    """A poll whose client went away must not swallow the next task."""
    s = socket.create_connection(("127.0.0.1", emu.port))
    s.sendall((f"GET /v1/servers/vm-gone/tasks?wait=20 HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {AGENT_TOKEN}\r\n\r\n").encode())
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    tid = associate(emu, "kp1", {"id": "vm-gone"})
    tasks = tasks_of(emu.poll("vm-gone", 2))
    check("task not lost to a poll whose client left", tasks and tasks[0]["task_id"] == tid, f"{tasks}")
    st, _, _, _ = emu.api("GET", "/running-tasks")
    check("emulator alive after the client left", st == 200, f"{st}")


def check_many_polls(emu):
    n = 40
    got = {}

    def waiter(i):
        got[i] = emu.poll(f"vm-fleet-{i}", 20, timeout=30)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    time.sleep(0.5)
    params = {"Action": "AssociateInstancesKeyPairs", "KeyIds.1": "kp1"}
    params.update({f"InstanceIds.{i + 1}": f"vm-fleet-{i}" for i in range(n)})
    st, body, text, _ = emu.cvm(params, method="POST")
    for th in threads:
        th.join(30)
    ok = st == 200 and all(tasks_of(got.get(i, (0, None, "", 0))) is not None
                           and len(tasks_of(got[i])) == 1
                           and tasks_of(got[i])[0]["server"]["id"] == f"vm-fleet-{i}" for i in range(n))
    check(f"{n} concurrent polls each get their own task", ok, f"{st} {text}")


def check_results(emu):
    tid = associate(emu, "kp1", {"id": "vm-res"})
    emu.poll("vm-res", 1)
    bad = [("task_id mismatch", {"task_id": "other", "status": "SUCCESS"}),
           ("bad status", {"task_id": tid, "status": "DONE"}),
           ("FAILED without error_code", {"task_id": tid, "status": "FAILED", "error_msg": "x"}),
           ("error_code not a string", {"task_id": tid, "status": "FAILED", "error_code": 1, "error_msg": "x"}),
           ("not an object", [tid])]
    for label, payload in bad:
        st, body, text, _ = emu.result("vm-res", tid, payload)
        check(f"result {label} -> 400", st == 400, f"{st} {text}")
    st, body, text, _ = emu.result("vm-other", tid, {"task_id": tid, "status": "SUCCESS"})
    check("result for another server's task -> 404", st == 404 and body.get("error_code") == "KPS.0004",
          f"{st} {text}")
    st, body, text, _ = emu.result("vm-res", "no-such-task", {"task_id": "no-such-task", "status": "SUCCESS"})
    check("result for an unknown task -> 404", st == 404, f"{st} {text}")
    st, body, _, _ = emu.task(tid)
    check("refused results store nothing", body.get("task_status") == "RUNNING_RESET"
          and body.get("result_posts") == 0, f"{body}")
    st, body, text, _ = emu.task("no-such-task")
    check("ListKeypairTask of an unknown task -> 404", st == 404 and body.get("error_code") == "KPS.0004",
          f"{st} {text}")


def check_lists(emu):
    st, running, text, _ = emu.api("GET", "/running-tasks")
    statuses = [t["task_status"] for t in running.get("tasks", [])]
    check("running-tasks lists READY_ and RUNNING_ only", st == 200 and running.get("total") == len(statuses) > 0
          and all(s.startswith(("READY_", "RUNNING_")) for s in statuses), text[:300])
    ready = associate(emu, "kp1", {"id": "vm-list"})
    _, running2, _, _ = emu.api("GET", "/running-tasks")
    check("running-tasks includes a READY task", running2.get("total") == running.get("total") + 1
          and running2["tasks"][-1]["task_id"] == ready
          and running2["tasks"][-1]["task_status"] == "READY_RESET", f"{running2.get('total')}")
    st, failed, text, _ = emu.api("GET", "/failed-tasks")
    ids = [t["task_id"] for t in failed.get("tasks", [])]
    check("failed-tasks lists the failed task", st == 200 and failed.get("total") == len(ids) >= 1
          and emu.failed_tid in ids and all(t["task_status"].startswith("FAILED_") for t in failed["tasks"])
          and failed["tasks"][0].get("error_code") == "KPS.AGENT.AUTH_FAILED", text)
    _, page, _, _ = emu.api("GET", "/running-tasks?limit=2&offset=1")
    check("running-tasks limit and offset", page.get("total") == running2.get("total")
          and [t["task_id"] for t in page.get("tasks", [])] == [t["task_id"] for t in running2["tasks"][1:3]],
          f"{page}")


def check_fail_results(exe):
    emu = Emulator(exe, "--fail-results", "2")
    try:
        emu.api("POST", "/keypairs", {"keypair": {"name": "kp1", "public_key": PUB1}})
        tid = associate(emu, "kp1", {"id": "vm-flaky"})
        emu.poll("vm-flaky", 1)
        res = {"task_id": tid, "server_id": "vm-flaky", "status": "SUCCESS"}
        codes = [emu.result("vm-flaky", tid, res)[0] for _ in range(3)]
        check("--fail-results 2: 503, 503, then 200", codes == [503, 503, 200], f"{codes}")
        _, body, _, _ = emu.task(tid)
        check("--fail-results: stored once", body.get("task_status") == "SUCCESS_RESET"
              and body.get("result_posts") == 1, f"{body}")
    finally:
        rc, _, _ = emu.stop()
        check("--fail-results instance exits 0 on SIGTERM", rc == 0, f"{rc}")


def check_redelivery(exe):
    emu = Emulator(exe, "--redeliver-ms", "800")
    try:
        emu.api("POST", "/keypairs", {"keypair": {"name": "kp1", "public_key": PUB1}})
        tid = associate(emu, "kp1", {"id": "vm-lost"})
        first = tasks_of(emu.poll("vm-lost", 1))
        st, _, _, _ = emu.poll("vm-lost", 0)
        again = emu.poll("vm-lost", 5)
        check("an unanswered task is handed out again", first and first[0]["task_id"] == tid and st == 204
              and tasks_of(again) == first and 0.4 < again[3] < 2.5, f"{again}")
    finally:
        emu.stop()


def check_delay(exe):
    emu = Emulator(exe, "--delay-ms", "400")
    try:
        st, _, _, elapsed = emu.api("GET", "/running-tasks")
        check("--delay-ms delays the answer", st == 200 and elapsed >= 0.38, f"{st} after {elapsed:.2f}s")
        s = socket.create_connection(("127.0.0.1", emu.port))
        body = json.dumps({"keypair": {"name": "kp1", "public_key": PUB1}})
        s.sendall((f"POST /v3/{PROJECT}/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {API_TOKEN}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        time.sleep(0.1)
        s.close()
        time.sleep(0.6)
        st, _, _, _ = emu.api("GET", "/running-tasks")
        check("client leaving during the delay is harmless", st == 200 and emu.proc.poll() is None, f"{st}")
    finally:
        rc, _, _ = emu.stop()
        check("--delay-ms instance exits 0 on SIGTERM", rc == 0, f"{rc}")


def check_usage(exe):
    for label, args in (("no tokens", ["--listen", "127.0.0.1:0"]),
                        ("bad listen", ["--listen", "127.0.0.1", "--api-token", "a", "--agent-token", "b"]),
                        ("bad number", ["--listen", "127.0.0.1:0", "--api-token", "a", "--agent-token", "b",
                                        "--delay-ms", "x"])):
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
        check(f"usage error ({label}) exits 2", p.returncode == 2 and p.stdout == "" and "usage" in p.stderr,
              f"{p.returncode} {p.stderr!r}")


def main():
    exe = sys.argv[1]
    emu = Emulator(exe)
    sections = [check_startup, check_auth, check_import, check_malformed, check_associate, check_disassociate,
                check_batch, check_long_poll, check_client_gone, check_many_polls, check_results, check_lists]
    try:
        for section in sections:
            try:
                section(emu)
            except Exception as e:  # a broken precondition fails the section, not the run
                check(section.__name__, False, f"{type(e).__name__}: {e}")
    finally:
        rc, out, err = emu.stop()
    check("exits 0 on SIGTERM", rc == 0, f"{rc}")
    check("stdout is the one line", out == "", repr(out[:200]))
    check("no secret on stdout or stderr", SECRET not in out + err and "never-logged" not in out + err,
          repr(err[:200]))
    for section in (check_fail_results, check_redelivery, check_delay, check_usage):
        try:
            section(exe)
        except Exception as e:
            check(section.__name__, False, f"{type(e).__name__}: {e}")
    print(f"{passes} passed, {len(failures)} failed")
    if failures:
        print("failed: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
