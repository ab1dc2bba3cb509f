/* framing.c: the local channel's line framing (framer_next) and the control
 * plane's {"tasks": [...]} answer (tasklist_parse). The framer never reads
 * the input itself: these tests feed it what a caller sees (bytes
 * available, the first newline, the two bytes before the line's end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "framing.h"
#include "util.h"

/* What a caller hands framer_next for input held in one string. */
static struct frame next(struct framer *f, const char *in, size_t avail, bool eof)
{
	const char *nl = memchr(in, '\n', avail);
	ssize_t eol = nl ? nl - in : -1;
	size_t end = framer_line_end(avail, eol);
	char tail[2] = { end >= 2 ? in[end - 2] : 'X', end >= 1 ? in[end - 1] : 'X' };
	return framer_next(f, tail, avail, eol, eof);
}

static void expect(struct frame fr, enum frame_kind kind, size_t take, size_t len)
{
	assert_int_equal(fr.kind, kind);
	assert_int_equal(fr.take, take);
	if (kind == FRAME_LINE)
		assert_int_equal(fr.len, len);
}

static void test_lines(void **s)
{
	(void)s;
	struct framer f = { .line_max = 16 };
	expect(next(&f, "abc\n", 4, false), FRAME_LINE, 4, 3);
	/* CRLF: the task is the bytes before both. */
	expect(next(&f, "abc\r\n", 5, false), FRAME_LINE, 5, 3);
	/* Only the first line is framed; the rest waits for the next call. */
	expect(next(&f, "ab\ncd\n", 6, false), FRAME_LINE, 3, 2);
	/* A CR inside the line is the task's (the task parser refuses it). */
	expect(next(&f, "a\rb\n", 4, false), FRAME_LINE, 4, 3);
	/* NUL bytes are the task's too: the framer does not look inside. */
	expect(next(&f, "a\0b\n", 4, false), FRAME_LINE, 4, 3);
	/* Blank lines run nothing. */
	expect(next(&f, "\n", 1, false), FRAME_EMPTY, 1, 0);
	expect(next(&f, "\r\n", 2, false), FRAME_EMPTY, 2, 0);
	/* Nothing, or no newline yet: read more. */
	expect(next(&f, "", 0, false), FRAME_NEED_MORE, 0, 0);
	expect(next(&f, "", 0, true), FRAME_NEED_MORE, 0, 0);
	expect(next(&f, "abc", 3, false), FRAME_NEED_MORE, 0, 0);
	assert_false(f.discarding);
}

static void test_eof(void **s)
{
	(void)s;
	struct framer f = { .line_max = 16 };
	/* The last line needs no newline when the client is done. */
	expect(next(&f, "abc", 3, true), FRAME_LINE, 3, 3);
	expect(next(&f, "abc\r", 4, true), FRAME_LINE, 4, 3);
	expect(next(&f, "\r", 1, true), FRAME_EMPTY, 1, 0);
	/* At EOF a whole line's worth without a newline is too long, and
	 * nothing more will come to discard. */
	char big[16];
	memset(big, 'x', sizeof(big));
	expect(next(&f, big, sizeof(big), true), FRAME_TOO_LONG, 16, 0);
	assert_false(f.discarding);
}

/* line_max counts the line with its "\r\n", however it ends. */
static void test_limit(void **s)
{
	(void)s;
	struct framer f = { .line_max = 8 };
	expect(next(&f, "abcdef\n", 7, false), FRAME_LINE, 7, 6);
	expect(next(&f, "abcdef\r\n", 8, false), FRAME_LINE, 8, 6);
	expect(next(&f, "abcdefg\n", 8, false), FRAME_TOO_LONG, 8, 0);
	expect(next(&f, "abcdefg\r\n", 9, false), FRAME_TOO_LONG, 9, 0);
	expect(next(&f, "abcdef", 6, true), FRAME_LINE, 6, 6);
	expect(next(&f, "abcdefg", 7, true), FRAME_TOO_LONG, 7, 0);
	assert_false(f.discarding);
}

/* A line longer than line_max without a newline in sight is answered once
 * and the rest of it skipped as it arrives; the next line is framed again. */
static void test_discard(void **s)
{
	(void)s;
	struct framer f = { .line_max = 8 };
	expect(next(&f, "xxxxxxxx", 8, false), FRAME_TOO_LONG, 8, 0);
	assert_true(f.discarding);
	expect(next(&f, "yyyy", 4, false), FRAME_SKIP, 4, 0);
	assert_true(f.discarding);
	expect(next(&f, "zz\nabc\n", 7, false), FRAME_SKIP, 3, 0);
	assert_false(f.discarding);
	expect(next(&f, "abc\n", 4, false), FRAME_LINE, 4, 3);
	/* A newline that ends the long line right away. */
	expect(next(&f, "xxxxxxxxx", 9, false), FRAME_TOO_LONG, 9, 0);
	expect(next(&f, "\n", 1, false), FRAME_SKIP, 1, 0);
	expect(next(&f, "\n", 1, false), FRAME_EMPTY, 1, 0);
}

