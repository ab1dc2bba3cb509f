#!/usr/bin/env python3
"""The README's main command: kps-agent's main job on the embedded default.

A sandbox sshd on a free loopback port, with its own host keys, its own
sshd_config and an AuthorizedKeysFile inside the sandbox; the agent's state
dir in the sandbox too. It associates a key pair (password login off), logs
in with the real ssh client, disassociates, and shows the key refused and
password login offered again. Nothing of the host is touched: no user is
created, no file outside the sandbox is written (but /run/sshd, which sshd
needs), and everything is removed at the end."""

import json
import os
import sys
import time
import uuid

os.environ.setdefault("KPS_TEST_ROOT", "/run/kps-demo")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import sandbox as sb  # noqa: E402


def show(title, obj=None):
    print(f"\n== {title}")
    if obj is not None:
        print(json.dumps(obj, indent=2) if not isinstance(obj, str) else obj)


def main():
    agent = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/kps-agent")
    box = sb.Sandbox("demo", user="root", keys_file="/run/kps-demo/PLACEHOLDER", start=False)
    keys_dir = os.path.join(box.dir, "authorized_keys")
    os.mkdir(keys_dir, 0o755)
    # Point sshd at keys inside the sandbox, then start it.
    box.keys_file = keys_dir + "/%u"
    with open(box.sshd_config) as f:
        text = f.read().replace("/run/kps-demo/PLACEHOLDER", box.keys_file)
    with open(box.sshd_config, "w") as f:
        f.write(text)
    box.start_sshd()
    ok = False
    try:
        print(f"sandbox: {box.dir}\nsshd on 127.0.0.1:{box.port}, keys in {box.keys_file}")
        pub = box.keys.pub("demo-key")
        task = box.task(task_id=str(uuid.uuid4()), keypair_name="newkeypair1", public_key=pub,
                        server={"disable_password": True})
        show("associate task", task)
        t0 = time.monotonic()
        rc, res, err, _ = box.apply(task, agent)
        show(f"result (exit {rc}, {1000 * (time.monotonic() - t0):.0f} ms wall)", res)
        print(err.strip())
        show(f"authorized_keys ({box.keys_path()})", open(box.keys_path()).read().rstrip())
        show("ssh login with the new key", "logged in: " + str(box.login_key("demo-key")))
        show("methods sshd offers now", ",".join(sorted(box.offered_methods())))
        dis = box.task("disassociate", task_id=str(uuid.uuid4()))
        show("disassociate task", dis)
        rc2, res2, err2, _ = box.apply(dis, agent)
        show(f"result (exit {rc2})", res2)
        print(err2.strip())
        refused = not box.login_key("demo-key")
        show("ssh login with the removed key", "refused: " + str(refused))
        show("methods sshd offers now", ",".join(sorted(box.offered_methods())))
        ok = rc == 0 and rc2 == 0 and refused
    finally:
        box.close()
        import shutil
        shutil.rmtree(sb.ROOT, ignore_errors=True)
    print("\ndemo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
