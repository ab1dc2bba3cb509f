#!/usr/bin/env python3
"""The package's systemd pieces outside a booted system. kps-agent-generator, run as systemd would, on configurations that need
the sandbox opened; then the unit with the drop-ins it wrote, rated by
`systemd-analyze security --offline`: never worse than the unit alone (the
guest's rating, which includes them, is what users see).

    generator_check.py SOURCE_DIR"""

import os
import re
import subprocess
import sys
import tempfile

CONFIGS = {
    "device": "[channel]\ndevice = /dev/virtio-ports/org.kps.agent.0\n",
    "url-ip": "[control_plane]\nurl = http://10.0.2.2:47800\n",
    "url-ip6": "[control_plane]\nurl = https://[fd00::1]:8443/cp\n",
    "url-name": "[control_plane]\nurl = https://cp.example.com/\n",
    "all": "[control_plane]\nurl = http://169.254.169.254\n[channel]\ndevice = /dev/virtio-ports/org.kps.agent.0\n",
    "url-userinfo": "[control_plane]\nurl = https://u:p@192.0.2.7:8443/cp?x=1#f\n",
    "url-and-sshd": "[control_plane]\nurl = http://192.0.2.7/\n[sshd]\naddress = 10.0.0.5\n",
    "sshd-remote": "[sshd]\naddress = 10.0.0.5\n",
    "sshd-remote6": "[sshd]\naddress = fd00::5\n",
    # The resolver reads these as 10.0.0.1 and 8.0.0.1, systemd not at all:
    # a name, not an address to allow.
    "url-short-ipv4": "[control_plane]\nurl = http://10.1:8080/\n",
    "url-leading-zero": "[control_plane]\nurl = http://010.0.0.1/\n",
    "sshd-short-ipv4": "[sshd]\naddress = 10.1\n",
    # Nothing beyond the loopback: no network drop-in at all.
    "loopback-only": "[sshd]\naddress = 127.0.0.2\n[control_plane]\nurl =\n",
}
WANT = {
    "device": ["BindPaths=-/dev/virtio-ports/org.kps.agent.0", "DeviceAllow=char-virtio-portsdev rw"],
    "url-ip": ["IPAddressAllow=10.0.2.2", "After=network-online.target"],
    "url-ip6": ["IPAddressAllow=fd00::1"],
    "url-name": ["IPAddressDeny="],
    "all": ["IPAddressAllow=169.254.169.254", "BindPaths=-/dev/virtio-ports/org.kps.agent.0"],
    "url-userinfo": ["IPAddressAllow=192.0.2.7"],
    "url-and-sshd": ["IPAddressAllow=192.0.2.7 10.0.0.5", "After=network-online.target"],
    "sshd-remote": ["IPAddressAllow=10.0.0.5"],
    "sshd-remote6": ["IPAddressAllow=fd00::5"],
    "url-short-ipv4": ["IPAddressDeny="],
    "url-leading-zero": ["IPAddressDeny="],
    "sshd-short-ipv4": ["IPAddressDeny="],
    "loopback-only": [],
}
# Lines that must not be in the drop-ins: no network-online.target without
# a url, and the unit's IPAddressDeny=any reset only where WANT says so.
NOT_WANTED = {
    "sshd-remote": ["Wants=network-online.target"],
    "sshd-remote6": ["Wants=network-online.target"],
    "loopback-only": ["IPAddressAllow=", "Wants=network-online.target"],
}
# A host name cannot be narrowed to addresses at boot: these may rate
# worse, and say so in their drop-in.
MAY_RATE_WORSE = {"url-name", "url-short-ipv4", "url-leading-zero", "sshd-short-ipv4"}


def score(unit):
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                         capture_output=True, text=True).stdout
    m = re.search(r"exposure level for [^:]*: ([0-9.]+)", out)
    if not m:
        raise SystemExit(f"no score for {unit}: {out[-500:]}")
    return float(m.group(1))


def merged(unit_text, dropins):
    """The unit with drop-in lines added to their sections, as systemd reads them."""
    sections = {}
    order = []
    cur = None
    for line in unit_text.splitlines():
        m = re.match(r"\[(\w+)\]", line)
        if m:
            cur = m.group(1)
            order.append(cur)
            sections[cur] = []
        elif cur:
            sections[cur].append(line)
    for text in dropins:
        cur = None
        for line in text.splitlines():
            m = re.match(r"\[(\w+)\]", line)
            if m:
                cur = m.group(1)
                if cur not in sections:
                    order.append(cur)
                    sections[cur] = []
            elif cur and line and not line.startswith("#"):
                sections[cur].append(line)
    return "".join(f"[{s}]\n" + "\n".join(sections[s]) + "\n\n" for s in order)


