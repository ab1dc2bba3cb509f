/* sshdmatch.c: sshd's pattern lists, and Match criteria judged for every
 * client at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sshdmatch.h"

static void test_pattern(void **s)
{
	(void)s;
	assert_true(sshdmatch_pattern("alice", "alice"));
	assert_true(sshdmatch_pattern("alice", "a*"));
	assert_true(sshdmatch_pattern("alice", "*e"));
	assert_true(sshdmatch_pattern("alice", "a?i*"));
	assert_true(sshdmatch_pattern("", "*"));
	assert_true(sshdmatch_pattern("abcabc", "*abc"));
	assert_false(sshdmatch_pattern("alice", "Alice"));
	assert_false(sshdmatch_pattern("alice", "a?"));
	assert_false(sshdmatch_pattern("alice", "bob*"));
}

static void test_pattern_list(void **s)
{
	(void)s;
	assert_int_equal(sshdmatch_pattern_list("alice", "bob,alice"), 1);
	assert_int_equal(sshdmatch_pattern_list("alice", "*,!alice"), -1);
	assert_int_equal(sshdmatch_pattern_list("alice", "!bob"), 0);	/* no positive: no match */
	assert_int_equal(sshdmatch_pattern_list("alice", "bob"), 0);
}

static void test_satisfiable(void **s)
{
	(void)s;
	assert_true(sshdmatch_list_satisfiable("*,!127.0.0.1"));
	assert_true(sshdmatch_list_satisfiable("10.0.0.0/8"));
	assert_true(sshdmatch_list_satisfiable("*.example.com,!bad.example.com"));
	assert_false(sshdmatch_list_satisfiable("!10.0.0.1"));
	assert_false(sshdmatch_list_satisfiable("10.0.0.1,!10.0.0.1"));
	assert_false(sshdmatch_list_satisfiable("a.example.com,!*"));
	assert_false(sshdmatch_list_satisfiable("host1,!host?"));
}

static int judge(const char *line)
{
	static const int ports[] = { 2222 };
	struct strv groups = { 0 }, args = { 0 };
	strv_push(&groups, "staff");
	strv_push(&groups, "users");
	_cleanup_free_ char *copy = strdup(line);
	char *save = NULL;
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		strv_push(&args, w);
	struct sshdmatch_user u = { .name = "alice", .groups = &groups, .ports = ports, .n_ports = 1 };
	int r = sshdmatch_can_apply(&args, &u);
	strv_free(&groups);
	strv_free(&args);
	return r;
}

static void test_can_apply(void **s)
{
	(void)s;
	assert_int_equal(judge("all"), 1);
	assert_int_equal(judge("User alice"), 1);
	assert_int_equal(judge("user a*,!bob"), 1);
	assert_int_equal(judge("User bob"), 0);
	assert_int_equal(judge("User *,!alice"), 0);
	assert_int_equal(judge("Group staff"), 1);
	assert_int_equal(judge("Group *,!users"), 0);	/* a negated group wins */
	assert_int_equal(judge("Group wheel"), 0);
	assert_int_equal(judge("Address *,!127.0.0.1"), 1);
	assert_int_equal(judge("Address !127.0.0.1"), 0);
	assert_int_equal(judge("LocalAddress 192.0.2.1 User alice"), 1);
	assert_int_equal(judge("Host *.example.com"), 1);
	assert_int_equal(judge("RDomain vrf1"), 1);
	assert_int_equal(judge("LocalPort 2222"), 1);
	assert_int_equal(judge("LocalPort 22"), 0);
	assert_int_equal(judge("User alice LocalPort 22"), 0);
	assert_int_equal(judge("Invalid-User"), 0);
	assert_int_equal(judge("Version OpenSSH_10*"), 1);
	assert_int_equal(judge("User"), -EBADMSG);
	assert_int_equal(judge("all User alice"), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pattern),
		cmocka_unit_test(test_pattern_list),
		cmocka_unit_test(test_satisfiable),
		cmocka_unit_test(test_can_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
