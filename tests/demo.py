#!/usr/bin/env python3
"""The README's main command: kps-agent's main job on the embedded default.

Starts a sandbox sshd on a free loopback port (own host keys, own
sshd_config, AuthorizedKeysFile inside the sandbox), the control-plane
emulator, and `kps-agent run`. Then, as a cloud user would: imports a key
pair, calls AssociateKeypair with the seed's example body, shows the task's
status and a real ssh login with the new key; calls DisassociateKeypair and
shows the key refused. Nothing of the host is touched: no user is created,
nothing is written outside the sandbox (but /run/sshd, which sshd needs),
and the sandbox is removed at the end.

Usage: demo.py [BUILD_DIR]"""

import json
import os
import sys
import time

os.environ.setdefault("KPS_TEST_ROOT", "/run/kps-demo")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import sandbox as sb  # noqa: E402
from daemon_cases import PROJECT, Agent, ControlPlane  # noqa: E402


def show(title, obj=None):
    print(f"\n== {title}")
    if obj is not None:
        print(obj if isinstance(obj, str) else json.dumps(obj, indent=2))


def sandbox_for_root():
    box = sb.Sandbox("demo", user="root", keys_file="/nonexistent/%u", start=False)
    keys_dir = os.path.join(box.dir, "authorized_keys")
    os.mkdir(keys_dir, 0o755)
    box.keys_file = keys_dir + "/%u"
    with open(box.sshd_config) as f:
        text = f.read().replace("/nonexistent/%u", box.keys_file)
    with open(box.sshd_config, "w") as f:
        f.write(text)
    box.start_sshd()
    return box


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    agent_exe = os.path.join(build, "kps-agent")
    box = sandbox_for_root()
    cp = agent = None
    ok = False
    try:
        cp = ControlPlane(os.path.join(build, "tests", "emulator", "kps-control-plane"))
        agent = Agent(box, agent_exe, cp)
        agent.start()
        print(f"sandbox {box.dir}\n  sshd on 127.0.0.1:{box.port}, keys in {box.keys_file}\n"
              f"  control plane {cp.url}\n  kps-agent run (server {box.server_id})")

        keypair = cp.import_keypair("newkeypair1", box.keys.pub("demo-key"))
        show("CreateKeypair (import)", keypair)
        body = {"keypair_name": "newkeypair1",
                "server": {"id": box.server_id, "disable_password": True}}
        show(f"POST /v3/{PROJECT}/keypairs/associate", body)
        t0 = time.monotonic()
        tid = cp.associate(body)
        task = cp.wait(tid)
        show(f"ListKeypairTask ({1000 * (time.monotonic() - t0):.0f} ms after the call)", task)
        show("authorized_keys", open(box.keys_path()).read().rstrip())
        logged_in = box.login_key("demo-key")
        show("ssh -i demo-key root@127.0.0.1 echo ...", "logged in" if logged_in else "REFUSED")
        show("methods sshd offers now", ",".join(sorted(box.offered_methods())))

        body = {"server": {"id": box.server_id}}
        show(f"POST /v3/{PROJECT}/keypairs/disassociate", body)
        tid2 = cp.disassociate(body)
        task2 = cp.wait(tid2)
        show("ListKeypairTask", task2)
        refused = not box.login_key("demo-key")
        show("ssh -i demo-key root@127.0.0.1 echo ...", "refused" if refused else "STILL LOGS IN")
        show("methods sshd offers now", ",".join(sorted(box.offered_methods())))
        ok = (task["task_status"] == "SUCCESS_RESET" and logged_in and task2["task_status"] == "SUCCESS_UNBIND"
              and refused)
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
