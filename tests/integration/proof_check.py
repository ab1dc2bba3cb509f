#!/usr/bin/env python3
"""Runs proof-check (proof.c driven directly, no agent around it) against a
sandbox sshd: the proofs and probes accept the authorized keys, refuse the
others, see the password state, refuse an impostor's host key, time out on
a port that never speaks, and never run an encrypted key's KDF.

    proof_check.py PROOF_CHECK_BINARY"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases as C  # noqa: E402
import sandbox as sb  # noqa: E402


def main():
    exe = os.path.abspath(sys.argv[1])
    sb.ensure_user()
    box = sb.Sandbox("proof-check")
    impostor = sb.Sandbox("proof-check-impostor")
    ok = False
    try:
        good = [box.keys.get("a"), box.keys.get("pc-ecdsa", "ecdsa")]
        C.reset_home(box, "".join(open(k + ".pub").read() for k in good))
        enc = os.path.join(box.dir, "encrypted")
        sb.run([sb.SSH_KEYGEN, "-q", "-t", "ed25519", "-a", "200", "-N", "a passphrase", "-C", "enc", "-f", enc])
        # The impostor sshd has host keys of its own.
        ikey = os.path.join(impostor.dir, "impostor_host")
        sb.run([sb.SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", ikey])
        with open(impostor.sshd_config) as f:
            text = f.read()
        text = "".join(l + "\n" for l in text.splitlines() if not l.startswith("HostKey "))
        with open(impostor.sshd_config, "w") as f:
            f.write(text + f"HostKey {ikey}\n")
        impostor.stop_sshd()
        impostor.start_sshd()
        argv = [exe, "--port", str(box.port), "--user", box.user,
                "--hostkey", box.keys.get("host_ed25519", "ed25519"), "--hostkey", box.keys.get("host_ecdsa", "ecdsa"),
                "--wrong-key", box.keys.get("b"), "--encrypted-key", enc, "--password-state", "offered",
                "--impostor-port", str(impostor.port)]
        for k in good:
            argv += ["--key", k]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PROOF_PASSWORD=sb.TEST_PASSWORD))
        print(p.stdout + p.stderr)
        ok = p.returncode == 0 and "PASS" in p.stdout and "FAIL" not in p.stdout
    finally:
        impostor.close()
        box.close(keep=not ok)
    print("PASS proof-check" if ok else f"FAIL proof-check; sandbox kept in {box.dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
