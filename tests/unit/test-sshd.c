/* sshd.c: `sshd -T` parsing, AuthorizedKeysFile expansion, and which units
 * or signals a reload uses (no running systemd needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "sshd.h"
#include "sshdpenalty.h"

static const char SSHD_T[] = "port 22\nport 2222\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n"
			     "usepam yes\npasswordauthentication no\nkbdinteractiveauthentication yes\n"
			     "pubkeyauthentication yes\npidfile /run/sshd.pid\n"
			     "authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\n"
			     "hostkey /etc/ssh/ssh_host_rsa_key\nhostkey /etc/ssh/ssh_host_ed25519_key\n";

static void test_parse(void **state)
{
	(void)state;
	struct sshd_settings s;
	assert_int_equal(sshd_settings_parse(SSHD_T, sizeof(SSHD_T) - 1, &s), 0);
	assert_int_equal(s.n_ports, 2);
	assert_int_equal(s.ports[0], 22);
	assert_int_equal(s.ports[1], 2222);
	assert_int_equal(s.password, 0);
	assert_int_equal(s.kbdinteractive, 1);
	assert_int_equal(s.pubkey, 1);
	assert_string_equal(s.pidfile, "/run/sshd.pid");
	assert_string_equal(s.authorized_keys_file, ".ssh/authorized_keys .ssh/authorized_keys2");
	assert_int_equal(s.hostkeys.n, 2);
	assert_string_equal(s.hostkeys.v[1], "/etc/ssh/ssh_host_ed25519_key");
	assert_int_equal(s.listen.n, 2);
	sshd_settings_free(&s);
}

/* OpenSSH 10.4 and later print the keywords as sshd's table spells them;
 * 10.6 also a ListenAddress with its rdomain. */
static const char SSHD_T_MIXED[] = "Port 22\nPort 2222\nListenAddress [::]:22\nListenAddress 0.0.0.0:22 rdomain vrf1\n"
				   "UsePAM yes\nPasswordAuthentication no\nKbdInteractiveAuthentication yes\n"
				   "PubkeyAuthentication yes\nPidFile /run/sshd.pid\n"
				   "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2\n"
				   "HostKey /etc/ssh/ssh_host_rsa_key\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
				   "HostKey /etc/ssh/ssh_host_mldsa44_ed25519_key\n"
				   "PerSourcePenalties crash:90s authfail:5s noauth:1s min:15s max:600s\n"
				   "PerSourcePenaltyExemptList 10.0.2.2,192.168.0.0/16\n";

static void test_parse_mixed_case(void **state)
{
	(void)state;
	struct sshd_settings s;
	assert_int_equal(sshd_settings_parse(SSHD_T_MIXED, sizeof(SSHD_T_MIXED) - 1, &s), 0);
	assert_int_equal(s.n_ports, 2);
	assert_int_equal(s.ports[0], 22);
	assert_int_equal(s.ports[1], 2222);
	assert_int_equal(s.password, 0);
	assert_int_equal(s.kbdinteractive, 1);
	assert_int_equal(s.pubkey, 1);
	assert_string_equal(s.pidfile, "/run/sshd.pid");
	assert_string_equal(s.authorized_keys_file, ".ssh/authorized_keys .ssh/authorized_keys2");
	assert_int_equal(s.hostkeys.n, 3);
	assert_int_equal(s.listen.n, 2);
	assert_string_equal(s.listen.v[0], "[::]:22");
	assert_string_equal(s.listen.v[1], "0.0.0.0:22");
	assert_string_equal(s.penalties, "crash:90s authfail:5s noauth:1s min:15s max:600s");
	assert_string_equal(s.penalty_exempt, "10.0.2.2,192.168.0.0/16");
	assert_false(sshdpenalty_exempt(s.penalties, s.penalty_exempt, "127.0.0.1"));
	assert_true(sshdpenalty_exempt(s.penalties, s.penalty_exempt, "192.168.7.9"));
	sshd_settings_free(&s);
}

