/* SSH public keys as authorized_keys lines carry them. The blob is checked
 * here, not only by libssh: libssh trusts the type it is told, and a key
 * that sshd would read differently from the agent must never be written.
 * Pure: no file I/O. */
#include <libssh/libssh.h>

#include "pubkey.h"
#include "task.h"

/* sshd refuses smaller RSA keys (RequiredRSASize); refuse them up front so
 * a task fails as invalid rather than at the probe after a reload. */
#define RSA_MIN_BITS 1024
#define FINGERPRINT_PREFIX "SHA256:"
#define FINGERPRINT_B64_LEN 43	/* 32 bytes, base64 without padding */

/* The key types the agent writes and recognises. Certificates are left
 * out: a task carries a plain key, and a certificate line stays opaque. */
struct key_type {
	const char *name;
	const char *curve;	/* the curve an ECDSA blob must name */
	unsigned fields;	/* SSH strings in the blob after the type name */
	bool rsa;
};

static const struct key_type key_types[] = {
	{ "ssh-ed25519", NULL, 1, false },
	{ "ssh-rsa", NULL, 2, true },
	{ "ecdsa-sha2-nistp256", "nistp256", 2, false },
	{ "ecdsa-sha2-nistp384", "nistp384", 2, false },
	{ "ecdsa-sha2-nistp521", "nistp521", 2, false },
	{ "sk-ssh-ed25519@openssh.com", NULL, 2, false },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", "nistp256", 3, false },
};

bool pubkey_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

bool pubkey_has_ctrl(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static bool mem_eq_str(const void *p, size_t len, const char *s)
{
	return s && strlen(s) == len && memcmp(p, s, len) == 0;
}

size_t pubkey_skip_blank(const char *s, size_t len, size_t pos)
{
	while (pos < len && pubkey_is_blank(s[pos]))
		pos++;
	return pos;
}

static size_t skip_word(const char *s, size_t len, size_t pos)
{
	while (pos < len && !pubkey_is_blank(s[pos]))
		pos++;
	return pos;
}

static size_t trim_end(const char *s, size_t start, size_t end)
{
	while (end > start && pubkey_is_blank(s[end - 1]))
		end--;
	return end;
}

void pubkey_split(const char *s, size_t len, size_t pos, struct pubkey_fields *f)
{
	size_t type = pubkey_skip_blank(s, len, pos);
	size_t type_end = skip_word(s, len, type);
	size_t blob = pubkey_skip_blank(s, len, type_end);
	size_t blob_end = skip_word(s, len, blob);
	size_t comment = pubkey_skip_blank(s, len, blob_end);
	*f = (struct pubkey_fields){
		.type = type, .type_len = type_end - type,
		.blob = blob, .blob_len = blob_end - blob,
		.comment = comment, .comment_len = trim_end(s, comment, len) - comment,
	};
}

static const struct key_type *key_type_find(const char *s, size_t len)
{
	for (size_t i = 0; i < ELEMENTSOF(key_types); i++)
		if (mem_eq_str(s, len, key_types[i].name))
			return &key_types[i];
	return NULL;
}

bool pubkey_type_known(const char *s, size_t len)
{
	return key_type_find(s, len) != NULL;
}

/* -1 for anything outside the alphabet, padding included. */
static int b64_sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '/')
		return c == '+' ? 62 : 63;
	return -1;
}

/* Padded to a multiple of four, as ssh-keygen writes it. */
bool pubkey_base64_valid(const char *s, size_t len)
{
	if (len == 0 || len % 4 != 0)
		return false;
	size_t pad = 0;
	while (pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_sextet(s[i]) < 0)
			return false;
	return true;
}

