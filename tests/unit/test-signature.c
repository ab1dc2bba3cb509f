/* signature.c: OpenSSH key lines, Ed25519 verification, the envelope. */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "signature.h"

#define TASK "{\"task_id\":\"t-9\",\"action\":\"disassociate\",\"server\":{\"id\":\"s\"}}"

struct signer {
	EVP_PKEY *key;
	char line[256];	/* its OpenSSH public key line */
};

static char *b64(const unsigned char *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

static void signer_new(struct signer *s, const char *comment)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	s->key = NULL;
	assert_true(ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &s->key) == 1);
	EVP_PKEY_CTX_free(ctx);
	unsigned char blob[51] = { 0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9', 0, 0, 0, 32 };
	size_t n = 32;
	assert_int_equal(EVP_PKEY_get_raw_public_key(s->key, blob + 19, &n), 1);
	char *enc = b64(blob, sizeof(blob));
	snprintf(s->line, sizeof(s->line), "ssh-ed25519 %s %s", enc, comment);
	free(enc);
}

static char *envelope(const struct signer *s, const char *task)
{
	unsigned char sig[64];
	size_t n = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_true(EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
		    EVP_DigestSign(ctx, sig, &n, (const unsigned char *)task, strlen(task)) == 1);
	EVP_MD_CTX_free(ctx);
	char *t = b64((const unsigned char *)task, strlen(task)), *g = b64(sig, n), *out = NULL;
	assert_true(asprintf(&out, "{\"signed_task\":\"%s\",\"signature\":\"%s\"}", t, g) > 0);
	free(t);
	free(g);
	return out;
}

static void keys_of(struct signature_keys *ks, const char *text)
{
	char err[128] = "";
	int r = signature_keys_parse(text, strlen(text), ks, err, sizeof(err));
	if (r < 0)
		print_error("%s\n", err);
	assert_int_equal(r, 0);
}

static void expect_refused(const struct signature_keys *ks, const char *text, const char *id, const char *needle)
{
	struct result res;
	char *task = NULL;
	size_t len = 0;
	result_init(&res);
	assert_int_equal(signature_unwrap(ks, text, strlen(text), &task, &len, &res), -1);
	assert_null(task);
	assert_int_equal(res.code, ERR_BAD_SIGNATURE);
	assert_string_equal(res.task_id, id);
	if (!strstr(res.msg, needle))
		print_error("message \"%s\" lacks \"%s\"\n", res.msg, needle);
	assert_non_null(strstr(res.msg, needle));
	result_free(&res);
}

static void expect_verified(const struct signature_keys *ks, const char *text)
{
	struct result res;
	char *task = NULL;
	size_t len = 0;
	result_init(&res);
	int r = signature_unwrap(ks, text, strlen(text), &task, &len, &res);
	if (r < 0)
		print_error("refused: %s\n", res.msg);
	assert_int_equal(r, 0);
	assert_int_equal(len, strlen(TASK));
	assert_memory_equal(task, TASK, len);
	free(task);
	result_free(&res);
}

static void test_keys_parse(void **state)
{
	struct signer a, b;
	struct signature_keys ks;
	char text[1024], err[128];
	(void)state;
	signer_new(&a, "cp-2025");
	signer_new(&b, "cp-2026");
	snprintf(text, sizeof(text), "# rotation: old and new\n\n  %s\r\n%s\n", a.line, b.line);
	keys_of(&ks, text);
	assert_int_equal(ks.n, 2);
	signature_keys_free(&ks);
	static const char *const bad[] = {
		"",
		"# only a comment\n",
		"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n",
		"ssh-ed25519\n",
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== short\n",
		"ssh-ed25519 !!!! x\n",
		"from=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJzIG93biBsaW5lIGtlcHQgYnl0ZSBmb3IgYnl0ZQ\n",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err[0] = '\0';
		assert_int_equal(signature_keys_parse(bad[i], strlen(bad[i]), &ks, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
		assert_int_equal(ks.n, 0);
	}
	/* A bad line among good ones names its line. */
	snprintf(text, sizeof(text), "%s\nssh-ed25519 garbage\n", a.line);
	assert_int_equal(signature_keys_parse(text, strlen(text), &ks, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 2"));
	EVP_PKEY_free(a.key);
	EVP_PKEY_free(b.key);
}

static void test_unwrap(void **state)
{
	struct signer cp, old, stranger;
	struct signature_keys ks;
	char text[1024];
	(void)state;
	signer_new(&cp, "cp");
	signer_new(&old, "cp-old");
	signer_new(&stranger, "stranger");
	snprintf(text, sizeof(text), "%s\n%s\n", old.line, cp.line);
	keys_of(&ks, text);

	char *good = envelope(&cp, TASK), *by_old = envelope(&old, TASK), *by_stranger = envelope(&stranger, TASK);
	expect_verified(&ks, good);
	expect_verified(&ks, by_old);	/* rotation: either key */
	expect_refused(&ks, by_stranger, "t-9", "does not verify");

	/* One byte of the task changed, the signature kept. */
	char *tampered = envelope(&cp, TASK);
	char *t = strstr(tampered, "\"signed_task\":\"") + 15;
	t[5] = t[5] == 'A' ? 'B' : 'A';
	expect_refused(&ks, tampered, "", "does not verify");

	/* A plain task names its id; a broken envelope names nothing. */
	expect_refused(&ks, TASK, "t-9", "must come as");
	expect_refused(&ks, "{\"signed_task\":\"e30=\"}", "", "must come as");
	expect_refused(&ks, "{\"signed_task\":\"e30=\",\"signature\":\"AA==\",\"x\":1}", "", "must come as");
	expect_refused(&ks, "{\"signed_task\":\"e30\",\"signature\":\"AA==\"}", "", "not base64");
	expect_refused(&ks, "{\"signed_task\":\"e30=\",\"signature\":\"AA==\"}", "", "64-byte");
	expect_refused(&ks, "[]", "", "must come as");
	expect_refused(&ks, "not json", "", "must come as");
	/* Twice the same name: which one was signed? */
	expect_refused(&ks, "{\"signed_task\":\"e30=\",\"signed_task\":\"e30=\"}", "", "must come as");
	/* Base64 with line breaks or non-zero padding bits is not the one form. */
	expect_refused(&ks, "{\"signed_task\":\"e3\\n0=\",\"signature\":\"AA==\"}", "", "not base64");
	expect_refused(&ks, "{\"signed_task\":\"e31=\",\"signature\":\"AA==\"}", "", "not base64");

	free(good);
	free(by_old);
	free(by_stranger);
	free(tampered);
	signature_keys_free(&ks);
	EVP_PKEY_free(cp.key);
	EVP_PKEY_free(old.key);
	EVP_PKEY_free(stranger.key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_parse),
		cmocka_unit_test(test_unwrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
