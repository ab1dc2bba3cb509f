/* --sign-key FILE: every task handed to an agent goes out as a signed task
 * (CONTRACT 8), {"signed_task": b64, "signature": b64}, signed with the
 * Ed25519 key of FILE, an OpenSSH private key as ssh-keygen writes it
 * (openssh-key-v1, not encrypted). A task without expires_at gets one an
 * hour ahead, as a signed task must carry it. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "emulator.h"

#define KEY_FILE_MAX 16384
#define SIGNED_TTL_S 3600
#define PEM_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define PEM_END "-----END OPENSSH PRIVATE KEY-----"
#define MAGIC "openssh-key-v1"

static EVP_PKEY *sign_key;

struct rd {
	const unsigned char *p;
	size_t n;
};

static bool rd_u32(struct rd *r, uint32_t *v)
{
	if (r->n < 4)
		return false;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return true;
}

static bool rd_str(struct rd *r, const unsigned char **s, size_t *len)
{
	uint32_t n;
	if (!rd_u32(r, &n) || n > r->n)
		return false;
	*s = r->p;
	*len = n;
	r->p += n;
	r->n -= n;
	return true;
}

static bool str_is(const unsigned char *s, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* The base64 between the armour lines, line breaks dropped. */
static int unarmour(char *text, unsigned char **out, size_t *out_len)
{
	char *b = strstr(text, PEM_BEGIN), *e = b ? strstr(b, PEM_END) : NULL;
	if (!b || !e)
		return -EINVAL;
	size_t n = 0;
	for (char *p = b + strlen(PEM_BEGIN); p < e; p++)
		if (*p != '\n' && *p != '\r' && *p != ' ')
			text[n++] = *p;
	*out = malloc(n / 4 * 3 + 3);
	if (!*out)
		return -ENOMEM;
	int len = EVP_DecodeBlock(*out, (const unsigned char *)text, (int)n);
	if (len < 0 || n % 4)
		return -EINVAL;
	*out_len = (size_t)len - (n && text[n - 1] == '=') - (n > 1 && text[n - 2] == '=');
	return 0;
}

/* openssh-key-v1: magic, cipher "none", kdf "none", one key; the private
 * section holds the 32-byte seed and the public half of an ed25519 key. */
static int parse_key(const unsigned char *blob, size_t len, unsigned char seed[32])
{
	struct rd r = { blob, len };
	const unsigned char *s, *priv;
	size_t n, plen;
	uint32_t nkeys, c1, c2;
	if (len < sizeof(MAGIC) || memcmp(blob, MAGIC, sizeof(MAGIC)) != 0)
		return -EINVAL;
	r.p += sizeof(MAGIC);
	r.n -= sizeof(MAGIC);
	if (!rd_str(&r, &s, &n) || !str_is(s, n, "none") || !rd_str(&r, &s, &n) || !str_is(s, n, "none") ||
	    !rd_str(&r, &s, &n) || !rd_u32(&r, &nkeys) || nkeys != 1 || !rd_str(&r, &s, &n) ||
	    !rd_str(&r, &priv, &plen))
		return -EINVAL;
	struct rd p = { priv, plen };
	if (!rd_u32(&p, &c1) || !rd_u32(&p, &c2) || c1 != c2 || !rd_str(&p, &s, &n) || !str_is(s, n, "ssh-ed25519") ||
	    !rd_str(&p, &s, &n) || n != 32 || !rd_str(&p, &s, &n) || n != 64)
		return -EINVAL;
	memcpy(seed, s, 32);
	return 0;
}

int tasksign_load(const char *path)
{
	char text[KEY_FILE_MAX + 1];
	unsigned char seed[32], *blob = NULL;
	size_t blob_len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, text, KEY_FILE_MAX);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EINVAL;
	text[n] = '\0';
	int r = unarmour(text, &blob, &blob_len);
	if (r == 0)
		r = parse_key(blob, blob_len, seed);
	if (r == 0 && !(sign_key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed))))
		r = -EINVAL;
	explicit_bzero(seed, sizeof(seed));
	explicit_bzero(text, sizeof(text));
	if (blob)
		explicit_bzero(blob, blob_len);
	free(blob);
	return r;
}

bool tasksign_enabled(void)
{
	return sign_key != NULL;
}

void tasksign_free(void)
{
	EVP_PKEY_free(sign_key);
	sign_key = NULL;
}

static char *b64(const unsigned char *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

static bool add_expiry(cJSON *t)
{
	char when[32];
	time_t at = time(NULL) + SIGNED_TTL_S;
	struct tm tm;
	if (cJSON_GetObjectItemCaseSensitive(t, "expires_at"))
		return true;
	gmtime_r(&at, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return cJSON_AddStringToObject(t, "expires_at", when) != NULL;
}

cJSON *tasksign_wrap(const cJSON *task)
{
	cJSON *copy = cJSON_Duplicate(task, true), *env = NULL;
	char *bytes = copy && add_expiry(copy) ? cJSON_PrintUnformatted(copy) : NULL;
	unsigned char sig[64];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *ctx = bytes ? EVP_MD_CTX_new() : NULL;
	bool ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, sign_key) == 1 &&
		  EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)bytes, strlen(bytes)) == 1;
	char *t = ok ? b64((const unsigned char *)bytes, strlen(bytes)) : NULL, *s = ok ? b64(sig, sig_len) : NULL;
	if (t && s && (env = cJSON_CreateObject()) &&
	    (!cJSON_AddStringToObject(env, "signed_task", t) || !cJSON_AddStringToObject(env, "signature", s))) {
		cJSON_Delete(env);
		env = NULL;
	}
	EVP_MD_CTX_free(ctx);
	free(t);
	free(s);
	free(bytes);
	cJSON_Delete(copy);
	return env;
}
