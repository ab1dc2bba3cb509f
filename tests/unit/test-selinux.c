/* selinux.c: the port record the kernel picks; off where SELinux is off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "selinux.h"

static void test_port_pick(void **s)
{
	(void)s;
	/* The kernel takes the first record that holds the port: the policy
	 * lists single ports before the ranges. */
	static const struct selinux_port recs[] = {
		{ 22, 22, "ssh_port_t" },
		{ 2222, 2222, "ssh_port_t" },
		{ 80, 80, "http_port_t" },
		{ 1024, 32767, "unreserved_port_t" },
	};
	assert_string_equal(selinux_port_pick(recs, ELEMENTSOF(recs), 22), "ssh_port_t");
	assert_string_equal(selinux_port_pick(recs, ELEMENTSOF(recs), 2222), "ssh_port_t");
	assert_string_equal(selinux_port_pick(recs, ELEMENTSOF(recs), 2223), "unreserved_port_t");
	assert_null(selinux_port_pick(recs, ELEMENTSOF(recs), 40000));
}

static void test_off(void **s)
{
	(void)s;
	char type[64];
	if (selinux_on())
		skip();
	assert_int_equal(selinux_port_type(22, type, sizeof(type)), -ENOENT);
	assert_int_equal(selinux_create_as("/etc/ssh/sshd_config", 0100600), 0);
	selinux_create_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_pick),
		cmocka_unit_test(test_off),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
