/* An SSH public key as it stands on an authorized_keys line: "type base64
 * [comment]". Checked here for type, encoding and blob shape, and
 * fingerprinted as ssh-keygen -l prints it. Pure: no file I/O. */
#pragma once

#include "util.h"

/* An SSH public key as it stands on a line: type, base64 blob, comment. */
struct pubkey {
	char *type;		/* "ssh-ed25519", "ecdsa-sha2-nistp256", ... */
	char *base64;		/* the blob as written */
	char *comment;		/* NULL when none */
	char *fingerprint;	/* "SHA256:..." as ssh-keygen -l prints it */
};

/* Parses one public key line "type base64 [comment]" (no options, no
 * newline, no NUL, no control characters) and checks that the blob decodes
 * to a key of that type. Returns 0, -EINVAL or -ENOMEM. */
int pubkey_parse(const char *text, size_t len, struct pubkey *key);
/* "type base64[ comment]" */
char *pubkey_format(const struct pubkey *key);
void pubkey_free(struct pubkey *key);
/* Same key: type and blob equal (the comment does not count). */
bool pubkey_equal(const struct pubkey *a, const struct pubkey *b);

/* The pieces authkeys.c needs to find keys inside lines it otherwise keeps
 * opaque: the same checks pubkey_parse makes, on fields already split. */

/* Where the three fields of "type base64 [comment]" lie, as offsets into
 * the text; an empty field has length 0. */
struct pubkey_fields {
	size_t type, type_len;
	size_t blob, blob_len;
	size_t comment, comment_len;	/* trailing blanks left out */
};

/* Blanks separate fields: space and tab, as sshd reads them. */
bool pubkey_is_blank(char c);
size_t pubkey_skip_blank(const char *s, size_t len, size_t pos);
/* Splits s[pos..len) into fields; blanks before the type are skipped. */
void pubkey_split(const char *s, size_t len, size_t pos, struct pubkey_fields *f);
/* Tab counts as a separator; every other control character is refused. */
bool pubkey_has_ctrl(const char *s, size_t len);
/* One of the key types the agent writes and recognises. */
bool pubkey_type_known(const char *s, size_t len);
/* Base64 padded to a multiple of four, as ssh-keygen writes it. */
bool pubkey_base64_valid(const char *s, size_t len);
/* "SHA256:" and 43 characters of base64. */
bool pubkey_fingerprint_valid(const char *s, size_t len);
/* The checks behind pubkey_parse, on pieces already split; comment may be
 * NULL. 0, -EINVAL or -ENOMEM. */
int pubkey_from_parts(const char *type, size_t tlen, const char *b64, size_t blen, const char *comment,
		      size_t clen, struct pubkey *key);