def tmpfiles_quiet(src):
    """The package's tmpfiles.d beside systemd 257's own /run/sshd line
    (20-systemd-ssh-generator.conf, Debian 13): created, and no "Duplicate
    line" warning, which systemd-tmpfiles prints for any two lines of one
    path that differ."""
    with tempfile.TemporaryDirectory() as root:
        d = os.path.join(root, "usr/lib/tmpfiles.d")
        os.makedirs(d)
        os.mkdir(os.path.join(root, "run"))
        with open(os.path.join(d, "20-systemd-ssh-generator.conf"), "w") as f:
            f.write("d /run/sshd 0755\n")
        with open(os.path.join(src, "unit/kps-agent.tmpfiles")) as i, open(os.path.join(d, "kps-agent.conf"), "w") as o:
            o.write(i.read())
        r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create"], capture_output=True, text=True)
        ok = "Duplicate" not in r.stderr and os.path.isdir(os.path.join(root, "run/sshd"))
        print(f"{'PASS' if ok else 'FAIL'} tmpfiles beside systemd's /run/sshd line: {r.stderr.strip()}")
        return ok


BLOCK = ("# kps-agent: begin (managed by kps-agent, do not edit)\n{lines}# kps-agent: end\n")
# name: (ports in the agent's block, or None for no block; ssh.socket
# there; a distribution generator there; the block in the vendor drop-in;
# the ListenStream lines wanted, or None for no drop-in)
SOCKET_CASES = {
    "socket-port": ([2222], True, False, False, ["", "2222"]),
    "socket-two-ports": ([2222, 2200], True, False, False, ["", "2222", "2200"]),
    "socket-vendor-dropin": ([2022], True, False, True, ["", "2022"]),
    "socket-no-port-in-block": ([], True, False, False, None),
    "socket-no-block": (None, True, False, False, None),
    "socket-no-unit": ([2222], False, False, False, None),
    "socket-distro-generator": ([2222], True, True, False, None),
}


def socket_dropins(src, tmp):
    """ssh.socket follows the Port lines of the agent's block, only where
    the distribution does not derive the socket from sshd_config itself.
    A Port line outside the block is the administrator's: never copied."""
    gen_in = open(os.path.join(src, "unit/kps-agent-generator.in")).read()
    failed = 0
    for name, (ports, unit, distro, vendor, want) in SOCKET_CASES.items():
        d = os.path.join(tmp, name)
        units, gens, ssh = (os.path.join(d, x) for x in ("units", "generators", "etc/ssh"))
        for x in (units, gens, os.path.join(ssh, "sshd_config.d"), os.path.join(d, "etc/kps-agent"), os.path.join(d, "out")):
            os.makedirs(x)
        with open(os.path.join(d, "etc/kps-agent/kps-agent.conf"), "w") as f:
            f.write(f"[sshd]\nconfig = {ssh}/sshd_config\n")
        if unit:
            open(os.path.join(units, "ssh.socket"), "w").write("[Socket]\nListenStream=22\n")
        if distro:
            g = os.path.join(gens, "sshd-socket-generator")
            open(g, "w").write("#!/bin/sh\n")
            os.chmod(g, 0o755)
        block = "" if ports is None else BLOCK.format(lines="".join(f"Port {p}\n" for p in ports))
        main_text = "Port 2299\nInclude /etc/ssh/sshd_config.d/*.conf\n"
        if vendor:
            open(os.path.join(ssh, "sshd_config.d/00-kps-agent.conf"), "w").write(block)
        else:
            main_text = block + main_text
        open(os.path.join(ssh, "sshd_config"), "w").write(main_text)
        gen = os.path.join(d, "generator")
        text = gen_in.replace("@sysconfdir@", os.path.join(d, "etc"))
        text = re.sub(r'^unit_dirs=.*$', f'unit_dirs="{units}"', text, flags=re.M)
        text = re.sub(r'^generator_dirs=.*$', f'generator_dirs="{gens}"', text, flags=re.M)
        open(gen, "w").write(text)
        out = os.path.join(d, "out")
        r = subprocess.run(["sh", gen, out, out, out], capture_output=True, text=True)
        path = os.path.join(out, "ssh.socket.d/50-kps-agent-port.conf")
        got = None
        if os.path.exists(path):
            got = [l.split("=", 1)[1] for l in open(path).read().splitlines() if l.startswith("ListenStream=")]
            if "[Socket]" not in open(path).read():
                got = ["no [Socket] section"]
        ok = r.returncode == 0 and got == want
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: ListenStream {got}, wanted {want}"
              + (f"; exit {r.returncode}: {r.stderr.strip()}" if r.returncode else ""))
    return failed