struct seen {
	unsigned n;
	unsigned index[8];
	char text[8][64];	/* "" for a non-object */
	int stop_at;		/* return -ECANCELED at this index */
};

static int each(const char *text, size_t len, unsigned index, void *arg)
{
	struct seen *s = arg;
	assert_true(s->n < ELEMENTSOF(s->index));
	s->index[s->n] = index;
	if (text) {
		assert_true(len < sizeof(s->text[0]));
		assert_int_equal(strlen(text), len);
		memcpy(s->text[s->n], text, len + 1);
	}
	s->n++;
	return (int)index == s->stop_at ? -ECANCELED : 0;
}

static int parse(const char *body, struct seen *s)
{
	return tasklist_parse(body, strlen(body), each, s);
}

static void test_tasklist(void **st)
{
	(void)st;
	struct seen s = { 0 };
	assert_int_equal(parse("{\"tasks\": [ {\"task_id\" : \"a\"}, 7, \"x\", null, {\"b\":[1, 2]} ]}", &s), 0);
	assert_int_equal(s.n, 5);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(s.index[i], i + 1);
	/* Objects come compact; anything else as NULL. */
	assert_string_equal(s.text[0], "{\"task_id\":\"a\"}");
	assert_string_equal(s.text[1], "");
	assert_string_equal(s.text[3], "");
	assert_string_equal(s.text[4], "{\"b\":[1,2]}");

	s = (struct seen){ 0 };
	assert_int_equal(parse("{\"tasks\": []}", &s), 0);
	assert_int_equal(s.n, 0);
	/* Other members are the control plane's business. */
	assert_int_equal(parse("{\"next\": 5, \"tasks\": [{}]}", &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "{}");
}

static void test_tasklist_stop(void **st)
{
	(void)st;
	struct seen s = { .stop_at = 2 };
	assert_int_equal(parse("{\"tasks\": [{}, {}, {}]}", &s), -ECANCELED);
	assert_int_equal(s.n, 2);
}

static void test_tasklist_bad(void **st)
{
	(void)st;
	static const char *const bad[] = {
		"",
		"null",
		"[]",
		"{}",
		"{\"tasks\": {}}",
		"{\"tasks\": \"[]\"}",
		"{\"tasks\": null}",
		"{\"Tasks\": []}",
		"{\"tasks\": [",
		"{\"tasks\": [}]",
		"\xff\xfe{\"tasks\": []}",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct seen s = { 0 };
		assert_int_equal(parse(bad[i], &s), -EBADMSG);
		assert_int_equal(s.n, 0);
	}
	/* The length given is the body: a body cut short is refused even when
	 * the bytes after it would complete it. */
	struct seen s = { 0 };
	const char *body = "{\"tasks\": [{}]}";
	assert_int_equal(tasklist_parse(body, strlen(body) - 1, each, &s), -EBADMSG);
	assert_int_equal(s.n, 0);
}

/* What cJSON would read past or change: data after the answer, a second
 * "tasks" (cJSON takes the first; a reader taking the last would run other
 * tasks), a NUL byte, and the escape \u0000, at which cJSON ends a string:
 * the task handed on would lose the rest of that field, and task_parse,
 * which refuses the escape on the local channel, would never see it. The
 * answer is refused whole, before any task of it runs. */
static void test_tasklist_ambiguous(void **st)
{
	(void)st;
	static const char *const bad[] = {
		"{\"tasks\": [{}]}garbage",
		"{\"tasks\": [{}]} {\"tasks\": [{}]}",
		"{\"tasks\": [{}]}]",
		"{\"tasks\": [], \"tasks\": [{}]}",
		"{\"tasks\": [{\"user\": \"alice\\u0000x\"}]}",
		"{\"tasks\": [{\"a\\u0000\": 1}]}",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct seen s = { 0 };
		assert_int_equal(parse(bad[i], &s), -EBADMSG);
		assert_int_equal(s.n, 0);
	}
	static const char nul[] = "{\"tasks\": [{}]}\0{\"tasks\": [{}]}";
	struct seen s = { 0 };
	assert_int_equal(tasklist_parse(nul, sizeof(nul) - 1, each, &s), -EBADMSG);
	assert_int_equal(s.n, 0);
	/* White space after the answer is not data; an escaped backslash
	 * before "u0000" is no escape of a NUL. */
	assert_int_equal(parse("{\"tasks\": [{\"a\": \"\\\\u0000\"}]} \r\n\t", &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "{\"a\":\"\\\\u0000\"}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_tasklist),
		cmocka_unit_test(test_tasklist_stop),
		cmocka_unit_test(test_tasklist_bad),
		cmocka_unit_test(test_tasklist_ambiguous),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
