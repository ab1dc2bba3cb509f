/* linemerge.c: one edit undone on a file someone changed since. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "linemerge.h"

static void undo(const char *base, const char *ours, const char *theirs, const char *want)
{
	_cleanup_buf_ struct buf out = { 0 };
	assert_int_equal(linemerge_undo(base, strlen(base), ours, strlen(ours), theirs, strlen(theirs), &out), 0);
	assert_int_equal(out.len, strlen(want));
	if (out.len)
		assert_memory_equal(out.data, want, out.len);
}

static void test_undo(void **s)
{
	(void)s;
	/* Nobody else wrote: undoing on ours gives base back. */
	undo("a\nb\n", "a\nb\nk\n", "a\nb\nk\n", "a\nb\n");
	/* A user appended a line after the task added k: k goes, theirs stays. */
	undo("a\nb\n", "a\nb\nk\n", "a\nb\nk\nu\n", "a\nb\nu\n");
	/* The task removed old; it comes back at the end. */
	undo("a\nold\nb\n", "a\nb\nnew\n", "x\na\nb\nnew\n", "x\na\nb\nold\n");
	/* A line the user removed since stays removed. */
	undo("a\nb\n", "a\nb\nk\n", "b\nk\n", "b\n");
	/* A removed line that theirs holds again is not doubled. */
	undo("a\nold\n", "a\n", "a\nold\n", "a\nold\n");
	/* Empty texts. */
	undo("", "k\n", "k\n", "");
	undo("", "", "", "");
}

static void undo_mem(const char *base, size_t bl, const char *ours, size_t ol, const char *theirs, size_t tl,
		     const char *want, size_t wl)
{
	_cleanup_buf_ struct buf out = { 0 };
	assert_int_equal(linemerge_undo(base, bl, ours, ol, theirs, tl, &out), 0);
	assert_int_equal(out.len, wl);
	if (wl)
		assert_memory_equal(out.data, want, wl);
}

#define UNDO_MEM(b, o, t, w) undo_mem(b, sizeof(b) - 1, o, sizeof(o) - 1, t, sizeof(t) - 1, w, sizeof(w) - 1)

static void test_undo_bytes(void **s)
{
	(void)s;
	/* Every line that goes out is terminated, the last one too. */
	undo("a\nb", "a\nb\nk", "a\nb\nk\nu", "a\nb\nu\n");
	/* CRLF is part of a line: an editor that turned the file into CRLF
	 * made every line theirs, and the task's line is no longer ours. */
	undo("a\n", "a\nk\n", "a\r\nk\r\n", "a\r\nk\r\n");
	undo("a\r\n", "a\r\nk\r\n", "a\r\nk\r\nu\r\n", "a\r\nu\r\n");
	/* NUL bytes and invalid UTF-8 are compared as bytes. */
	UNDO_MEM("a\0x\n", "a\0x\nk\0y\n", "a\0x\nk\0y\nu\xff\n", "a\0x\nu\xff\n");
	UNDO_MEM("a\0x\n", "a\0x\nk\0y\n", "a\0x\nk\0z\n", "a\0x\nk\0z\n");
	/* Blank lines are lines: kept where theirs has them, restored when
	 * the edit took one out. */
	undo("a\n\nb\n", "a\n\nb\nk\n", "\na\n\nb\nk\n", "\na\n\nb\n");
	undo("a\n\n", "a\n", "a\n", "a\n\n");
}

/* Lines compare by content, not by position or count: a duplicate of a
 * base line that the edit added stays, and a line of base the edit kept
 * stays however often theirs repeats it. */
static void test_undo_duplicates(void **s)
{
	(void)s;
	undo("a\n", "a\na\n", "a\na\n", "a\na\n");
	undo("a\nb\n", "a\nb\nk\n", "a\nb\nk\nk\nb\n", "a\nb\nb\n");
	undo("k\n", "", "k\nk\n", "k\nk\n");
}

/* Enough lines to fill the hash tables and make collisions likely. */
static void test_undo_many(void **s)
{
	(void)s;
	_cleanup_buf_ struct buf base = { 0 }, ours = { 0 }, theirs = { 0 }, want = { 0 }, out = { 0 };
	for (int i = 0; i < 20000; i++) {
		assert_int_equal(buf_printf(&base, "line %d\n", i), 0);
		if (i % 3)
			assert_int_equal(buf_printf(&ours, "line %d\n", i), 0);
		if (i % 3 && i % 5)
			assert_int_equal(buf_printf(&theirs, "line %d\n", i), 0);
	}
	assert_int_equal(buf_printf(&ours, "task\n"), 0);
	assert_int_equal(buf_printf(&theirs, "task\nuser\n"), 0);
	/* want: theirs less "task", then the lines the edit took out (i % 3
	 * == 0) that theirs does not hold again, in base order. */
	for (int i = 0; i < 20000; i++)
		if (i % 3 && i % 5)
			assert_int_equal(buf_printf(&want, "line %d\n", i), 0);
	assert_int_equal(buf_printf(&want, "user\n"), 0);
	for (int i = 0; i < 20000; i += 3)
		assert_int_equal(buf_printf(&want, "line %d\n", i), 0);
	assert_int_equal(linemerge_undo(base.data, base.len, ours.data, ours.len, theirs.data, theirs.len, &out), 0);
	assert_int_equal(out.len, want.len);
	assert_memory_equal(out.data, want.data, want.len);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_undo),
		cmocka_unit_test(test_undo_bytes),
		cmocka_unit_test(test_undo_duplicates),
		cmocka_unit_test(test_undo_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
