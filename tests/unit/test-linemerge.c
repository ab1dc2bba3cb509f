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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_undo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
