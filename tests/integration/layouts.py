#!/usr/bin/env python3
"""The distributions' sshd layouts as fixtures, each with the real sshd:
associate, disable_password, a port change and back, disassociate, each
followed by real logins. `layouts.py --list` names them; `layouts.py AGENT
NAME` runs one.

Each fixture is the distribution's file tree (main config, drop-ins,
vendor files) under the sandbox, with the sandbox's own settings (port,
host keys, pid file, no PAM) in a drop-in of their own, since sshd reads
relative Includes from its compiled-in /etc/ssh."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as C  # noqa: E402
import sandbox as sb  # noqa: E402

LAYOUTS = {}


def layout(fn):
    LAYOUTS[fn.__name__] = fn
    return fn


def write(root, rel, text, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text.replace("@ROOT@", root))
    os.chmod(path, mode)
    return path


def sandbox_dropin(box):
    """What the sandbox needs, whatever the layout: first in the drop-ins."""
    return (f"Port {box.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {box.keys.get('host_ed25519', 'ed25519')}\nHostKey {box.keys.get('host_ecdsa', 'ecdsa')}\n"
            f"PidFile {box.pidfile}\nUsePAM no\nStrictModes yes\nMaxStartups 100:30:200\nLogLevel VERBOSE\n"
            + sb.PENALTIES_OFF)


CRYPTO_POLICY = ("Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-ctr,aes128-gcm@openssh.com,"
                 "aes128-ctr\nMACs hmac-sha2-256-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-128-etm@openssh.com,"
                 "hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha1,umac-128@openssh.com,hmac-sha2-512\n"
                 "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"
                 "ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha256\n"
                 "PubkeyAcceptedAlgorithms ecdsa-sha2-nistp256,ssh-ed25519,rsa-sha2-256,rsa-sha2-512\n")


@layout
def rhel9(box, root):
    """RHEL 9 / Fedora: the drop-in Include at the top, 50-redhat.conf
    including the crypto-policies back-end, cloud-init's drop-in."""
    write(root, "etc/crypto-policies/back-ends/opensshserver.config", CRYPTO_POLICY)
    write(root, "etc/ssh/sshd_config.d/00-sandbox.conf", sandbox_dropin(box), 0o600)
    write(root, "etc/ssh/sshd_config.d/50-redhat.conf",
          "Include @ROOT@/etc/crypto-policies/back-ends/opensshserver.config\nSyslogFacility AUTHPRIV\n"
          "ChallengeResponseAuthentication no\nGSSAPIAuthentication yes\nGSSAPICleanupCredentials no\n"
          "UsePAM yes\nX11Forwarding yes\nPrintMotd no\n", 0o600)
    write(root, "etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n", 0o600)
    return write(root, "etc/ssh/sshd_config",
                 "#\t$OpenBSD: sshd_config,v 1.104 2021/07/02 05:11:21 dtucker Exp $\n\n"
                 "# To modify the system-wide sshd configuration, create a  *.conf  file under\n"
                 "#  /etc/ssh/sshd_config.d/  which will be automatically included below\n"
                 "Include @ROOT@/etc/ssh/sshd_config.d/*.conf\n\n#Port 22\n#AddressFamily any\n"
                 "#PermitRootLogin prohibit-password\nAuthorizedKeysFile\t.ssh/authorized_keys\n"
                 "#PasswordAuthentication yes\n#PermitEmptyPasswords no\n"
                 "Subsystem\tsftp\t/usr/libexec/openssh/sftp-server\n", 0o600)