/* s must pass pubkey_base64_valid; out holds len / 4 * 3 bytes. */
static size_t b64_decode(const char *s, size_t len, unsigned char *out)
{
	size_t n = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < len && s[i] != '='; i++) {
		acc = (acc << 6) | (uint32_t)b64_sextet(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

struct reader {
	const unsigned char *p;
	size_t len;
};

static bool reader_string(struct reader *rd, const unsigned char **s, size_t *len)
{
	if (rd->len < 4)
		return false;
	size_t n = (size_t)rd->p[0] << 24 | (size_t)rd->p[1] << 16 | (size_t)rd->p[2] << 8 | rd->p[3];
	if (n > rd->len - 4)
		return false;
	*s = rd->p + 4;
	*len = n;
	rd->p += 4 + n;
	rd->len -= 4 + n;
	return true;
}

static size_t mpint_bits(const unsigned char *p, size_t len)
{
	while (len > 0 && *p == 0) {
		p++;
		len--;
	}
	if (len == 0)
		return 0;
	size_t bits = len * 8;
	for (unsigned char top = 0x80; top && !(*p & top); top >>= 1)
		bits--;
	return bits;
}

/* libssh trusts the type it is told over the one in the blob: it takes
 * "ssh-rsa <blob named ssh-ed25519 holding RSA numbers>" and fingerprints
 * a blob sshd never sees. So the blob's own type name, curve and shape are
 * checked here. */
static int blob_check(const struct key_type *kt, const char *b64, size_t len)
{
	/* pubkey_base64_valid let through only whole groups of four; said
	 * again here for the analyzer, which no longer sees that check. */
	if (len < 4)
		return -EINVAL;
	_cleanup_free_ unsigned char *blob = malloc(len / 4 * 3);
	if (!blob)
		return -ENOMEM;
	struct reader rd = { blob, b64_decode(b64, len, blob) };
	const unsigned char *s;
	size_t n;
	if (!reader_string(&rd, &s, &n) || !mem_eq_str(s, n, kt->name))
		return -EINVAL;
	for (unsigned i = 0; i < kt->fields; i++) {
		if (!reader_string(&rd, &s, &n))
			return -EINVAL;
		if (i == 0 && kt->curve && !mem_eq_str(s, n, kt->curve))
			return -EINVAL;
		if (i == 1 && kt->rsa && mpint_bits(s, n) < RSA_MIN_BITS)
			return -EINVAL;
	}
	return rd.len == 0 ? 0 : -EINVAL;
}

static void ssh_key_freep(ssh_key *k)
{
	if (*k)
		ssh_key_free(*k);
}

static void pubkey_hash_freep(unsigned char **h)
{
	if (*h)
		ssh_clean_pubkey_hash(h);
}

static int fingerprint_make(const char *type, const char *b64, char **ret)
{
	_cleanup_(ssh_key_freep) ssh_key k = NULL;
	enum ssh_keytypes_e t = ssh_key_type_from_name(type);
	if (t == SSH_KEYTYPE_UNKNOWN || ssh_pki_import_pubkey_base64(b64, t, &k) != SSH_OK)
		return -EINVAL;
	if (ssh_key_type(k) != t)
		return -EINVAL;
	_cleanup_(pubkey_hash_freep) unsigned char *hash = NULL;
	size_t hlen = 0;
	if (ssh_get_publickey_hash(k, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK)
		return -EINVAL;
	char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	if (!fp)
		return -ENOMEM;
	*ret = strdup(fp);
	ssh_string_free_char(fp);
	return *ret ? 0 : -ENOMEM;
}

bool pubkey_fingerprint_valid(const char *s, size_t len)
{
	size_t plen = strlen(FINGERPRINT_PREFIX);
	if (len != plen + FINGERPRINT_B64_LEN || memcmp(s, FINGERPRINT_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < len; i++)
		if (b64_sextet(s[i]) < 0)
			return false;
	return true;
}

int pubkey_from_parts(const char *type, size_t tlen, const char *b64, size_t blen, const char *comment,
		      size_t clen, struct pubkey *key)
{
	const struct key_type *kt = key_type_find(type, tlen);
	if (!kt || !pubkey_base64_valid(b64, blen))
		return -EINVAL;
	int r = blob_check(kt, b64, blen);
	if (r < 0)
		return r;

	_cleanup_(pubkey_free) struct pubkey k = { 0 };
	k.type = strndup(type, tlen);
	k.base64 = strndup(b64, blen);
	if (comment && clen > 0)
		k.comment = strndup(comment, clen);
	if (!k.type || !k.base64 || (comment && clen > 0 && !k.comment))
		return -ENOMEM;
	r = fingerprint_make(k.type, k.base64, &k.fingerprint);
	if (r < 0)
		return r;
	*key = k;
	k = (struct pubkey){ 0 };	/* NOLINT(clang-analyzer-deadcode.DeadStores): the _cleanup_ reads it */
	return 0;
}

int pubkey_parse(const char *text, size_t len, struct pubkey *key)
{
	if (!text || !key || len == 0 || len > PUBLIC_KEY_MAX || pubkey_has_ctrl(text, len))
		return -EINVAL;
	struct pubkey_fields f;
	pubkey_split(text, len, 0, &f);
	if (f.blob_len == 0)
		return -EINVAL;
	return pubkey_from_parts(text + f.type, f.type_len, text + f.blob, f.blob_len, text + f.comment,
				 f.comment_len, key);
}

char *pubkey_format(const struct pubkey *key)
{
	char *s = NULL;
	int r;
	if (key->comment)
		r = asprintf(&s, "%s %s %s", key->type, key->base64, key->comment);
	else
		r = asprintf(&s, "%s %s", key->type, key->base64);
	return r < 0 ? NULL : s;
}

void pubkey_free(struct pubkey *key)
{
	if (!key)
		return;
	free(key->type);
	free(key->base64);
	free(key->comment);
	free(key->fingerprint);
	*key = (struct pubkey){ 0 };
}

bool pubkey_equal(const struct pubkey *a, const struct pubkey *b)
{
	return a->type && b->type && a->base64 && b->base64 && streq(a->type, b->type) &&
	       streq(a->base64, b->base64);
}
