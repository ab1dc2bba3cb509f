/* Signed tasks: the Ed25519 keys of [control_plane] verify_key and the
 * envelope {"signed_task": b64, "signature": b64} a route carries in place
 * of a task when they are set. */
#pragma once

#include "task.h"

#define SIGNATURE_KEY_LEN 32	/* an Ed25519 public key */
#define SIGNATURE_LEN 64
#define SIGNATURE_MAX_KEYS 64
#define SIGNATURE_FILE_MAX ((size_t)64 * 1024)


/* The raw keys, and each made into libcrypto's key once at load: a key's
 * point is decoded then, not for every task. */
struct signature_keys {
	unsigned char (*v)[SIGNATURE_KEY_LEN];	/* the raw Ed25519 public keys */
	size_t n;
};

/* OpenSSH public key lines, "ssh-ed25519 AAAA... [comment]" each; blank
 * lines and # comments are skipped. -EINVAL with the line named in err for
 * anything else, and for a text without a key. */
int signature_keys_parse(const char *text, size_t len, struct signature_keys *ks, char *err, size_t errlen);
/* The same from a file (root's: not writable by others). */
int signature_keys_load(const char *path, struct signature_keys *ks, char *err, size_t errlen);
void signature_keys_free(struct signature_keys *ks);

/* True when sig is an Ed25519 signature over msg by one of ks. */
bool signature_verify(const struct signature_keys *ks, const unsigned char *msg, size_t len,
		      const unsigned char *sig, size_t sig_len);

/* Opens an envelope: 0 and the signed bytes (caller wipes and frees) when
 * the signature verifies; otherwise -1 with res BAD_SIGNATURE, naming the
 * task_id when the bytes parse as a task. */
int signature_unwrap(const struct signature_keys *ks, const char *text, size_t len, char **task, size_t *task_len,
		     struct result *res);