@layout
def amazon2023(box, root):
    """Amazon Linux 2023: as RHEL, with EC2 Instance Connect's
    AuthorizedKeysCommand and password login off in the main file."""
    write(root, "etc/crypto-policies/back-ends/opensshserver.config", CRYPTO_POLICY)
    write(root, "etc/ssh/sshd_config.d/00-sandbox.conf", sandbox_dropin(box), 0o600)
    write(root, "etc/ssh/sshd_config.d/50-redhat.conf",
          "Include @ROOT@/etc/crypto-policies/back-ends/opensshserver.config\nSyslogFacility AUTHPRIV\n"
          "ChallengeResponseAuthentication no\nGSSAPIAuthentication yes\nUsePAM yes\nX11Forwarding yes\n", 0o600)
    return write(root, "etc/ssh/sshd_config",
                 "Include @ROOT@/etc/ssh/sshd_config.d/*.conf\n"
                 "AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n"
                 "AuthorizedKeysCommand /opt/aws/bin/eic_run_authorized_keys %u %f\n"
                 "AuthorizedKeysCommandUser nobody\nSubsystem sftp /usr/libexec/openssh/sftp-server\n", 0o600)


@layout
def ubuntu2404(box, root):
    """Ubuntu 24.04: Debian's layout with cloud-init's drop-in turning
    password login on (ssh.socket needs systemd: the VM suite has it)."""
    write(root, "etc/ssh/sshd_config.d/00-sandbox.conf", sandbox_dropin(box))
    write(root, "etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n", 0o600)
    return write(root, "etc/ssh/sshd_config",
                 "\n# This is the sshd server system-wide configuration file.  See\n# sshd_config(5) for more information.\n\n"
                 "Include @ROOT@/etc/ssh/sshd_config.d/*.conf\n\n#Port 22\n"
                 "KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\n"
                 "AcceptEnv LANG LC_* COLORTERM NO_COLOR\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n")


@layout
def suse16(box, root):
    """openSUSE / SLES 16: the vendor config in /usr/etc/ssh, no
    /etc/ssh/sshd_config (creating one would replace the vendor's), admin
    drop-ins in /etc/ssh/sshd_config.d. The agent writes a drop-in of its
    own and never touches /usr."""
    write(root, "etc/ssh/sshd_config.d/00-sandbox.conf", sandbox_dropin(box))
    write(root, "usr/etc/ssh/sshd_config.d/40-suse-crypto-policies.conf",
          "Include @ROOT@/etc/crypto-policies/back-ends/opensshserver.config\n")
    write(root, "etc/crypto-policies/back-ends/opensshserver.config", CRYPTO_POLICY)
    write(root, "usr/etc/ssh/sshd_config.d/50-suse.conf", "KbdInteractiveAuthentication no\nUsePAM yes\n")
    return write(root, "usr/etc/ssh/sshd_config",
                 "Include @ROOT@/etc/ssh/sshd_config.d/*.conf\nInclude @ROOT@/usr/etc/ssh/sshd_config.d/*.conf\n"
                 "#Port 22\nAuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication yes\n"
                 "X11Forwarding yes\nSubsystem sftp /usr/libexec/ssh/sftp-server\n")


@layout
def fedora_coreos(box, root):
    """Fedora CoreOS: every tool owns one file in ~/.ssh/authorized_keys.d.
    Where sshd reads the directory (OpenSSH 10.0 and later) the agent writes
    authorized_keys.d/kps-agent; an older sshd reads a file named "*", and
    the agent writes ~/.ssh/authorized_keys. The other fragments stay."""
    write(root, "etc/ssh/sshd_config.d/00-sandbox.conf", sandbox_dropin(box))
    write(root, "etc/ssh/sshd_config.d/40-disable-passwords.conf", "PasswordAuthentication no\n")
    return write(root, "etc/ssh/sshd_config",
                 "Include @ROOT@/etc/ssh/sshd_config.d/*.conf\n"
                 "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/*\n"
                 "Subsystem sftp /usr/libexec/openssh/sftp-server\n")


def sshd_version():
    out = sb.run([sb.SSHD, "-V"], check=False)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def setup(box, name):
    root = os.path.join(box.dir, "root")
    main = LAYOUTS[name](box, root)
    etc_main = os.path.join(root, "etc/ssh/sshd_config")
    with open(box.agent_config) as f:
        conf = f.read()
    with open(box.agent_config, "w") as f:
        f.write(re.sub(r"(?m)^config = .*$", f"config = {etc_main}", conf))
    box.stop_sshd()
    box.start_sshd(config=main)
    return root, main


