/* The cost of a signed task at intake: signature_unwrap (envelope JSON,
 * base64, Ed25519 verification) per task, and signature_verify alone, for
 * a verify_key of one key and of four (the signer's key last: the worst
 * case of a rotation). Prints figures, asserts nothing. */
#include <time.h>

#include <openssl/evp.h>

#include "signature.h"

#define RUNS 20000

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *b64(const unsigned char *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (!out)
		exit(1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

static EVP_PKEY *keygen(unsigned char pub[SIGNATURE_KEY_LEN])
{
	EVP_PKEY *k = NULL;
	size_t n = SIGNATURE_KEY_LEN;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &k) != 1 ||
	    EVP_PKEY_get_raw_public_key(k, pub, &n) != 1)
		exit(1);
	EVP_PKEY_CTX_free(ctx);
	return k;
}

static void bench(const char *name, const struct signature_keys *ks, const char *env, const unsigned char *msg,
		  size_t len, const unsigned char *sig)
{
	struct result res;
	int64_t t0 = now_ns();
	for (int i = 0; i < RUNS; i++) {
		char *task = NULL;
		size_t n = 0;
		result_init(&res);
		if (signature_unwrap(ks, env, strlen(env), &task, &n, &res) < 0)
			exit(1);
		free(task);
		result_free(&res);
	}
	int64_t t1 = now_ns();
	for (int i = 0; i < RUNS; i++)
		if (!signature_verify(ks, msg, len, sig, 64))
			exit(1);
	int64_t t2 = now_ns();
	printf("%-34s unwrap %6.1f us/task   verify alone %6.1f us\n", name, (double)(t1 - t0) / RUNS / 1000.0,
	       (double)(t2 - t1) / RUNS / 1000.0);
}

int main(void)
{
	static const char task[] =
		"{\"task_id\":\"aee8d2fe-5484-4753-9177-5a38dc15546c\",\"action\":\"associate\","
		"\"keypair_name\":\"newkeypair1\",\"public_key\":\"ssh-ed25519 "
		"AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH4 a\","
		"\"server\":{\"id\":\"d76baba7-ef09-40a2-87ff-3eafec0696e7\",\"disable_password\":true},"
		"\"expires_at\":\"2026-11-23T10:00:00Z\",\"requester\":\"iam:user/alice req-5f1c\"}";
	unsigned char keys[4][SIGNATURE_KEY_LEN], sig[64];
	EVP_PKEY *signer = NULL;
	for (int i = 0; i < 4; i++) {
		EVP_PKEY *k = keygen(keys[i]);
		if (i == 3)
			signer = k;
		else
			EVP_PKEY_free(k);
	}
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, signer) != 1 ||
	    EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)task, strlen(task)) != 1)
		return 1;
	char *t = b64((const unsigned char *)task, strlen(task)), *s = b64(sig, siglen), *env = NULL;
	if (asprintf(&env, "{\"signed_task\":\"%s\",\"signature\":\"%s\"}", t, s) < 0)
		return 1;
	/* verify_key files: the signer's key alone, and three others first. */
	struct signature_keys one, four;
	char text[1024] = "", last[256] = "", err[128];
	for (int i = 0; i < 4; i++) {
		unsigned char blob[51] = { 0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9', 0, 0, 0, 32 };
		memcpy(blob + 19, keys[i], 32);
		char *enc = b64(blob, sizeof(blob));
		snprintf(last, sizeof(last), "ssh-ed25519 %s k%d\n", enc, i);
		strncat(text, last, sizeof(text) - strlen(text) - 1);
		free(enc);
	}
	if (signature_keys_parse(text, strlen(text), &four, err, sizeof(err)) < 0 ||
	    signature_keys_parse(last, strlen(last), &one, err, sizeof(err)) < 0)
		return 1;
	printf("signed task of %zu bytes, %d runs each\n", strlen(task), RUNS);
	bench("verify_key with 1 key", &one, env, (const unsigned char *)task, strlen(task), sig);
	bench("verify_key with 4 keys (signer last)", &four, env, (const unsigned char *)task, strlen(task), sig);
	signature_keys_free(&one);
	signature_keys_free(&four);
	free(t);
	free(s);
	free(env);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(signer);
	return 0;
}
