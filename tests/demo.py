#!/usr/bin/env python3
"""The README's main command: kps-agent's main job on the embedded default.

Starts a sandbox sshd on a free loopback port (own host keys, own
sshd_config, AuthorizedKeysFile inside the sandbox), the control-plane
emulator, and `kps-agent run`. Then, as a cloud user would: imports a key
pair, calls AssociateKeypair with the seed's example body, shows the task's
status and a real ssh login with the new key and what `kps-agent list`
shows; calls DisassociateKeypair and shows the key refused. Signing is on:
the emulator signs every task it hands out (--sign-key, an ed25519 key made
with ssh-keygen) and the agent takes only tasks that verify against the
public half (verify_key); the agent's log shows the audit records. Nothing of the host is touched: no user is created,
nothing is written outside the sandbox (but /run/sshd, which sshd needs),
and the sandbox is removed at the end.

With --client tencent-sdk or huawei-sdk the cloud user is the cloud's
real Node SDK (tests/emulator/sdk, installed by tests/setup.sh):
tencentcloud-sdk-nodejs-cvm with TC3 signing (ImportKeyPair,
AssociateInstancesKeyPairs, DescribeKeyPairs until the agent has applied
it, DisassociateInstancesKeyPairs), or @huaweicloud/huaweicloud-sdk-core's
HcClient with AK/SK signing (the KPS calls above).

Usage: demo.py [--client api|tencent-sdk|huawei-sdk] [BUILD_DIR]"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KPS_TEST_ROOT", "/run/kps-demo")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, os.path.join(HERE, "emulator"))
import sandbox as sb  # noqa: E402
import sdkclient  # noqa: E402
from daemon_cases import PROJECT, Agent, ControlPlane  # noqa: E402

TENCENT_ID, TENCENT_KEY = "AKIDkpsDemo0000000000000000000000000", "kps-demo-tencent-secret-key"
HUAWEI_AK, HUAWEI_SK = "KPSDEMOAK0000000000", "kps-demo-huawei-secret-key"


def show(title, obj=None):
    print(f"\n== {title}")
    if obj is not None:
        print(obj if isinstance(obj, str) else json.dumps(obj, indent=2))


def wait(cond, timeout=30):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline:
        time.sleep(0.1)
    return cond()


def list_entries(box, agent):
    import subprocess
    p = subprocess.run([agent.exe, "-c", agent.config, "list"], capture_output=True, text=True)
    show("kps-agent list", p.stdout.rstrip())


def login_state(box):
    show("authorized_keys", open(box.keys_path()).read().rstrip() if os.path.exists(box.keys_path()) else "")
    logged_in = box.login_key("demo-key")
    show("ssh -i demo-key root@127.0.0.1 echo ...", "logged in" if logged_in else "refused")
    show("methods sshd offers now", ",".join(sorted(box.offered_methods())))
    return logged_in


def demo_api(cp, box, agent):
    """Huawei KPS over plain HTTP with X-Auth-Token."""
    keypair = cp.import_keypair("newkeypair1", box.keys.pub("demo-key"))
    show("CreateKeypair (import)", keypair)
    body = {"keypair_name": "newkeypair1", "server": {"id": box.server_id, "disable_password": True}}
    show(f"POST /v3/{PROJECT}/keypairs/associate", body)
    t0 = time.monotonic()
    task = cp.wait(cp.associate(body))
    show(f"ListKeypairTask ({1000 * (time.monotonic() - t0):.0f} ms after the call)", task)
    logged_in = login_state(box)
    list_entries(box, agent)
    body = {"server": {"id": box.server_id}}
    show(f"POST /v3/{PROJECT}/keypairs/disassociate", body)
    task2 = cp.wait(cp.disassociate(body))
    show("ListKeypairTask", task2)
    refused = not login_state(box)
    return task["task_status"] == "SUCCESS_RESET" and logged_in and task2["task_status"] == "SUCCESS_UNBIND" and refused


def demo_huawei_sdk(cp, box, agent):
    hw = sdkclient.Huawei(cp.url, HUAWEI_AK, HUAWEI_SK, PROJECT)

    def call(method, path, body=None):
        show(f"HcClient.sendRequest {method} {path}", body)
        r = hw.call(method, path, body)
        show("answer", r)
        return r.get("response") or {}

    def done(tid):
        def status():
            return (hw.call("GET", f"/v3/{{project_id}}/tasks/{tid}").get("response") or {}).get("task_status", "")
        wait(lambda: status().startswith(("SUCCESS_", "FAILED_")))
        return call("GET", f"/v3/{{project_id}}/tasks/{tid}").get("task_status")

    call("POST", "/v3/{project_id}/keypairs", {"keypair": {"name": "newkeypair1",
                                                           "public_key": box.keys.pub("demo-key")}})
    tid = call("POST", "/v3/{project_id}/keypairs/associate",
               {"keypair_name": "newkeypair1", "server": {"id": box.server_id, "disable_password": True}})["task_id"]
    ok = done(tid) == "SUCCESS_RESET" and login_state(box)
    list_entries(box, agent)
    tid = call("POST", "/v3/{project_id}/keypairs/disassociate", {"server": {"id": box.server_id}})["task_id"]
    return ok and done(tid) == "SUCCESS_UNBIND" and not login_state(box)


def demo_tencent_sdk(cp, box, agent):
    tc = sdkclient.Tencent(cp.url, TENCENT_ID, TENCENT_KEY)

    def call(action, params):
        show(f"CvmClient.{action}", params)
        r = tc.call(action, params)
        show("answer", r)
        return r.get("response") or {}

    def bound(key_id):
        r = tc.call("DescribeKeyPairs", {"KeyIds": [key_id]})
        return ((r.get("response") or {}).get("KeyPairSet") or [{}])[0].get("AssociatedInstanceIds")

    key_id = call("ImportKeyPair", {"KeyName": "newkeypair1", "ProjectId": 0,
                                    "PublicKey": box.keys.pub("demo-key")})["KeyId"]
    ids = {"InstanceIds": [box.server_id], "KeyIds": [key_id]}
    call("AssociateInstancesKeyPairs", ids)
    wait(lambda: bound(key_id) == [box.server_id])
    ok = call("DescribeKeyPairs", {"KeyIds": [key_id]})["KeyPairSet"][0]["AssociatedInstanceIds"] == [box.server_id]
    ok = login_state(box) and ok
    list_entries(box, agent)
    call("DisassociateInstancesKeyPairs", ids)
    wait(lambda: bound(key_id) == [])
    ok = call("DescribeKeyPairs", {"KeyIds": [key_id]})["KeyPairSet"][0]["AssociatedInstanceIds"] == [] and ok
    return not login_state(box) and ok


CLIENTS = {"api": demo_api, "tencent-sdk": demo_tencent_sdk, "huawei-sdk": demo_huawei_sdk}


def main():
    ap = argparse.ArgumentParser(description="kps-agent's main job on the embedded default, end to end")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="api",
                    help="the cloud user: plain HTTP (api) or a cloud's real Node SDK")
    ap.add_argument("build", nargs="?", default="build")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    if args.client != "api":
        print("SDKs: " + ", ".join(f"{k} {v}" for k, v in sdkclient.versions().items()))
    agent_exe = os.path.join(build, "kps-agent")
    box = sdkclient.sandbox_for_root("demo")
    cp = agent = None
    ok = False
    try:
        # Signed tasks: the control plane's key signs, the agent verifies.
        sign_key = box.keys.get("control-plane-sign", "ed25519")
        verify_key = os.path.join(box.dir, "verify_key")
        with open(sign_key + ".pub") as src, open(verify_key, "w") as dst:
            dst.write(src.read())
        cp = ControlPlane(os.path.join(build, "tests", "emulator", "kps-control-plane"),
                          "--tencent-secret", f"{TENCENT_ID}:{TENCENT_KEY}", "--huawei-aksk", f"{HUAWEI_AK}:{HUAWEI_SK}",
                          "--sign-key", sign_key)
        agent = Agent(box, agent_exe, cp, extra_conf=f"[control_plane]\nverify_key = {verify_key}\n")
        agent.start()
        print(f"sandbox {box.dir}\n  sshd on 127.0.0.1:{box.port}, keys in {box.keys_file}\n"
              f"  control plane {cp.url}, signing tasks with {sign_key}\n"
              f"  kps-agent run (server {box.server_id}), verify_key {verify_key}\n  client {args.client}")
        ok = CLIENTS[args.client](cp, box, agent)
    finally:
        if agent:
            agent.stop()
            log = open(agent.log).read().strip()
            show("kps-agent log", log)
        if cp:
            cp.close()
        box.close()
        import shutil
        shutil.rmtree(sb.ROOT, ignore_errors=True)
    print("\ndemo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
