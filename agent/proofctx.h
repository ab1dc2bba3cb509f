/* The context and the session of one proof call (proofctx.c). Only
 * proof*.c include this header. */
#pragma once

#include <libssh/libssh.h>

#include "proof.h"

/* Wider than libssh's default: libssh answers DENIED by itself for a key
 * type it will not use, and a probe must hear sshd's answer, not libssh's. */
#define PROOF_PUBKEY_TYPES                                                     \
	"ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,"                 \
	"ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,"                      \
	"sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256,ssh-rsa"

/* The public halves of sshd's host keys, and the host key algorithms that
 * can be checked against them, most preferred first. */
struct proof_pins {
	ssh_key *keys;
	size_t n;
	char algorithms[256];
};

/* One call: where to connect, what to pin, where the message goes. */
struct proof_ctx {
	const struct proof_target *t;
	struct proof_pins pins;
	char ep[128];		/* "127.0.0.1:22", "[::1]:22" */
	int timeout_ms;		/* per exchange; the probe shortens it near its deadline */
	char *msg;
	size_t msglen;
};

enum proof_method {
	PROOF_METHOD_NONE,
	PROOF_METHOD_OFFER,	/* would sshd accept this public key: PK_OK or refusal */
	PROOF_METHOD_SIGN,	/* authenticate with the private key */
	PROOF_METHOD_PASSWORD,
	PROOF_METHOD_KBDINT,
};

void proofctx_session_freep(ssh_session *s);
#define _cleanup_session_ _cleanup_(proofctx_session_freep)

/* Checks the target and fills c in; msg, when given, is emptied. */
enum proof_status proofctx_init(struct proof_ctx *c, const struct proof_target *t, char *msg, size_t msglen);
void proofctx_done(struct proof_ctx *c);
/* Writes the message (when there is a buffer) and returns st. */
enum proof_status proofctx_fail(struct proof_ctx *c, enum proof_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Connects and pins the host key: on success nothing was sent yet but the
 * key exchange. */
enum proof_status proofctx_open(struct proof_ctx *c, ssh_session *ret);
/* One authentication request, answered within c->timeout_ms: an
 * SSH_AUTH_* code. */
int proofctx_auth(const struct proof_ctx *c, ssh_session s, enum proof_method m, ssh_key key, const char *password);
/* sshd hung up instead of answering the refusal that reached MaxAuthTries. */
bool proofctx_hung_up(ssh_session s, int r);
/* Folds an answer into SUCCESS, DENIED, or anything else for no answer. */
int proofctx_answer(ssh_session s, int r);
/* UNREACHABLE, with what went unanswered and libssh's error. */
enum proof_status proofctx_unanswered(struct proof_ctx *c, ssh_session s, const char *what);
/* The methods sshd offers the user (SSH_AUTH_METHOD_*), asked with "none",
 * which as the first request of a session costs no try. */
enum proof_status proofctx_methods(struct proof_ctx *c, ssh_session s, int *methods);