def tree(root):
    """Every file of the fixture with its bytes."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return out


def run_layout(box, agent, name):
    root, main = setup(box, name)
    vendor = tree(os.path.join(root, "usr")) if os.path.isdir(os.path.join(root, "usr")) else {}
    fragments = os.path.join(box.home(), ".ssh", "authorized_keys.d")
    C.reset_home(box, C.USER_LINE)
    os.makedirs(fragments, 0o700)
    other = os.path.join(fragments, "ignition")
    with open(other, "w") as f:
        f.write(box.keys.pub("b") + "\n")
    pw = sb.pwd.getpwnam(box.user)
    for p in (fragments, other):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(other, 0o600)

    C.expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a")))
    C.check(box.login_key("a"), f"{name}: the associated key does not log in")
    wildcard = sshd_version() >= (10, 0)
    ours = os.path.join(fragments, "kps-agent") if wildcard else os.path.join(box.home(), ".ssh", "authorized_keys")
    if name == "fedora_coreos":
        with open(ours) as f:
            C.check(box.keys.pub("a").split()[1] in f.read(), f"{name}: the key is not in {ours}")
        with open(other) as f:
            C.check(f.read() == box.keys.pub("b") + "\n", f"{name}: another tool's fragment changed")
        C.check(not os.path.exists(os.path.join(fragments, "*")), f"{name}: a file named '*'")
    else:
        with open(box.keys_path()) as f:
            text = f.read()
        C.check(text.startswith(C.USER_LINE) and box.keys.pub("a").split()[1] in text, f"{name}: authorized_keys")

    # `check` judges the whole candidate, wherever the block goes (the
    # vendor layout's drop-in too), and changes nothing.
    before = tree(root), open(box.keys_path()).read()
    for server in ({"disable_password": True}, {"port": sb.free_port()}):
        task = box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server=server)
        p = subprocess.run([agent, "-c", box.agent_config, "check"], input=json.dumps(task).encode(),
                              capture_output=True, timeout=120)
        out = [l for l in p.stdout.decode().splitlines() if l.strip()]
        res = json.loads(out[-1]) if out else {}
        C.check(p.returncode == 0 and res.get("status") == "SUCCESS",
                f"{name}: check {server}: exit {p.returncode}, {res}")
        C.check(any(c.get("diff") for c in res.get("changes", [])), f"{name}: check {server} shows no change")
        C.check((tree(root), open(box.keys_path()).read()) == before, f"{name}: check {server} changed files")

    C.expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"disable_password": True}))
    C.check(not box.login_password(), f"{name}: password login still on after disable_password")
    C.check("password" not in box.offered_methods(), f"{name}: password still offered")

    new_port = sb.free_port()
    C.expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": new_port}))
    C.check(box.login_key("a", port=new_port), f"{name}: no login on the new port")
    C.check(not sb.port_open(box.port), f"{name}: the old port still answers")
    C.expect(box, agent, box.task(keypair_name="kp1", public_key=box.keys.pub("a"), server={"port": box.port}))
    C.check(box.login_key("a"), f"{name}: no login on the port changed back")

    C.expect(box, agent, box.task("disassociate"))
    C.check(not box.login_key("a"), f"{name}: the key still logs in after disassociate")
    C.check(box.login_password(), f"{name}: password login not restored")

    if vendor:
        C.check(tree(os.path.join(root, "usr")) == vendor, f"{name}: the vendor files under /usr changed")
        C.check(not os.path.exists(os.path.join(root, "etc/ssh/sshd_config")),
                f"{name}: an /etc/ssh/sshd_config that replaces the vendor config")


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(LAYOUTS))
        return 0
    cases = {name: (lambda n: lambda box, agent: run_layout(box, agent, n))(name) for name in LAYOUTS}
    return C.run_main(cases, lambda box: f"sshd log: {box.log}")


if __name__ == "__main__":
    sys.exit(main())
