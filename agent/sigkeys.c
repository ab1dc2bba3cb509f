/* The operator's verify_key: OpenSSH ssh-ed25519 public key lines
 * (signature.h), read without libcrypto, so that the monitor refuses a
 * file it cannot use at start as the tool does. */
#include <fcntl.h>
#include <sys/stat.h>

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
	memcpy(ks->v[ks->n++], key, SIGNATURE_KEY_LEN);
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
	free(ks->v);
	*ks = (struct signature_keys){ 0 };
}