static void test_penalty_exempt(void **state)
{
	(void)state;
	static const char pen[] = "crash:90s authfail:5s";
	/* No penalties: an sshd before 9.8, or "PerSourcePenalties no". */
	assert_true(sshdpenalty_exempt(NULL, NULL, "127.0.0.1"));
	assert_true(sshdpenalty_exempt("no", NULL, "127.0.0.1"));
	assert_true(sshdpenalty_exempt("NO", "", "::1"));
	assert_false(sshdpenalty_exempt(pen, NULL, "127.0.0.1"));
	assert_false(sshdpenalty_exempt(pen, "none", "127.0.0.1"));
	assert_true(sshdpenalty_exempt(pen, "127.0.0.1", "127.0.0.1"));
	assert_true(sshdpenalty_exempt(pen, "10.0.0.1,127.0.0.0/8", "127.0.0.1"));
	assert_true(sshdpenalty_exempt(pen, "127.0.0.0/8", "127.255.0.9"));
	assert_false(sshdpenalty_exempt(pen, "127.0.0.0/31", "127.0.0.2"));
	assert_true(sshdpenalty_exempt(pen, "127.0.0.0/31", "127.0.0.1"));
	assert_true(sshdpenalty_exempt(pen, "127.0.0.1/0", "8.8.8.8"));
	assert_false(sshdpenalty_exempt(pen, "127.0.0.1/33", "127.0.0.1"));
	assert_false(sshdpenalty_exempt(pen, "127.0.0.1/x", "127.0.0.1"));
	assert_false(sshdpenalty_exempt(pen, "::1", "127.0.0.1"));
	assert_true(sshdpenalty_exempt(pen, "10.1.1.1,::1", "::1"));
	assert_true(sshdpenalty_exempt(pen, "fd00::/8", "fd12:3456::1"));
	assert_false(sshdpenalty_exempt(pen, "fd00::/8", "fe80::1"));
	assert_false(sshdpenalty_exempt(pen, "127.0.0.1", "localhost"));
	assert_false(sshdpenalty_exempt(pen, "127.0.0.1", NULL));

	/* The list that spares the agent: an IPv4 address in both forms (a
	 * dual-stack socket, ssh.socket's [::]:22, shows 127.0.0.1 to sshd as
	 * ::ffff:127.0.0.1; trixie with ssh.socket penalised the agent with
	 * only "127.0.0.1" in the list), the admin's entries kept. */
	char out[128];
	assert_int_equal(sshdpenalty_exempt_add(pen, "10.0.2.2", "10.0.2.2", "127.0.0.1", out, sizeof(out)), 1);
	assert_string_equal(out, "10.0.2.2,127.0.0.1,::ffff:127.0.0.1");
	assert_int_equal(sshdpenalty_exempt_add(pen, "10.0.2.2,127.0.0.1", "10.0.2.2,127.0.0.1", "127.0.0.1", out,
						sizeof(out)),
			 1);
	assert_string_equal(out, "10.0.2.2,127.0.0.1,::ffff:127.0.0.1");
	assert_int_equal(sshdpenalty_exempt_add(pen, NULL, NULL, "127.0.0.1", out, sizeof(out)), 1);
	assert_string_equal(out, "127.0.0.1,::ffff:127.0.0.1");
	assert_int_equal(sshdpenalty_exempt_add(pen, "none", "none", "127.0.0.1", out, sizeof(out)), 1);
	assert_string_equal(out, "127.0.0.1,::ffff:127.0.0.1");
	/* Already spared in both forms (a /8 and ::ffff:0:0/96 cover them). */
	strcpy(out, "untouched");
	assert_int_equal(sshdpenalty_exempt_add(pen, "127.0.0.0/8,::ffff:0:0/96", "127.0.0.0/8,::ffff:0:0/96",
						"127.0.0.1", out, sizeof(out)),
			 0);
	assert_string_equal(out, "untouched");
	assert_int_equal(sshdpenalty_exempt_add("no", NULL, NULL, "127.0.0.1", out, sizeof(out)), 0);
	/* IPv6: one form. */
	assert_int_equal(sshdpenalty_exempt_add(pen, NULL, NULL, "::1", out, sizeof(out)), 1);
	assert_string_equal(out, "::1");
	/* Too long for the line. */
	char tiny[20];
	assert_int_equal(sshdpenalty_exempt_add(pen, "10.0.2.2", "10.0.2.2", "127.0.0.1", tiny, sizeof(tiny)), -ENOSPC);
}

