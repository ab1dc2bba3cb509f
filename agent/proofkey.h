/* Keys on the libssh side of a proof (proofkey.c). Only proof*.c include
 * this header. */
#pragma once

#include <libssh/libssh.h>

#include "pubkey.h"
#include "util.h"

void proofkey_freep(ssh_key *k);
#define _cleanup_key_ _cleanup_(proofkey_freep)

/* Frees what proofkey_export_pubkey filled in (pubkey_free's fields), so
 * that a failure never hands the caller half a key. */
void proofkey_pubkey_clear(struct pubkey *k);

/* libssh's passphrase callback that refuses: no KDF runs, no terminal is
 * prompted. */
int proofkey_refuse_passphrase(const char *prompt, char *buf, size_t len, int echo, int verify, void *userdata);

/* "SHA256:..." of a libssh key; NULL on failure. */
char *proofkey_fingerprint(ssh_key key);

/* The private key a task carries: -EKEYREJECTED when it is encrypted (or
 * its OpenSSH header is malformed), -EINVAL when libssh cannot parse it. */
int proofkey_import(const struct secret *cred, ssh_key *ret);

/* The public half of priv as a struct pubkey, fingerprint included. */
int proofkey_export_pubkey(ssh_key priv, struct pubkey *out);
