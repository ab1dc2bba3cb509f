/* util.c: the secret type lives apart, locked and out of core dumps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util.h"

/* ASan's mlock interceptor does nothing (it cannot lock its shadow). */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_WORKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_WORKS 0
#endif
#endif
#ifndef MLOCK_WORKS
#define MLOCK_WORKS 1
#endif

/* The VmFlags of the mapping that holds addr, from /proc/self/smaps. */
static bool vm_flags(const void *addr, char *flags, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false, found = false;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char dash;
		if (sscanf(line, "%lx%c%lx", &lo, &dash, &hi) == 3 && dash == '-')
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(flags, size, "%s", line + 8);
			found = true;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static void test_secret_apart(void **s)
{
	(void)s;
	struct secret sec = { 0 };
	char flags[512];
	assert_int_equal(secret_set(&sec, "hunter2", 7), 0);
	assert_string_equal(sec.data, "hunter2");
	assert_int_equal(sec.len, 7);
	assert_true(((uintptr_t)sec.data & ((uintptr_t)sysconf(_SC_PAGESIZE) - 1)) == 0);	/* a page of its own */
	assert_true(vm_flags(sec.data, flags, sizeof(flags)));
	assert_non_null(strstr(flags, " dd"));	/* left out of core dumps */
	if (geteuid() == 0 && MLOCK_WORKS)
		assert_non_null(strstr(flags, " lo"));	/* locked out of swap */
	char *was = sec.data;
	secret_wipe(&sec);
	assert_null(sec.data);
	assert_int_equal(sec.len, 0);
	assert_false(vm_flags(was, flags, sizeof(flags)));	/* unmapped */
	assert_int_equal(secret_set(&sec, "x", SECRET_MAX + 1), -E2BIG);
	secret_wipe(&sec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_apart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
