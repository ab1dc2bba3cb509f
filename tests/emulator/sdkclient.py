"""The clouds' real Node SDKs (tests/emulator/sdk, installed by
tests/setup.sh with npm ci), called through sdk/call.js the way a
control-plane developer's code calls them; and a sandbox whose sshd keeps
root's keys inside it, for an agent per instance. Used by sdk_check.py and
tests/demo.py."""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.join(HERE, "sdk")
CALL_JS = os.path.join(SDK_DIR, "call.js")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import sandbox as sb  # noqa: E402

PACKAGES = ("tencentcloud-sdk-nodejs-cvm", "tencentcloud-sdk-nodejs-common", "@huaweicloud/huaweicloud-sdk-core")


class SdkMissing(Exception):
    pass


def versions():
    """{package: installed version}; SdkMissing when node or a package is
    not there (tests/setup.sh installs them)."""
    if not shutil.which("node"):
        raise SdkMissing("node is not installed: run tests/setup.sh")
    out = {}
    for name in PACKAGES:
        path = os.path.join(SDK_DIR, "node_modules", name, "package.json")
        try:
            with open(path) as f:
                out[name] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            raise SdkMissing(f"{name} is not installed in {SDK_DIR}: run tests/setup.sh") from None
    return out


def _run(args):
    p = subprocess.run(["node", CALL_JS, *args], capture_output=True, text=True, timeout=120, cwd=SDK_DIR)
    for line in p.stdout.splitlines():
        if line.startswith("KPS-SDK-RESULT "):
            return json.loads(line[len("KPS-SDK-RESULT "):])
    raise RuntimeError(f"call.js {args[0]} {args[4] if len(args) > 4 else ''} exited {p.returncode}: "
                       f"{p.stderr[-1500:]}")


class Tencent:
    """tencentcloud-sdk-nodejs-cvm's CvmClient pointed at the emulator."""

    def __init__(self, url, secret_id, secret_key, sign_method="TC3-HMAC-SHA256"):
        self.endpoint = url.split("://", 1)[-1]
        self.secret_id, self.secret_key, self.sign_method = secret_id, secret_key, sign_method

    def call(self, action, params):
        """{"ok": True, "response": {...}} or {"ok": False, "code", "message"}."""
        return _run(["tencent", self.endpoint, self.secret_id, self.secret_key, action, json.dumps(params),
                     self.sign_method])


class Huawei:
    """@huaweicloud/huaweicloud-sdk-core's HcClient with its AK/SK signer."""

    def __init__(self, url, ak, sk, project):
        self.url, self.ak, self.sk, self.project = url, ak, sk, project

    def call(self, method, path, body=None):
        """path with {project_id}; {"ok", "status", "response"} or {"ok": False, "status", "code", "message"}."""
        args = ["huawei", self.url, self.ak, self.sk, self.project, method, path]
        return _run(args + ([json.dumps(body)] if body is not None else []))


def sandbox_for_root(name, server_id=None):
    """A sandbox sshd for root whose AuthorizedKeysFile lies inside it, so
    that several instances side by side each have their own keys."""
    box = sb.Sandbox(name, user="root", keys_file="/nonexistent/%u", start=False, server_id=server_id)
    keys_dir = os.path.join(box.dir, "authorized_keys")
    os.mkdir(keys_dir, 0o755)
    box.keys_file = keys_dir + "/%u"
    with open(box.sshd_config) as f:
        text = f.read().replace("/nonexistent/%u", box.keys_file)
    with open(box.sshd_config, "w") as f:
        f.write(text)
    box.start_sshd()
    return box
