/* libssh against the local sshd: prove a credential before a change, probe
 * the live sshd after it. Never reads ssh_config; never sends anything
 * before the server's host key matched one of this VM's own. */
#pragma once

#include "authkeys.h"
#include "task.h"
#include "util.h"

struct proof_target {
	const char *address;		/* [sshd] address */
	int port;
	const char *user;
	const struct strv *hostkeys;	/* sshd's HostKey paths (private halves; .pub read first) */
	int timeout_ms;			/* connect and each exchange */
};

enum proof_status {
	PROOF_OK = 0,
	PROOF_REFUSED,		/* sshd answered and refused (credential, or a check failed) */
	PROOF_UNREACHABLE,	/* nothing listens, timeout, protocol failure */
	PROOF_HOSTKEY,		/* the server's host key is none of this VM's */
	PROOF_BAD_CREDENTIAL,	/* the private key does not parse, or is encrypted */
	PROOF_ERROR,		/* local failure (ENOMEM, no host key readable) */
};

/* Authenticates as target->user with a password (falling back to
 * keyboard-interactive) or a private key. For a private key, its public
 * half is returned in *pub (caller frees with pubkey_free). msg gets one
 * line without secrets. */
enum proof_status proof_credential(const struct proof_target *target, enum auth_type type,
				   const struct secret *credential, struct pubkey *pub, char *msg,
				   size_t msglen);

struct proof_expect {
	const struct pubkey *accept;	/* keys sshd must accept for the user */
	size_t n_accept;
	const struct pubkey *refuse;	/* keys sshd must refuse */
	size_t n_refuse;
	int password;			/* -1 no check, 0 withheld, 1 offered */
};

/* Checks the live sshd against expect, retrying with a short backoff until
 * deadline_ms (now_ms() clock): sshd needs a moment after SIGHUP. On failure
 * msg names the check that failed. */
enum proof_status proof_probe(const struct proof_target *target, const struct proof_expect *expect,
			      int64_t deadline_ms, char *msg, size_t msglen);

/* An SSH key exchange at target that shows one of this VM's host keys:
 * sshd answers there, not merely something listening. Nothing is sent but
 * the key exchange. */
enum proof_status proof_handshake(const struct proof_target *target, char *msg, size_t msglen);

/* True when something accepts a TCP connection at address:port within
 * timeout_ms. */
bool proof_port_open(const char *address, int port, int timeout_ms);