static void test_parse_refuses_incomplete(void **state)
{
	(void)state;
	struct sshd_settings s;
	static const char no_port[] = "passwordauthentication no\nkbdinteractiveauthentication no\n"
				      "authorizedkeysfile .ssh/authorized_keys\nhostkey /k\n";
	static const char bad_port[] = "port 99999\n";
	assert_int_equal(sshd_settings_parse(no_port, sizeof(no_port) - 1, &s), -EBADMSG);
	sshd_settings_free(&s);
	assert_int_equal(sshd_settings_parse(bad_port, sizeof(bad_port) - 1, &s), -EBADMSG);
	sshd_settings_free(&s);
	assert_int_equal(sshd_settings_parse("", 0, &s), -EBADMSG);
	sshd_settings_free(&s);
}

static void test_expand(void **state)
{
	(void)state;
	static const struct {
		const char *pattern, *want;
	} cases[] = {
		{ ".ssh/authorized_keys", "/home/u/.ssh/authorized_keys" },
		{ "%h/.ssh/authorized_keys", "/home/u/.ssh/authorized_keys" },
		{ "/etc/ssh/keys/%u", "/etc/ssh/keys/u" },
		{ "/etc/ssh/keys/%U.pub", "/etc/ssh/keys/1001.pub" },
		{ "%u/keys", "/home/u/u/keys" },
		{ "/x/100%%", "/x/100%" },
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *p = sshd_expand_keys_path(cases[i].pattern, "/home/u", "u", 1001);
		assert_non_null(p);
		assert_string_equal(p, cases[i].want);
		free(p);
	}
	assert_null(sshd_expand_keys_path("/x/%q", "/home/u", "u", 1));
}

static struct config cfg_with(enum reload_kind kind, const char *arg)
{
	return (struct config){ .reload = kind, .reload_arg = (char *)arg };
}

static void test_plan_explicit(void **state)
{
	(void)state;
	struct sshd_settings s = { .pidfile = "/run/sshd.pid" };
	struct sshd_units none = { 0 };
	struct reload_plan plan;
	struct config c = cfg_with(RELOAD_NONE, NULL);
	assert_int_equal(sshd_reload_plan(&c, &s, &none, true, &plan), 0);
	assert_int_equal(plan.n, 0);
	c = cfg_with(RELOAD_PIDFILE, "/srv/sshd.pid");
	assert_int_equal(sshd_reload_plan(&c, &s, &none, false, &plan), 0);
	assert_int_equal(plan.n, 1);
	assert_int_equal(plan.steps[0].kind, STEP_SIGNAL);
	assert_string_equal(plan.steps[0].arg, "/srv/sshd.pid");
	c = cfg_with(RELOAD_COMMAND, "/bin/true");
	assert_int_equal(sshd_reload_plan(&c, &s, &none, false, &plan), 0);
	assert_int_equal(plan.steps[0].kind, STEP_COMMAND);
	c = cfg_with(RELOAD_SYSTEMD, "ssh.service");
	assert_int_equal(sshd_reload_plan(&c, &s, &none, false, &plan), -ENOENT);
}

/* The socket moved: daemon-reload, the socket and ssh.service stopped,
 * the socket started; n steps in all. */
static void assert_socket_move(const struct reload_plan *plan, size_t n)
{
	assert_int_equal(plan->n, n);
	assert_int_equal(plan->steps[0].kind, STEP_BUS_DAEMON_RELOAD);
	assert_int_equal(plan->steps[1].kind, STEP_BUS_STOP);
	assert_string_equal(plan->steps[1].arg, "ssh.socket");
	assert_int_equal(plan->steps[2].kind, STEP_BUS_STOP);
	assert_string_equal(plan->steps[2].arg, "ssh.service");
	assert_int_equal(plan->steps[3].kind, STEP_BUS_START);
	assert_string_equal(plan->steps[3].arg, "ssh.socket");
}

