/* Ed25519 verification of signed tasks (libcrypto's EVP_PKEY_ED25519).
 * This runs where tasks are taken in, before anything in the task is
 * trusted: the bytes are parsed only after their signature verified, and
 * a refusal names the task_id only to report it. */
#include <fcntl.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "signature.h"
#include "sshwire.h"

#define KEY_TYPE "ssh-ed25519"

/* The blob of an ssh-ed25519 key: string "ssh-ed25519", string key[32]. */
static int key_from_blob(const unsigned char *b, size_t n, unsigned char key[SIGNATURE_KEY_LEN])
{
	struct sshwire w = { b, n };
	const unsigned char *k;
	size_t klen;
	if (sshwire_string_eq(&w, KEY_TYPE) < 0 || sshwire_string(&w, &k, &klen) < 0 || klen != SIGNATURE_KEY_LEN ||
	    !sshwire_end(&w))
		return -EINVAL;
	memcpy(key, k, SIGNATURE_KEY_LEN);
	return 0;
}

/* One line: "ssh-ed25519 BASE64 [comment]". */
static int key_line(const char *s, size_t len, unsigned char key[SIGNATURE_KEY_LEN])
{
	size_t tlen = strlen(KEY_TYPE);
	if (len <= tlen || memcmp(s, KEY_TYPE, tlen) != 0 || (s[tlen] != ' ' && s[tlen] != '\t'))
		return -EINVAL;
	size_t b = tlen;
	while (b < len && (s[b] == ' ' || s[b] == '\t'))
		b++;
	size_t e = b;
	while (e < len && s[e] != ' ' && s[e] != '\t')
		e++;
	unsigned char blob[128];
	size_t n;
	if (e - b > 4 * (sizeof(blob) / 3) || sshwire_base64_decode(s + b, e - b, true, blob, &n) < 0)
		return -EINVAL;
	return key_from_blob(blob, n, key);
}

static int keys_push(struct signature_keys *ks, const unsigned char key[SIGNATURE_KEY_LEN])
{
	void *v = reallocarray(ks->v, ks->n + 1, sizeof(*ks->v));
	if (!v)
		return -ENOMEM;
	ks->v = v;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized as one */
	void *pk = reallocarray(ks->pk, ks->n + 1, sizeof(*ks->pk));
	if (!pk)
		return -ENOMEM;
	ks->pk = pk;
	EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, SIGNATURE_KEY_LEN);
	if (!k)
		return -ENOMEM;
	memcpy(ks->v[ks->n], key, SIGNATURE_KEY_LEN);
	ks->pk[ks->n++] = k;
	return 0;
}

/* One line, blanks around it trimmed: a comment, or a key to add. */
static int keys_line(struct signature_keys *ks, const char *p, size_t n, unsigned lineno, char *err, size_t errlen)
{
	unsigned char key[SIGNATURE_KEY_LEN];
	if (n == 0 || *p == '#')
		return 0;
	if (memchr(p, '\0', n) || key_line(p, n, key) < 0) {
		snprintf(err, errlen, "line %u is not an OpenSSH ssh-ed25519 public key", lineno);
		return -EINVAL;
	}
	if (ks->n == SIGNATURE_MAX_KEYS) {
		snprintf(err, errlen, "more than %d keys", SIGNATURE_MAX_KEYS);
		return -EINVAL;
	}
	return keys_push(ks, key);
}

int signature_keys_parse(const char *text, size_t len, struct signature_keys *ks, char *err, size_t errlen)
{
	*ks = (struct signature_keys){ 0 };
	unsigned lineno = 0;
	int r = 0;
	for (const char *p = text, *end = text + len; r == 0 && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		size_t n = (size_t)((nl ? nl : end) - p);
		while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		while (n > 0 && (*p == ' ' || *p == '\t'))
			p++, n--;
		r = keys_line(ks, p, n, ++lineno, err, errlen);
		p = next;
	}
	if (r == 0 && ks->n == 0) {
		snprintf(err, errlen, "no ssh-ed25519 public key in it");
		r = -EINVAL;
	}
	if (r < 0)
		signature_keys_free(ks);
	return r;
}

int signature_keys_load(const char *path, struct signature_keys *ks, char *err, size_t errlen)
{
	char why[128] = "";
	*ks = (struct signature_keys){ 0 };
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int r = -errno;	/* before snprintf, which may set errno */
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	/* Whoever may write this file decides what the VM accepts. */
	if (!S_ISREG(st.st_mode) || (st.st_mode & 022) || (st.st_uid != 0 && st.st_uid != geteuid())) {
		snprintf(err, errlen, "%s: must be a regular file owned by root and not writable by others", path);
		return -EPERM;
	}
	if ((size_t)st.st_size > SIGNATURE_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %zu bytes", path, SIGNATURE_FILE_MAX);
		return -EFBIG;
	}
	_cleanup_free_ char *text = malloc((size_t)st.st_size + 1);
	if (!text)
		return -ENOMEM;
	ssize_t n = read(fd, text, (size_t)st.st_size + 1);
	if (n < 0) {
		int r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	int r = signature_keys_parse(text, (size_t)n, ks, why, sizeof(why));
	if (r < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	return r;
}

void signature_keys_free(struct signature_keys *ks)
{
	for (size_t i = 0; ks->pk && i < ks->n; i++)
		EVP_PKEY_free(ks->pk[i]);
	free(ks->pk);
	free(ks->v);
	*ks = (struct signature_keys){ 0 };
}

bool signature_verify(const struct signature_keys *ks, const unsigned char *msg, size_t len,
		      const unsigned char *sig, size_t sig_len)
{
	bool ok = false;
	if (sig_len != SIGNATURE_LEN)
		return false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	for (size_t i = 0; ctx && !ok && i < ks->n; i++) {
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, ks->pk[i]) == 1 &&
		     EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1;
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
