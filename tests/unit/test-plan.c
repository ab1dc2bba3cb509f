/* plan.c's check of a candidate's effective settings against the plan
 * (plan_check_effective): what sshd -T reports for the user must be what
 * the task ordered, or the task fails before sshd is reloaded. Pure: a
 * plan and the settings as sshd_settings holds them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plan.h"

static struct plan plan_of(int password, int kbdinteractive)
{
	return (struct plan){ .user = { .name = "alice" }, .password = password, .kbdinteractive = kbdinteractive };
}

static struct sshd_settings settings_of(int password, int kbdinteractive, int pubkey)
{
	return (struct sshd_settings){ .password = password, .kbdinteractive = kbdinteractive, .pubkey = pubkey,
				       .ports = { 22 }, .n_ports = 1 };
}

/* Fails with SSHD_CONFIG_INVALID and a message naming what. */
static void check_fails(const struct plan *p, const struct sshd_settings *s, bool stage1, const char *what)
{
	struct result res;
	result_init(&res);
	assert_int_equal(plan_check_effective(p, s, stage1, &res), -1);
	assert_int_equal(res.code, ERR_SSHD_CONFIG_INVALID);
	if (!strstr(res.msg, what))
		fail_msg("\"%s\" does not name \"%s\"", res.msg, what);
	result_free(&res);
}

static void check_ok(const struct plan *p, const struct sshd_settings *s, bool stage1)
{
	struct result res;
	result_init(&res);
	assert_int_equal(plan_check_effective(p, s, stage1, &res), 0);
	assert_int_equal(res.code, ERR_NONE);
	result_free(&res);
}

static void test_password(void **state)
{
	(void)state;
	struct plan p = plan_of(-1, -1);
	struct sshd_settings s = settings_of(1, 1, 1);
	/* No order about passwords: anything goes. */
	check_ok(&p, &s, false);
	/* Off ordered, sshd still offers it for the user. */
	p = plan_of(0, 0);
	check_fails(&p, &s, false, "PasswordAuthentication for user alice stays yes");
	s.password = 0;
	check_fails(&p, &s, false, "KbdInteractiveAuthentication for user alice stays yes");
	s.kbdinteractive = 0;
	check_ok(&p, &s, false);
	/* On ordered (disassociate), sshd withholds it. */
	p = plan_of(1, -1);
	check_fails(&p, &s, false, "PasswordAuthentication for user alice stays no");
	s.password = 1;
	check_ok(&p, &s, false);
}

static void test_pubkey(void **state)
{
	(void)state;
	struct pubkey key = { 0 };
	struct plan p = plan_of(-1, -1);
	struct sshd_settings s = settings_of(1, 1, 0);
	/* Keys to accept need PubkeyAuthentication; a disassociate does not. */
	check_ok(&p, &s, false);
	p.accept = &key;
	p.n_accept = 1;
	check_fails(&p, &s, false, "PubkeyAuthentication is off for user alice");
	s.pubkey = 1;
	check_ok(&p, &s, false);
}

static void test_ports(void **state)
{
	(void)state;
	struct plan p = plan_of(-1, -1);
	struct sshd_settings s = settings_of(1, 1, 1);
	/* Unchanged port: sshd's ports are not the plan's business. */
	s.ports[1] = 2200;
	s.n_ports = 2;
	check_ok(&p, &s, false);

	/* 22 -> 2222: first both (stage1), then only the new one. */
	p.port = 2222;
	p.port_change = true;
	p.stage1_ports[0] = 22;
	p.stage1_ports[1] = 2222;
	p.n_stage1_ports = 2;
	s.ports[0] = 22;
	s.ports[1] = 2222;
	s.n_ports = 2;
	check_ok(&p, &s, true);
	check_fails(&p, &s, false, "sshd would still listen on port 22");
	s.n_ports = 1;
	check_fails(&p, &s, true, "sshd would not listen on port 2222");
	s.ports[0] = 2222;
	check_ok(&p, &s, false);
	/* A Port line the agent could not change (a vendor drop-in). */
	s.ports[1] = 8022;
	s.n_ports = 2;
	check_fails(&p, &s, false, "port 8022");
	s.n_ports = 1;

	/* ListenAddress with its own port keeps sshd there; one without a
	 * port, or on the new port, is fine. */
	assert_int_equal(strv_push(&s.listen, "0.0.0.0:2222"), 0);
	assert_int_equal(strv_push(&s.listen, "[::]:2222"), 0);
	check_ok(&p, &s, false);
	assert_int_equal(strv_push(&s.listen, "10.0.0.1:22"), 0);
	check_fails(&p, &s, false, "ListenAddress 10.0.0.1:22 keeps its own port");
	strv_free(&s.listen);
	assert_int_equal(strv_push(&s.listen, "10.0.0.1:x"), 0);
	check_fails(&p, &s, false, "ListenAddress 10.0.0.1:x");
	strv_free(&s.listen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password),
		cmocka_unit_test(test_pubkey),
		cmocka_unit_test(test_ports),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