RUNTIME_CASES = {
    # name: (ssh.service's text, or None for no unit; drop-in wanted)
    "runtime-debian": ("[Service]\nRuntimeDirectory=sshd\nRuntimeDirectoryMode=0755\n", True),
    "runtime-two-dirs": ("[Service]\nRuntimeDirectory=foo sshd\n", True),
    "runtime-other-dir": ("[Service]\nRuntimeDirectory=sshdx\n", False),
    "runtime-none": ("[Service]\nExecStart=/usr/sbin/sshd -D\n", False),
    "runtime-commented": ("[Service]\n#RuntimeDirectory=sshd\n", False),
    "runtime-no-unit": (None, False),
}


def runtime_dropins(src, tmp):
    """sshd -T needs /run/sshd whether or not sshd runs: where ssh.service
    makes it as its RuntimeDirectory (Debian, Ubuntu), it stays when the
    service stops; nowhere else is ssh.service touched."""
    gen_in = open(os.path.join(src, "unit/kps-agent-generator.in")).read()
    failed = 0
    for name, (unit, want) in RUNTIME_CASES.items():
        d = os.path.join(tmp, name)
        units, out = os.path.join(d, "units"), os.path.join(d, "out")
        os.makedirs(units)
        os.makedirs(out)
        if unit is not None:
            open(os.path.join(units, "ssh.service"), "w").write(unit)
        gen = os.path.join(d, "generator")
        text = gen_in.replace("@sysconfdir@", os.path.join(d, "etc"))
        text = re.sub(r'^unit_dirs=.*$', f'unit_dirs="{units}"', text, flags=re.M)
        open(gen, "w").write(text)
        r = subprocess.run(["sh", gen, out, out, out], capture_output=True, text=True)
        path = os.path.join(out, "ssh.service.d/50-kps-agent-runtime.conf")
        got = os.path.exists(path) and re.search(r"^\[Service\]\nRuntimeDirectoryPreserve=yes$",
                                                 open(path).read(), re.M) is not None
        left = os.path.exists(os.path.join(out, "ssh.service.d")) and not got
        ok = r.returncode == 0 and got == want and not left
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: RuntimeDirectoryPreserve drop-in {got}, wanted {want}"
              + (f"; exit {r.returncode}: {r.stderr.strip()}" if r.returncode else ""))
    return failed


def main():
    src = sys.argv[1]
    unit_text = open(os.path.join(src, "unit/kps-agent.service")).read()
    base = score(os.path.join(src, "unit/kps-agent.service"))
    gen_in = open(os.path.join(src, "unit/kps-agent-generator.in")).read()
    # The whole script parses (sh runs it line by line and would stop at
    # an early exit before finding a broken tail).
    failed = subprocess.run(["sh", "-n", os.path.join(src, "unit/kps-agent-generator.in")]).returncode != 0
    print("FAIL sh -n" if failed else "PASS sh -n")
    failed += not tmpfiles_quiet(src)
    with tempfile.TemporaryDirectory() as tmp:
        failed += socket_dropins(src, tmp)
        failed += runtime_dropins(src, tmp)
        for name, conf in CONFIGS.items():
            d = os.path.join(tmp, name)
            os.makedirs(os.path.join(d, "etc/kps-agent"))
            with open(os.path.join(d, "etc/kps-agent/kps-agent.conf"), "w") as f:
                f.write(conf)
            gen = os.path.join(d, "generator")
            with open(gen, "w") as f:
                f.write(gen_in.replace("@sysconfdir@", os.path.join(d, "etc")))
            out = os.path.join(d, "out")
            os.mkdir(out)
            subprocess.run(["sh", gen, out, out, out], check=True)
            ddir = os.path.join(out, "kps-agent.service.d")
            names = sorted(os.listdir(ddir)) if os.path.isdir(ddir) else []
            dropins = [open(os.path.join(ddir, f)).read() for f in names]
            text = "".join(dropins)
            missing = [w for w in WANT[name] if not re.search("^" + re.escape(w) + "$", text, re.M)]
            # The unit's IPAddressDeny=any stays unless a name forces it open;
            # an IPAddressAllow= line narrows, so none beside a reset.
            unwanted = list(NOT_WANTED.get(name, []))
            if "IPAddressDeny=" not in WANT[name]:
                unwanted.append("IPAddressDeny=")
            else:
                unwanted.append("IPAddressAllow=")
            missing += [f"no {u}" for u in unwanted if re.search("^" + re.escape(u), text, re.M)]
            bad = "PrivateDevices=no" in text
            unit = os.path.join(d, "kps-agent.service")
            with open(unit, "w") as f:
                f.write(merged(unit_text, dropins))
            s = score(unit)
            worse = s > base and name not in MAY_RATE_WORSE
            ok = not missing and not bad and not worse
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name}: rated {s} (unit alone {base})"
                  + (f"; missing {missing}" if missing else "") + ("; PrivateDevices=no" if bad else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