static void test_plan_auto(void **state)
{
	(void)state;
	struct sshd_settings s = { .pidfile = "/run/sshd.pid" };
	struct reload_plan plan;
	struct config c = cfg_with(RELOAD_AUTO, NULL);

	/* No systemd (containers, CI): the pid file sshd -T names. */
	struct sshd_units none = { 0 };
	assert_int_equal(sshd_reload_plan(&c, &s, &none, true, &plan), 0);
	assert_int_equal(plan.n, 1);
	assert_int_equal(plan.steps[0].kind, STEP_SIGNAL);
	assert_string_equal(plan.steps[0].arg, "/run/sshd.pid");

	/* Debian: ssh.service running. */
	struct sshd_units debian = { .bus = true, .ssh_service = true, .service_active = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &debian, true, &plan), 0);
	assert_int_equal(plan.n, 1);
	assert_int_equal(plan.steps[0].kind, STEP_BUS_RELOAD);
	assert_string_equal(plan.steps[0].arg, "ssh.service");

	/* Fedora: sshd.service. */
	struct sshd_units fedora = { .bus = true, .sshd_service = true, .service_active = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &fedora, false, &plan), 0);
	assert_string_equal(plan.steps[0].arg, "sshd.service");

	/* Ubuntu 22.10+, Debian 13 with ssh.socket: a port change reruns the
	 * generators, stops the socket and the running sshd (which keeps the
	 * old socket it was handed bound), then starts both; a password
	 * change restarts sshd (below). */
	struct sshd_units ubuntu = { .bus = true, .ssh_service = true, .service_active = true,
				     .ssh_socket_active = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &ubuntu, true, &plan), 0);
	assert_socket_move(&plan, 5);
	assert_int_equal(plan.steps[4].kind, STEP_BUS_START);
	assert_string_equal(plan.steps[4].arg, "ssh.service");
	/* No port change under socket activation: sshd restarted, not sent
	 * SIGHUP (its re-exec closes the sockets it was handed and cannot
	 * bind the ports the socket holds). */
	assert_int_equal(sshd_reload_plan(&c, &s, &ubuntu, false, &plan), 0);
	assert_int_equal(plan.n, 1);
	assert_int_equal(plan.steps[0].kind, STEP_BUS_RESTART);
	assert_string_equal(plan.steps[0].arg, "ssh.service");

	/* Socket activated, no sshd started yet, a port change: the socket
	 * moves, the next connection starts sshd on it. sshd is stopped all
	 * the same (a connection since the units were asked, the proof's own,
	 * may have started it, and systemd refuses to start a socket whose
	 * service runs), and not started again. */
	struct sshd_units waiting = { .bus = true, .ssh_service = true, .ssh_socket_active = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &waiting, true, &plan), 0);
	assert_socket_move(&plan, 4);

	/* The rollback's start under socket activation: the socket again on
	 * the restored ports, sshd stopped first whatever it was doing. */
	struct sshd_units *starts[] = { &waiting, &ubuntu };
	for (size_t i = 0; i < 2; i++) {
		sshd_start_plan(&c, starts[i], &plan);
		assert_socket_move(&plan, 4);
	}
	/* No socket: the service restarted. */
	sshd_start_plan(&c, &debian, &plan);
	assert_int_equal(plan.n, 1);
	assert_int_equal(plan.steps[0].kind, STEP_BUS_RESTART);
	assert_string_equal(plan.steps[0].arg, "ssh.service");

	/* Socket activated, no sshd started yet, no port change: nothing. */
	struct sshd_units idle = { .bus = true, .ssh_service = true, .ssh_socket_active = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &idle, false, &plan), 0);
	assert_int_equal(plan.n, 0);

	/* A bus but no ssh unit (sshd started by hand): the pid file. */
	struct sshd_units bare = { .bus = true };
	assert_int_equal(sshd_reload_plan(&c, &s, &bare, false, &plan), 0);
	assert_int_equal(plan.steps[0].kind, STEP_SIGNAL);

	/* Nothing at all to reload with. */
	struct sshd_settings nopid = { .pidfile = NULL };
	assert_int_equal(sshd_reload_plan(&c, &nopid, &none, false, &plan), -ENOENT);
}

static void test_exec(void **state)
{
	(void)state;
	struct buf out = { 0 };
	char msg[128];
	char *echo[] = { "/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL };
	assert_int_equal(sshd_exec(echo, 5000, &out, msg, sizeof(msg)), 3);
	assert_string_equal(out.data, "out\n");
	assert_string_equal(msg, "err");
	buf_free(&out);
	char *slow[] = { "/bin/sleep", "10", NULL };
	assert_int_equal(sshd_exec(slow, 100, NULL, msg, sizeof(msg)), -ETIMEDOUT);
	char *missing[] = { "/nonexistent/sshd", NULL };
	assert_int_equal(sshd_exec(missing, 1000, NULL, msg, sizeof(msg)), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),	    cmocka_unit_test(test_parse_mixed_case), cmocka_unit_test(test_penalty_exempt),	    cmocka_unit_test(test_parse_refuses_incomplete),
		cmocka_unit_test(test_expand),	    cmocka_unit_test(test_plan_explicit),
		cmocka_unit_test(test_plan_auto),   cmocka_unit_test(test_exec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
