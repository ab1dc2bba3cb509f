/* authorized_keys text: parse into lines, add and remove the entries the
 * agent manages, serialise. Pure: no file I/O. Lines the agent did not add
 * come back byte for byte and in order. The keys themselves are pubkey.h's;
 * authkeys.c edits the text, authkeysline.c reads one line. */
#pragma once

#include "pubkey.h"
#include "util.h"

#define AUTHKEYS_MARKER "# kps-agent:"

struct authkeys;

/* Never fails on content: any bytes parse (unknown lines are kept as they
 * are). -ENOMEM only. */
int authkeys_parse(const char *text, size_t len, struct authkeys **ret);
void authkeys_free(struct authkeys *ak);

/* Removes the managed entries (marker comment and the key line after it),
 * all of them when names is NULL, else those whose key pair name is in
 * names. Each removed key is appended to removed (when not NULL). */
int authkeys_remove_managed(struct authkeys *ak, const struct strv *names, struct pubkey **removed,
			    size_t *n_removed);
/* Removes every line, managed or not, whose key equals key (options or not).
 * Returns the number of lines removed, or -errno. */
int authkeys_remove_key(struct authkeys *ak, const struct pubkey *key);
/* Appends a managed entry: marker naming key pair and task, then the key. */
int authkeys_add(struct authkeys *ak, const char *keypair, const char *task_id, const struct pubkey *key);
/* The same with OpenSSH's expiry-time="YYYYMMDDHHMMSSZ" option on the key
 * line when expires (unix seconds, UTC) is not 0: sshd itself refuses the
 * key from then on. */
int authkeys_add_expiring(struct authkeys *ak, const char *keypair, const char *task_id, const struct pubkey *key,
			  int64_t expires);

/* A managed entry as it stands: marker and the key line under it. */
struct authkeys_entry {
	char *keypair;
	char *task_id;
	char *fingerprint;	/* "SHA256:..." */
	int64_t expires;	/* the key line's expiry-time, unix seconds; 0 none */
};

/* The managed entries, in file order. */
int authkeys_managed(const struct authkeys *ak, struct authkeys_entry **ret, size_t *n);
/* Removes the managed entries whose expiry-time is at or before now and
 * hands them over in removed (may be NULL). Returns how many went. */
int authkeys_remove_expired(struct authkeys *ak, int64_t now, struct authkeys_entry **removed, size_t *n);
void authkeys_entries_free(struct authkeys_entry *v, size_t n);
/* "YYYYMMDDHHMM[SS][Z]" as sshd reads expiry-time (no Z: local time). */
int authkeys_expiry_parse(const char *s, size_t len, int64_t *ret);
/* True when some line (managed or not) carries this key. */
bool authkeys_has_key(const struct authkeys *ak, const struct pubkey *key);
int authkeys_serialise(const struct authkeys *ak, char **ret, size_t *ret_len);
