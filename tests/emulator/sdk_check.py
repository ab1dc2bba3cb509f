#!/usr/bin/env python3
"""The clouds' real SDKs bind and unbind a key on agents through
kps-control-plane: tencentcloud-sdk-nodejs-cvm (API 3.0 with TC3 signing,
and its HmacSHA256 signing) and @huaweicloud/huaweicloud-sdk-core (HcClient
with AK/SK signing), each against `kps-agent run` on two sandbox sshds,
checked with real ssh logins; the same calls with a wrong key are refused
and change nothing. The SDKs come from tests/setup.sh (npm ci in
tests/emulator/sdk); when they are missing this fails, it never skips.

    sdk_check.py PATH/TO/kps-agent PATH/TO/kps-control-plane

Needs root (sandbox sshds under /run/kps-tests)."""

import os
import secrets
import shutil
import sys
import time

# Its own sandbox root: other suites clean /run/kps-tests as they go.
os.environ.setdefault("KPS_TEST_ROOT", "/run/kps-sdk-check")
import sdkclient  # noqa: E402
from sdkclient import Huawei, Tencent, sandbox_for_root  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from daemon_cases import PROJECT, Agent, ControlPlane  # noqa: E402

TENCENT_ID = "AKIDsdkCheck" + "0" * 24
TENCENT_KEY = "sdk-check-tencent-secret-key"
HUAWEI_AK = "SDKCHECKAK0123456789"
HUAWEI_SK = "sdk-check-huawei-secret-key"

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


def wait(cond, timeout=60):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() > deadline:
            return v
        time.sleep(0.2)


def keys_text(box):
    try:
        with open(box.keys_path()) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def emulator_tasks(cp):
    """(running, failed) totals as the emulator's own task lists tell."""
    _, run = cp.call("GET", f"/v3/{PROJECT}/running-tasks")
    _, failed = cp.call("GET", f"/v3/{PROJECT}/failed-tasks")
    return run["total"], failed["total"]


def tencent_flow(cp, boxes):
    tc = Tencent(cp.url, TENCENT_ID, TENCENT_KEY)
    legacy = Tencent(cp.url, TENCENT_ID, TENCENT_KEY, sign_method="HmacSHA256")
    ids = [b.server_id for b in boxes]
    r = tc.call("ImportKeyPair", {"KeyName": "sdk_tencent", "ProjectId": 0, "PublicKey": boxes[0].keys.pub("tc")})
    key_id = (r.get("response") or {}).get("KeyId", "")
    check("Tencent SDK: ImportKeyPair answers a KeyId", r["ok"] and key_id.startswith("skey-"), f"{r}")

    def bound():
        d = tc.call("DescribeKeyPairs", {"KeyIds": [key_id]})
        return sorted(((d.get("response") or {}).get("KeyPairSet") or [{}])[0].get("AssociatedInstanceIds") or [])

    r = tc.call("AssociateInstancesKeyPairs", {"InstanceIds": ids, "KeyIds": [key_id], "ForceStop": False})
    check("Tencent SDK: AssociateInstancesKeyPairs on two instances", r["ok"] and "RequestId" in r["response"], f"{r}")
    got = wait(lambda: bound() == sorted(ids))
    check("Tencent SDK: DescribeKeyPairs shows both instances once their agents applied the tasks", got,
          f"{bound()}")
    for b in boxes:
        check(f"Tencent SDK: the key logs in on {b.server_id}", b.login_key("tc"), keys_text(b))
        check(f"Tencent SDK: password login is off on {b.server_id}", "password" not in b.offered_methods(),
              f"{b.offered_methods()}")
    check("Tencent SDK: no task failed", emulator_tasks(cp) == (0, 0), f"{emulator_tasks(cp)}")

    before = [keys_text(b) for b in boxes]
    wrong = Tencent(cp.url, TENCENT_ID, "not-the-secret-key")
    for client, label in ((wrong, "TC3"), (Tencent(cp.url, TENCENT_ID, "not-the-secret-key", "HmacSHA256"),
                                           "HmacSHA256")):
        r = client.call("DisassociateInstancesKeyPairs", {"InstanceIds": ids, "KeyIds": [key_id]})
        check(f"Tencent SDK ({label}): a wrong SecretKey is refused with AuthFailure.SignatureFailure",
              not r["ok"] and r["code"] == "AuthFailure.SignatureFailure", f"{r}")
    r = Tencent(cp.url, "AKIDsomeoneElse", TENCENT_KEY).call("DescribeKeyPairs", {})
    check("Tencent SDK: an unknown SecretId is refused with AuthFailure.SecretIdNotFound",
          not r["ok"] and r["code"] == "AuthFailure.SecretIdNotFound", f"{r}")
    time.sleep(1)
    check("Tencent SDK: the refused calls changed nothing", emulator_tasks(cp) == (0, 0)
          and [keys_text(b) for b in boxes] == before and bound() == sorted(ids), f"{emulator_tasks(cp)}")

    r = tc.call("DisassociateInstancesKeyPairs", {"InstanceIds": ids[:1], "KeyIds": [key_id]})
    check("Tencent SDK: DisassociateInstancesKeyPairs (TC3)", r["ok"], f"{r}")
    r = legacy.call("DisassociateInstancesKeyPairs", {"InstanceIds": ids[1:], "KeyIds": [key_id]})
    check("Tencent SDK: DisassociateInstancesKeyPairs (HmacSHA256 signing)", r["ok"], f"{r}")
    check("Tencent SDK: DescribeKeyPairs shows no instance once both are unbound", wait(lambda: bound() == []),
          f"{bound()}")
    for b in boxes:
        check(f"Tencent SDK: the key is refused on {b.server_id}", not b.login_key("tc"), keys_text(b))
    check("Tencent SDK: no task failed after the unbind", emulator_tasks(cp) == (0, 0), f"{emulator_tasks(cp)}")


