"""A sandbox for one test: its own sshd on a free loopback port, its own
sshd_config with a drop-in directory, its own agent config and state dir,
and a test user whose authorized_keys the agent edits. Used by the
integration tests, the benchmarks and the demo; touches nothing else of the
host except the test user's ~/.ssh (tests only) or, for the demo, nothing."""

import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
# KPS_TEST_USER keeps two checkouts' test runs on one machine out of each
# other's home directory.
TEST_USER = os.environ.get("KPS_TEST_USER", "kpstest")
TEST_PASSWORD = "Kps-Test-Pass-1"
# Under /run: root-owned and not world-writable all the way up, as the
# agent's StrictModes checks demand (/tmp is 1777 and would be refused).
ROOT = os.environ.get("KPS_TEST_ROOT", "/run/kps-tests")


def sshd_version():
    """(major, minor) of the sshd binary, (0, 0) when it does not say."""
    p = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", p.stdout + p.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


# OpenSSH 9.8+ penalises a source address whose connections end without a
# login: the harness's own port checks and refused logins would get
# 127.0.0.1 penalised and fail later cases. The sandbox sshd turns them off;
# the agent's own handling of them is proven in the VM suite (tests/vm).
PENALTIES_OFF = "PerSourcePenalties no\n" if sshd_version() >= (9, 8) else ""


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def alive(pid):
    """True while pid runs; a zombie (sshd daemonises, so init reaps it) is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def ensure_dir(path, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


class Keys:
    """Client key pairs and sshd host keys, made once per test root."""

    def __init__(self, root):
        self.dir = os.path.join(root, "keys")
        ensure_dir(self.dir, 0o700)

    def get(self, name, kind="ed25519", fmt=None):
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            argv = [SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", name, "-f", path]
            if kind == "rsa":
                argv[4:4] = ["-b", "2048"]
            if fmt:
                argv += ["-m", fmt]
            run(argv)
        return path

    def pub(self, name, kind="ed25519", fmt=None):
        with open(self.get(name, kind, fmt) + ".pub") as f:
            return f.read().strip()

    def private(self, name, kind="ed25519", fmt=None):
        with open(self.get(name, kind, fmt)) as f:
            return f.read()


def ensure_user(name=TEST_USER, password=TEST_PASSWORD):
    try:
        pwd.getpwnam(name)
    except KeyError:
        run(["useradd", "-m", "-s", "/bin/sh", name])
    run(["chpasswd"], input=f"{name}:{password}\n")
    home = pwd.getpwnam(name).pw_dir
    os.chmod(home, 0o750)
    return home


class Sandbox:
    def __init__(self, name, **kw):
        self.name = name
        self._setup(**kw)

    def reconfigure(self, **kw):
        """Starts over with another sshd configuration."""
        self.close()
        self._setup(**kw)
        return self

    def _setup(self, user=TEST_USER, keys_file=".ssh/authorized_keys", extra_sshd="", dropin=None,
                 reload=None, start=True, server_id=None):
        ensure_dir(ROOT, 0o755)
        self.keys = Keys(ROOT)
        self.dir = tempfile.mkdtemp(prefix=f"{self.name}.", dir=ROOT)
        os.chmod(self.dir, 0o755)
        self.user = user
        self.keys_file = keys_file
        self.port = free_port()
        self.server_id = server_id or str(uuid.uuid4())
        self.state = os.path.join(self.dir, "state")
        self.sshd_config = os.path.join(self.dir, "sshd_config")
        self.dropins = os.path.join(self.dir, "sshd_config.d")
        self.pidfile = os.path.join(self.dir, "sshd.pid")
        self.log = os.path.join(self.dir, "sshd.log")
        self.agent_config = os.path.join(self.dir, "kps-agent.conf")
        ensure_dir(self.dropins)
        hostkeys = [self.keys.get("host_ed25519", "ed25519"), self.keys.get("host_ecdsa", "ecdsa")]
        with open(self.sshd_config, "w") as f:
            f.write("# sandbox sshd for kps-agent tests\n"
                    f"Include {self.dropins}/*.conf\n"
                    f"Port {self.port}\n"
                    "ListenAddress 127.0.0.1\n"
                    + "".join(f"HostKey {k}\n" for k in hostkeys) +
                    f"PidFile {self.pidfile}\n"
                    "UsePAM no\n"
                    f"AuthorizedKeysFile {keys_file}\n"
                    "PasswordAuthentication yes\n"
                    "KbdInteractiveAuthentication no\n"
                    "PermitRootLogin prohibit-password\n"
                    "StrictModes yes\n"
                    "MaxStartups 100:30:200\n"
                    "LogLevel VERBOSE\n" + PENALTIES_OFF + extra_sshd)
        if dropin is not None:
            with open(os.path.join(self.dropins, "50-cloud-init.conf"), "w") as f:
                f.write(dropin)
        with open(self.agent_config, "w") as f:
            f.write("[agent]\n"
                    f"state_dir = {self.state}\n"
                    f"user = {user}\n"
                    "[sshd]\n"
                    f"binary = {SSHD}\n"
                    f"config = {self.sshd_config}\n"
                    f"reload = {reload or 'pidfile:' + self.pidfile}\n"
                    "address = 127.0.0.1\n"
                    "[control_plane]\n"
                    f"server_id = {self.server_id}\n"
                    "[channel]\n"
                    "socket =\n")
        os.makedirs("/run/sshd", exist_ok=True)
        if start:
            self.start_sshd()

    # sshd -------------------------------------------------------------
    def start_sshd(self, config=None, port=None, log=None):
        log = log or self.log
        try:
            mark = os.path.getsize(log)
        except OSError:
            mark = 0
        run([SSHD, "-f", config or self.sshd_config, "-E", log])
        deadline = time.time() + 5
        while time.time() < deadline:
            if port_open(port or self.port):
                # The port answering is not enough: an sshd that could not
                # bind (another still there) says so and is gone.
                with open(log, errors="replace") as f:
                    f.seek(mark)
                    if "Cannot bind any address" in f.read():
                        raise RuntimeError(f"sandbox sshd could not bind port {port or self.port}: "
                                           "another sshd still holds it")
                return
            time.sleep(0.01)
        raise RuntimeError("sandbox sshd did not start: " + open(log).read()[-2000:])

    def sshd_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop_sshd(self):
        pid = self.sshd_pid()
        if pid:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
            # Until it is gone (a loaded machine can take seconds): a new
            # sshd on the same port would fail to bind while it lives.
            deadline = time.time() + 30
            while alive(pid):
                if time.time() > deadline:
                    raise RuntimeError(f"sandbox sshd {pid} did not exit within 30 s of SIGTERM")
                time.sleep(0.005)

    def close(self, keep=False):
        self.stop_sshd()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # the agent --------------------------------------------------------
    def task(self, action="associate", **fields):
        t = {"task_id": fields.pop("task_id", str(uuid.uuid4())), "action": action,
             "server": {"id": self.server_id}}
        server = fields.pop("server", None)
        if server:
            t["server"].update(server)
        t.update(fields)
        return t

    def apply(self, task, agent, raw=None, config=None):
        text = raw if raw is not None else json.dumps(task)
        # KPS_AGENT_WRAPPER runs the agent under a tool (CI: valgrind).
        wrapper = shlex.split(os.environ.get("KPS_AGENT_WRAPPER", ""))
        p = subprocess.run(wrapper + [agent, "-c", config or self.agent_config, "apply"], input=text.encode()
                           if isinstance(text, str) else text, capture_output=True, timeout=120)
        out = p.stdout.decode(errors="replace")
        lines = [l for l in out.splitlines() if l.strip()]
        result = json.loads(lines[-1]) if lines and p.returncode in (0, 1) else None
        return p.returncode, result, p.stderr.decode(errors="replace"), out

    # the user's side --------------------------------------------------
    def home(self):
        return pwd.getpwnam(self.user).pw_dir

    def keys_path(self):
        if self.keys_file.startswith("/"):
            return self.keys_file.replace("%u", self.user)
        return os.path.join(self.home(), self.keys_file)

    def ssh_argv(self, port=None, extra=()):
        return [SSH, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-p", str(port or self.port), *extra,
                f"{self.user}@127.0.0.1"]

    def login_key(self, keyname, port=None, kind="ed25519"):
        """A real ssh login with the key; True when it got in and ran a command."""
        key = self.keys.get(keyname, kind)
        p = run(self.ssh_argv(port, ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o",
                                     "PreferredAuthentications=publickey", "-i", key]) + ["echo", "kps-login-ok"],
                check=False, timeout=30)
        return p.returncode == 0 and "kps-login-ok" in p.stdout

    def login_password(self, password=TEST_PASSWORD, port=None):
        p = run(["sshpass", "-p", password] + self.ssh_argv(port, [
            "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1"]) + ["echo", "kps-login-ok"], check=False, timeout=30)
        return p.returncode == 0 and "kps-login-ok" in p.stdout

    def offered_methods(self, port=None):
        """What sshd offers the user, as the ssh client sees it."""
        p = run(self.ssh_argv(port, ["-v", "-o", "BatchMode=yes", "-o", "PreferredAuthentications=none",
                                     "-o", "PubkeyAuthentication=no"]) + ["true"], check=False, timeout=30)
        for line in p.stderr.splitlines():
            if "Authentications that can continue:" in line:
                return set(line.split(":")[-1].strip().split(","))
        return set()
