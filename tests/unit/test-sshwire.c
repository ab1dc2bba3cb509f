/* sshwire: base64 and the SSH wire readers over a bounded buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sshwire.h"

static void test_u32(void **state)
{
	(void)state;
	static const unsigned char b[] = { 0x01, 0x02, 0x03, 0x04, 0xff };
	struct sshwire w = { b, sizeof(b) };
	uint32_t v = 0;
	assert_int_equal(sshwire_u32(&w, &v), 0);
	assert_int_equal(v, 0x01020304);
	assert_int_equal(w.len, 1);
	/* One byte left: refused, nothing taken. */
	assert_int_equal(sshwire_u32(&w, &v), -EBADMSG);
	assert_int_equal(w.len, 1);
	assert_ptr_equal(w.p, b + 4);
}

static void test_string(void **state)
{
	(void)state;
	static const unsigned char b[] = { 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 'x' };
	struct sshwire w = { b, sizeof(b) };
	const unsigned char *s;
	size_t n;
	assert_int_equal(sshwire_string(&w, &s, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(s, "abc", 3);
	/* Zero-length string. */
	assert_int_equal(sshwire_string(&w, &s, &n), 0);
	assert_int_equal(n, 0);
	/* Trailing bytes are left for sshwire_end to see. */
	assert_false(sshwire_end(&w));
	assert_int_equal(w.len, 1);
}

static void test_string_bounds(void **state)
{
	(void)state;
	const unsigned char *s;
	size_t n;
	/* A length cut short. */
	static const unsigned char cut[] = { 0, 0, 0 };
	struct sshwire w = { cut, sizeof(cut) };
	assert_int_equal(sshwire_string(&w, &s, &n), -EBADMSG);
	assert_int_equal(w.len, 3);
	/* A length one past the buffer. */
	static const unsigned char over[] = { 0, 0, 0, 4, 'a', 'b', 'c' };
	w = (struct sshwire){ over, sizeof(over) };
	assert_int_equal(sshwire_string(&w, &s, &n), -EBADMSG);
	assert_int_equal(w.len, sizeof(over));
	/* A length that wraps size_t arithmetic if added carelessly. */
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	w = (struct sshwire){ huge, sizeof(huge) };
	assert_int_equal(sshwire_string(&w, &s, &n), -EBADMSG);
	/* An empty buffer. */
	w = (struct sshwire){ NULL, 0 };
	assert_int_equal(sshwire_string(&w, &s, &n), -EBADMSG);
	assert_true(sshwire_end(&w));
}

static void test_string_eq(void **state)
{
	(void)state;
	static const unsigned char b[] = { 0, 0, 0, 4, 'n', 'o', 'n', 'e', 0, 0, 0, 3, 'n', 'o', 'n' };
	struct sshwire w = { b, sizeof(b) };
	assert_int_equal(sshwire_string_eq(&w, "none"), 0);
	assert_int_equal(sshwire_string_eq(&w, "none"), -EBADMSG);	/* a prefix is not it */
	assert_true(sshwire_end(&w));
	w = (struct sshwire){ b, 6 };
	assert_int_equal(sshwire_string_eq(&w, "none"), -EBADMSG);
	assert_int_equal(w.len, 6);
}

static void test_mpint(void **state)
{
	(void)state;
	static const unsigned char b[] = { 0, 0, 0, 3, 0, 0, 0x81, 0, 0, 0, 0 };
	struct sshwire w = { b, sizeof(b) };
	const unsigned char *s;
	size_t n;
	assert_int_equal(sshwire_mpint(&w, &s, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(s[0], 0x81);
	assert_int_equal(sshwire_bits(s, n), 8);
	assert_int_equal(sshwire_mpint(&w, &s, &n), 0);	/* zero */
	assert_int_equal(n, 0);
	assert_int_equal(sshwire_bits(s, n), 0);
	assert_true(sshwire_end(&w));
	static const unsigned char one[] = { 0x01, 0xff };
	assert_int_equal(sshwire_bits(one, 2), 9);
}

static void test_put(void **state)
{
	(void)state;
	unsigned char buf[16];
	struct sshwire_out o = { buf, 0, sizeof(buf) };
	static const unsigned char hi[] = { 0x80, 1 }, lo[] = { 0x7f };
	assert_int_equal(sshwire_put_mpint(&o, hi, sizeof(hi)), 0);
	assert_int_equal(o.n, 7);
	assert_memory_equal(buf, "\0\0\0\3\0\x80\1", 7);
	assert_int_equal(sshwire_put_mpint(&o, lo, sizeof(lo)), 0);
	assert_int_equal(o.n, 12);
	/* Four bytes left: a string of one byte does not fit, and nothing is written. */
	assert_int_equal(sshwire_put_string(&o, "x", 1), -ENOBUFS);
	assert_int_equal(o.n, 12);
	assert_int_equal(sshwire_put_string(&o, "", 0), 0);
	assert_int_equal(o.n, 16);
	/* Read back what was written. */
	struct sshwire w = { buf, o.n };
	const unsigned char *s;
	size_t n;
	assert_int_equal(sshwire_mpint(&w, &s, &n), 0);
	assert_memory_equal(s, hi, 2);
	assert_int_equal(sshwire_mpint(&w, &s, &n), 0);
	assert_int_equal(sshwire_string(&w, &s, &n), 0);
	assert_true(sshwire_end(&w));
}

static void test_base64(void **state)
{
	(void)state;
	unsigned char out[16];
	size_t n = 0;
	assert_true(sshwire_base64_valid("YWJj", 4));
	assert_false(sshwire_base64_valid("", 0));
	assert_false(sshwire_base64_valid("YWJ", 3));
	assert_false(sshwire_base64_valid("Y===", 4));
	assert_false(sshwire_base64_valid("YW=j", 4));
	assert_false(sshwire_base64_valid("YW\nj", 4));
	assert_int_equal(sshwire_base64_decode("YWJj", 4, true, out, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(sshwire_base64_decode("YWI=", 4, true, out, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sshwire_base64_decode("YQ==", 4, true, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 'a');
	/* Padding bits set: refused when canonical, ignored otherwise. */
	assert_int_equal(sshwire_base64_decode("YR==", 4, true, out, &n), -EINVAL);
	assert_int_equal(sshwire_base64_decode("YWJ=", 4, true, out, &n), -EINVAL);
	assert_int_equal(sshwire_base64_decode("YR==", 4, false, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 'a');
	assert_int_equal(sshwire_base64_decode("YWJ", 3, false, out, &n), -EINVAL);
}

static void test_base64_prefix(void **state)
{
	(void)state;
	unsigned char out[8];
	/* White space skipped, stops at the first other character, at max. */
	assert_int_equal(sshwire_base64_prefix("\n YW\r\nJj\t-ZGVm", out, sizeof(out)), 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(sshwire_base64_prefix("YWJjZGVm", out, 2), 2);
	assert_memory_equal(out, "ab", 2);
	assert_int_equal(sshwire_base64_prefix("", out, sizeof(out)), 0);
}

static void test_base64_encode(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(sshwire_base64_encode_nopad((const unsigned char *)"abc", 3, out), 4);
	assert_string_equal(out, "YWJj");
	assert_int_equal(sshwire_base64_encode_nopad((const unsigned char *)"ab", 2, out), 3);
	assert_string_equal(out, "YWI");
	assert_int_equal(sshwire_base64_encode_nopad((const unsigned char *)"a", 1, out), 2);
	assert_string_equal(out, "YQ");
	assert_int_equal(sshwire_base64_encode_nopad(NULL, 0, out), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u32),
		cmocka_unit_test(test_string),
		cmocka_unit_test(test_string_bounds),
		cmocka_unit_test(test_string_eq),
		cmocka_unit_test(test_mpint),
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_prefix),
		cmocka_unit_test(test_base64_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
