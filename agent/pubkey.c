/* SSH public keys as authorized_keys lines carry them. The blob is
 * decoded and checked here (sshwire.c), the fingerprint taken with
 * libcrypto: a key that sshd would read differently from the agent must
 * never be written. No libssh, so that whatever parses tasks need not load
 * it. Pure: no file I/O. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pubkey.h"
#include "sshwire.h"
#include "task.h"

/* sshd refuses smaller RSA keys (RequiredRSASize); refuse them up front so
 * a task fails as invalid rather than at the probe after a reload. */
#define RSA_MIN_BITS 1024
#define FINGERPRINT_PREFIX "SHA256:"
#define FINGERPRINT_B64_LEN 43	/* 32 bytes, base64 without padding */
#define ED25519_KEY_LEN 32

/* The key types the agent writes and recognises. Certificates are left
 * out: a task carries a plain key, and a certificate line stays opaque. */
enum key_kind { KEY_ED25519, KEY_RSA, KEY_ECDSA };

struct key_type {
	const char *name;
	enum key_kind kind;
	const char *curve;	/* the curve an ECDSA blob must name */
	int nid;		/* and libcrypto's name for it */
	bool sk;		/* a security key: an application string follows */
};

static const struct key_type key_types[] = {
	{ "ssh-ed25519", KEY_ED25519, NULL, 0, false },
	{ "ssh-rsa", KEY_RSA, NULL, 0, false },
	{ "ecdsa-sha2-nistp256", KEY_ECDSA, "nistp256", NID_X9_62_prime256v1, false },
	{ "ecdsa-sha2-nistp384", KEY_ECDSA, "nistp384", NID_secp384r1, false },
	{ "ecdsa-sha2-nistp521", KEY_ECDSA, "nistp521", NID_secp521r1, false },
	{ "sk-ssh-ed25519@openssh.com", KEY_ED25519, NULL, 0, true },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", KEY_ECDSA, "nistp256", NID_X9_62_prime256v1, true },
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

bool pubkey_base64_valid(const char *s, size_t len)
{
	return sshwire_base64_valid(s, len);
}

/* The point of an ECDSA key, on the curve its type names, written again
 * uncompressed: sshd refuses a point off the curve, and ssh-keygen
 * fingerprints the point as it writes it, whichever form it was read in. */
static int ec_point_put(int nid, const unsigned char *q, size_t qlen, struct sshwire_out *o)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
	EC_POINT *pt = g ? EC_POINT_new(g) : NULL;
	unsigned char u[1 + 2 * 66];	/* P-521's uncompressed point */
	size_t ulen = 0;
	if (pt && EC_POINT_oct2point(g, pt, q, qlen, NULL) == 1)
		ulen = EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, u, sizeof(u), NULL);
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	return ulen > 0 ? sshwire_put_string(o, u, ulen) : -EINVAL;
}

/* The fields after the type name: a key of the kind the name says, in the
 * shape sshd reads it, written to o as ssh-keygen writes them again. */
static int blob_fields(const struct key_type *kt, struct sshwire *w, struct sshwire_out *o)
{
	const unsigned char *s, *e;
	size_t n, elen;
	switch (kt->kind) {
	case KEY_ED25519:
		if (sshwire_string(w, &s, &n) < 0 || n != ED25519_KEY_LEN || sshwire_put_string(o, s, n) < 0)
			return -EINVAL;
		break;
	case KEY_RSA:	/* e, n: numbers, whatever zero bytes led them */
		if (sshwire_mpint(w, &e, &elen) < 0 || sshwire_mpint(w, &s, &n) < 0 || elen == 0 ||
		    sshwire_bits(s, n) < RSA_MIN_BITS || sshwire_put_mpint(o, e, elen) < 0 ||
		    sshwire_put_mpint(o, s, n) < 0)
			return -EINVAL;
		break;
	case KEY_ECDSA:	/* curve, point */
		if (sshwire_string_eq(w, kt->curve) < 0 || sshwire_put_string(o, kt->curve, strlen(kt->curve)) < 0 ||
		    sshwire_string(w, &s, &n) < 0 || ec_point_put(kt->nid, s, n, o) < 0)
			return -EINVAL;
		break;
	}
	/* A security key's blob ends with its application string. */
	if (kt->sk && (sshwire_string(w, &s, &n) < 0 || sshwire_put_string(o, s, n) < 0))
		return -EINVAL;
	return sshwire_end(w) ? 0 : -EINVAL;
}

/* The blob's own type name, curve and shape are checked here, not taken
 * from the type the line claims: "ssh-rsa <blob named ssh-ed25519>" would
 * fingerprint a key sshd never sees. The fingerprint is ssh-keygen -l's:
 * SHA-256 of the key's blob as ssh-keygen writes it, base64 without
 * padding. */
static int blob_check(const struct key_type *kt, const char *b64, size_t len, char **fingerprint)
{
	/* pubkey_base64_valid let through only whole groups of four; said
	 * again here for the analyzer, which no longer sees that check. */
	if (len < 4)
		return -EINVAL;
	/* Written again, a number may gain a zero byte, a point its other half. */
	size_t cap = len / 4 * 3 + 256;
	_cleanup_free_ unsigned char *blob = malloc(len / 4 * 3);
	_cleanup_free_ unsigned char *canon = malloc(cap);
	size_t n;
	if (!blob || !canon)
		return -ENOMEM;
	if (sshwire_base64_decode(b64, len, false, blob, &n) < 0)
		return -EINVAL;
	struct sshwire w = { blob, n };
	struct sshwire_out o = { canon, 0, cap };
	if (sshwire_string_eq(&w, kt->name) < 0 || sshwire_put_string(&o, kt->name, strlen(kt->name)) < 0 ||
	    blob_fields(kt, &w, &o) < 0)
		return -EINVAL;
	unsigned char hash[SHA256_DIGEST_LENGTH];
	char b64hash[FINGERPRINT_B64_LEN + 2];
	if (EVP_Digest(canon, o.n, hash, NULL, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	sshwire_base64_encode_nopad(hash, sizeof(hash), b64hash);
	return asprintf(fingerprint, "%s%s", FINGERPRINT_PREFIX, b64hash) < 0 ? -ENOMEM : 0;
}

bool pubkey_fingerprint_valid(const char *s, size_t len)
{
	size_t plen = strlen(FINGERPRINT_PREFIX);
	if (len != plen + FINGERPRINT_B64_LEN || memcmp(s, FINGERPRINT_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < len; i++)
		if (sshwire_base64_value(s[i]) < 0)
			return false;
	return true;
}

int pubkey_from_parts(const char *type, size_t tlen, const char *b64, size_t blen, const char *comment,
		      size_t clen, struct pubkey *key)
{
	const struct key_type *kt = key_type_find(type, tlen);
	if (!kt || !pubkey_base64_valid(b64, blen))
		return -EINVAL;
	_cleanup_(pubkey_free) struct pubkey k = { 0 };
	int r = blob_check(kt, b64, blen, &k.fingerprint);
	if (r < 0)
		return r;
	k.type = strndup(type, tlen);
	k.base64 = strndup(b64, blen);
	if (comment && clen > 0)
		k.comment = strndup(comment, clen);
	if (!k.type || !k.base64 || (comment && clen > 0 && !k.comment))
		return -ENOMEM;
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
