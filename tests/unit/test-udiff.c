/* udiff.c: diffs as diff -u prints them, and every diff applies back. */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <cmocka.h>

#include "udiff.h"

static void expect_diff(const char *old, const char *new, const char *want)
{
	struct buf out = { 0 };
	assert_int_equal(udiff(old, old ? strlen(old) : 0, new, strlen(new), "/f", &out), 0);
	if (!out.data || strcmp(out.data, want) != 0)
		print_error("got:\n%s\nwanted:\n%s\n", out.data ? out.data : "(nothing)", want);
	assert_string_equal(out.data ? out.data : "", want);
	buf_free(&out);
}

static void test_shapes(void **state)
{
	(void)state;
	expect_diff("a\nb\n", "a\nb\n", "");
	expect_diff("a\nb\nc\n", "a\nc\n", "--- a/f\n+++ b/f\n@@ -1,3 +1,2 @@\n a\n-b\n c\n");
	expect_diff(NULL, "k\n", "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+k\n");
	expect_diff("", "k\n", "--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+k\n");
	expect_diff("k\n", "", "--- a/f\n+++ b/f\n@@ -1 +0,0 @@\n-k\n");
	expect_diff("a", "a\nb\n", "--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n-a\n\\ No newline at end of file\n+a\n+b\n");
	/* Far apart: two hunks with three lines of context each. */
	expect_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n",
		    "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n@@ -9,4 +10,3 @@\n 9\n 10\n 11\n-12\n");
}

/* Copies old lines until *line reaches upto. */
static void copy_old(struct buf *out, const char **o, size_t *line, size_t upto)
{
	for (; *line < upto; (*line)++) {
		const char *nl = strchr(*o, '\n');
		size_t n = nl ? (size_t)(nl + 1 - *o) : strlen(*o);
		buf_append(out, *o, n);
		*o += n;
	}
}

static void skip_old(const char **o, size_t *line)
{
	const char *nl = strchr(*o, '\n');
	*o = nl ? nl + 1 : *o + strlen(*o);
	(*line)++;
}

/* Applies a diff of ours to old: what comes out must be new. */
static char *apply(const char *old, const char *diff)
{
	struct buf out = { 0 };
	const char *o = old, *p = strstr(diff, "\n@@ ");
	size_t line = 0;
	while (p && strncmp(p, "\n@@ -", 5) == 0) {
		char *end;
		unsigned long start = strtoul(p + 5, &end, 10), count = 1;
		if (*end == ',')
			count = strtoul(end + 1, NULL, 10);
		copy_old(&out, &o, &line, count == 0 ? start : start - 1);
		p = strchr(p + 1, '\n');
		while (p && (p[1] == ' ' || p[1] == '-' || p[1] == '+' || p[1] == '\\')) {
			const char *text = p + 2, *nl = strchr(text, '\n');
			bool no_eol = strncmp(nl + 1, "\\ No newline", 12) == 0;
			size_t n = (size_t)(nl - text) + !no_eol;
			if (p[1] == ' ' || p[1] == '-')
				skip_old(&o, &line);
			if (p[1] == ' ' || p[1] == '+')
				buf_append(&out, text, n);
			p = nl;
		}
	}
	buf_puts(&out, o);
	return buf_steal(&out, NULL);
}

static void random_text(char *buf, size_t size, unsigned *seed)
{
	size_t n = 0, lines = (size_t)(rand_r(seed) % 30);
	for (size_t i = 0; i < lines && n + 8 < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "l%d\n", rand_r(seed) % 8);
	if (n > 0 && rand_r(seed) % 4 == 0)
		buf[--n] = '\0';	/* no newline at the end */
	buf[n] = '\0';
}

static void test_applies_back(void **state)
{
	unsigned seed = 14;
	char a[512], b[512];
	(void)state;
	for (int i = 0; i < 5000; i++) {
		random_text(a, sizeof(a), &seed);
		random_text(b, sizeof(b), &seed);
		struct buf d = { 0 };
		assert_int_equal(udiff(a, strlen(a), b, strlen(b), "/f", &d), 0);
		char *got = apply(a, d.data ? d.data : "");
		if (strcmp(got, b) != 0)
			print_error("old:\n%s\nnew:\n%s\ndiff:\n%s\ngot:\n%s\n", a, b, d.data, got);
		assert_string_equal(got, b);
		free(got);
		buf_free(&d);
	}
}

/* A long file with one line changed: one small hunk, found fast. */
static void test_long_file(void **state)
{
	struct buf a = { 0 }, b = { 0 }, d = { 0 };
	(void)state;
	for (int i = 0; i < 10000; i++) {
		buf_printf(&a, "ssh-ed25519 key%d\n", i);
		buf_printf(&b, "ssh-ed25519 key%d\n", i == 5000 ? -1 : i);
	}
	assert_int_equal(udiff(a.data, a.len, b.data, b.len, "/k", &d), 0);
	assert_non_null(strstr(d.data, "@@ -4998,7 +4998,7 @@"));
	buf_free(&a);
	buf_free(&b);
	buf_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_applies_back),
		cmocka_unit_test(test_long_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
