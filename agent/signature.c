/* Ed25519 verification of signed tasks (libcrypto's EVP_PKEY_ED25519).
 * This runs where tasks are taken in, before anything in the task is
 * trusted: the bytes are parsed only after their signature verified, and
 * a refusal names the task_id only to report it. The keys are read by
 * sigkeys.c, without libcrypto: the monitor checks them at start. */
#include <openssl/evp.h>

#include "signature.h"
#include "sshwire.h"

bool signature_verify(const struct signature_keys *ks, const unsigned char *msg, size_t len,
		      const unsigned char *sig, size_t sig_len)
{
	bool ok = false;
	if (sig_len != SIGNATURE_LEN)
		return false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	for (size_t i = 0; ctx && !ok && i < ks->n; i++) {
		EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, ks->v[i], SIGNATURE_KEY_LEN);
		ok = pk && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
		     EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1;
		EVP_PKEY_free(pk);
		EVP_MD_CTX_reset(ctx);
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* A refusal still reaches the right task: the id is read from the bytes,
 * trusted for nothing else. */
static int refuse(struct result *res, const unsigned char *bytes, size_t len, const char *why)
{
	if (bytes && len > 0) {
		struct task t = { 0 };
		struct result peek;
		result_init(&peek);
		task_parse((const char *)bytes, len, &t, &peek);
		memcpy(res->task_id, peek.task_id, sizeof(res->task_id));
		task_free(&t);
		result_free(&peek);
	}
	return result_fail(res, ERR_BAD_SIGNATURE, "%s", why);
}

static void root_wipe_deletep(cJSON **root)
{
	task_json_wipe_delete(*root);
}

static const cJSON *member(const cJSON *o, const char *name)
{
	const cJSON *found = NULL, *c;
	cJSON_ArrayForEach(c, o) {
		if (!c->string || !streq(c->string, name))
			continue;
		if (found)
			return NULL;	/* twice: which one was signed? */
		found = c;
	}
	return found;
}

static int envelope_fields(const cJSON *root, const char **task, const char **sig)
{
	if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) != 2)
		return -EINVAL;
	const cJSON *t = member(root, "signed_task"), *s = member(root, "signature");
	if (!cJSON_IsString(t) || !cJSON_IsString(s))
		return -EINVAL;
	*task = t->valuestring;
	*sig = s->valuestring;
	return 0;
}

/* The bytes may hold a password or a private key. */
static int unwrap_done(unsigned char *bytes, size_t cap, int r)
{
	explicit_bzero(bytes, cap);
	free(bytes);
	return r;
}

int signature_unwrap(const struct signature_keys *ks, const char *text, size_t len, char **task, size_t *task_len,
		     struct result *res)
{
	if (!text || len == 0 || len > (size_t)TASK_MAX_BYTES * 2 || memchr(text, '\0', len))
		return refuse(res, NULL, 0, "not a signed task");
	const char *end = NULL;
	_cleanup_(root_wipe_deletep) cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	const char *b64_task, *b64_sig;
	while (end && end < text + len && strchr(" \t\r\n", *end))
		end++;
	if (!root || end != text + len || envelope_fields(root, &b64_task, &b64_sig) < 0)
		return refuse(res, (const unsigned char *)text, len,
			      "verify_key is set: a task must come as {\"signed_task\", \"signature\"}");
	/* Base64 in its one canonical text (sshwire_base64_decode), so that a
	 * signature has one form. */
	size_t tlen = strlen(b64_task), slen = strlen(b64_sig), cap = tlen / 4 * 3 + 1, n = 0, sn = 0;
	unsigned char *bytes = malloc(cap);
	unsigned char sig[SIGNATURE_LEN + 3];
	if (!bytes)
		return result_fail(res, ERR_IO_ERROR, "out of memory");
	if (sshwire_base64_decode(b64_task, tlen, true, bytes, &n) < 0 || n == 0)
		return unwrap_done(bytes, cap, refuse(res, NULL, 0, "signed_task is not base64"));
	if (slen != 88 || sshwire_base64_decode(b64_sig, slen, true, sig, &sn) < 0 || sn != SIGNATURE_LEN)
		return unwrap_done(bytes, cap, refuse(res, bytes, n,
			"signature is not the base64 of a 64-byte Ed25519 signature"));
	if (!signature_verify(ks, bytes, n, sig, sn))
		return unwrap_done(bytes, cap, refuse(res, bytes, n,
			"the signature does not verify with any key of verify_key"));
	bytes[n] = '\0';
	*task = (char *)bytes;
	*task_len = n;
	return 0;
}