def huawei_flow(cp, boxes):
    hw = Huawei(cp.url, HUAWEI_AK, HUAWEI_SK, PROJECT)
    box = boxes[0]
    r = hw.call("POST", "/v3/{project_id}/keypairs", {"keypair": {"name": "sdk-huawei",
                                                                  "public_key": box.keys.pub("hw")}})
    check("Huawei SDK: CreateKeypair (import)", r["ok"] and r["status"] == 200, f"{r}")

    def task(tid):
        return hw.call("GET", f"/v3/{{project_id}}/tasks/{tid}").get("response") or {}

    def done(tid):
        return wait(lambda: task(tid).get("task_status", "").startswith(("SUCCESS_", "FAILED_"))) and task(tid)

    before = keys_text(box)
    bad = Huawei(cp.url, HUAWEI_AK, "not-the-secret-key", PROJECT)
    for label, method, path, body in (
            ("AssociateKeypair", "POST", "/v3/{project_id}/keypairs/associate",
             {"keypair_name": "sdk-huawei", "server": {"id": box.server_id}}),
            ("DisassociateKeypair", "POST", "/v3/{project_id}/keypairs/disassociate", {"server": {"id": box.server_id}}),
            ("ListKeypairTask", "GET", "/v3/{project_id}/tasks/" + "0" * 8, None)):
        r = bad.call(method, path, body)
        check(f"Huawei SDK: {label} with a wrong SK is refused 401 KPS.0401",
              not r["ok"] and r["status"] == 401 and r["code"] == "KPS.0401", f"{r}")
    time.sleep(1)
    check("Huawei SDK: the refused calls changed nothing", emulator_tasks(cp) == (0, 0) and keys_text(box) == before,
          f"{emulator_tasks(cp)}")

    r = hw.call("POST", "/v3/{project_id}/keypairs/associate",
                {"keypair_name": "sdk-huawei", "server": {"id": box.server_id, "disable_password": True}})
    tid = (r.get("response") or {}).get("task_id", "")
    check("Huawei SDK: AssociateKeypair answers 202 and a task_id", r["ok"] and r["status"] == 202 and tid, f"{r}")
    t = done(tid)
    check("Huawei SDK: ListKeypairTask reads SUCCESS_RESET back", t and t["task_status"] == "SUCCESS_RESET", f"{t}")
    check("Huawei SDK: the key logs in", box.login_key("hw"), keys_text(box))

    r = hw.call("POST", "/v3/{project_id}/keypairs/disassociate", {"server": {"id": box.server_id}})
    tid = (r.get("response") or {}).get("task_id", "")
    check("Huawei SDK: DisassociateKeypair answers 202 and a task_id", r["ok"] and r["status"] == 202 and tid, f"{r}")
    t = done(tid)
    check("Huawei SDK: ListKeypairTask reads SUCCESS_UNBIND back", t and t["task_status"] == "SUCCESS_UNBIND", f"{t}")
    check("Huawei SDK: the key is refused", not box.login_key("hw"), keys_text(box))


def main():
    agent_exe, emulator_exe = sys.argv[1], sys.argv[2]
    try:
        found = sdkclient.versions()
    except sdkclient.SdkMissing as e:
        check("the SDKs are installed", False, str(e))
        return 1
    print("SDKs: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    boxes, agents, cp = [], [], None
    try:
        cp = ControlPlane(emulator_exe, "--tencent-secret", f"{TENCENT_ID}:{TENCENT_KEY}",
                          "--huawei-aksk", f"{HUAWEI_AK}:{HUAWEI_SK}")
        for i in range(2):
            boxes.append(sandbox_for_root(f"sdk{i}", server_id=f"ins-{secrets.token_hex(4)}"))
            agents.append(Agent(boxes[-1], agent_exe, cp))
            agents[-1].start()
        for flow in (tencent_flow, huawei_flow):
            try:
                flow(cp, boxes)
            except Exception as e:  # a broken step fails the flow, not the run
                check(flow.__name__, False, f"{type(e).__name__}: {e}")
    finally:
        for a in agents:
            a.stop()
            if failures and os.path.exists(a.log):
                print(f"--- {a.log}\n" + open(a.log).read()[-3000:])
        if cp:
            cp.close()
            _, err = cp.proc.communicate()
            check("no secret key on the emulator's stderr", TENCENT_KEY not in err and HUAWEI_SK not in err, err[:200])
        for b in boxes:
            b.close()
        shutil.rmtree(sdkclient.sb.ROOT, ignore_errors=True)
    print(f"{passes} passed, {len(failures)} failed")
    if failures:
        print("failed: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
