/* config.c: defaults, every key, and the errors that name file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "config.h"

static char dir[] = "/tmp/kps-test-config.XXXXXX";

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int load(const char *text, struct config *cfg, char *err, size_t errlen)
{
	char path[256];
	write_file("kps.conf", text);
	snprintf(path, sizeof(path), "%s/kps.conf", dir);
	return config_load(path, true, cfg, err, errlen);
}

static void test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	char err[256];
	assert_int_equal(config_load("/nonexistent/kps.conf", false, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.state_dir, "/var/lib/kps-agent");
	assert_string_equal(cfg.user, "root");
	assert_string_equal(cfg.sshd_binary, "/usr/sbin/sshd");
	assert_string_equal(cfg.sshd_config, "/etc/ssh/sshd_config");
	assert_int_equal(cfg.reload, RELOAD_AUTO);
	assert_string_equal(cfg.address, "127.0.0.1");
	assert_string_equal(cfg.url, "");
	assert_string_equal(cfg.socket, "/run/kps-agent/agent.sock");
	assert_null(cfg.path);
	config_free(&cfg);
	assert_int_equal(config_load("/nonexistent/kps.conf", true, &cfg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/kps.conf"));
	config_free(&cfg);
}

static void test_every_key(void **state)
{
	(void)state;
	struct config cfg;
	char err[256] = "";
	int r = load("# comment\n; comment\n[agent]\nstate_dir = /srv/state ; why\nuser = admin\ntask_timeout = 30\n"
		     "[sshd]\nbinary = /opt/sshd\nconfig = /opt/sshd_config\nreload = systemd:ssh.service\n"
		     "address = ::1\nconnect_timeout = 3\nprobe_timeout = 7\n"
		     "[control_plane]\nurl = https://cp.example/api\nserver_id = d76baba7-ef09\n"
		     "token_file = /etc/kps-agent/token\nca_file = /etc/ssl/ca.pem\npoll_wait = 30\n"
		     "[channel]\nsocket =\ndevice = /dev/virtio-ports/org.kps.agent.0\n",
		     &cfg, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_string_equal(cfg.state_dir, "/srv/state");
	assert_string_equal(cfg.user, "admin");
	assert_int_equal(cfg.task_timeout_s, 30);
	assert_string_equal(cfg.sshd_binary, "/opt/sshd");
	assert_int_equal(cfg.reload, RELOAD_SYSTEMD);
	assert_string_equal(cfg.reload_arg, "ssh.service");
	assert_string_equal(cfg.address, "::1");
	assert_int_equal(cfg.connect_timeout_ms, 3000);
	assert_int_equal(cfg.probe_timeout_ms, 7000);
	assert_string_equal(cfg.url, "https://cp.example/api");
	assert_string_equal(cfg.server_id, "d76baba7-ef09");
	assert_int_equal(cfg.poll_wait_s, 30);
	assert_string_equal(cfg.socket, "");
	assert_string_equal(cfg.device, "/dev/virtio-ports/org.kps.agent.0");
	char *id = config_server_id(&cfg);
	assert_string_equal(id, "d76baba7-ef09");
	free(id);
	config_free(&cfg);
}

static void test_reload_forms(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int ok;
		enum reload_kind kind;
	} cases[] = {
		{ "auto", 1, RELOAD_AUTO },
		{ "none", 1, RELOAD_NONE },
		{ "pidfile:/run/sshd.pid", 1, RELOAD_PIDFILE },
		{ "command:/bin/systemctl reload ssh", 1, RELOAD_COMMAND },
		{ "systemd:sshd.service", 1, RELOAD_SYSTEMD },
		{ "pidfile:", 0, 0 },
		{ "pidfile:relative.pid", 0, 0 },
		{ "command:systemctl", 0, 0 },
		{ "systemd:", 0, 0 },
		{ "always", 0, 0 },
		{ "AUTO", 0, 0 },
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char text[256], err[256] = "";
		struct config cfg;
		snprintf(text, sizeof(text), "[sshd]\nreload = %s\n", cases[i].text);
		int r = load(text, &cfg, err, sizeof(err));
		if (cases[i].ok) {
			assert_int_equal(r, 0);
			assert_int_equal(cfg.reload, cases[i].kind);
		} else {
			assert_int_equal(r, -EINVAL);
			assert_non_null(strstr(err, ":2:"));
			assert_non_null(strstr(err, "reload"));
		}
		config_free(&cfg);
	}
}

static void test_errors_name_file_line_key(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *line;
		const char *needle;
	} cases[] = {
		{ "[agent]\nuser = root\nbogus = 1\n", ":3:", "bogus" },
		{ "[agent]\n[nosuch]\nkey = 1\n", ":3:", "nosuch" },
		{ "top = 1\n", ":1:", "top" },
		{ "[agent]\nstate_dir = var/lib\n", ":2:", "state_dir" },
		{ "[agent]\nuser = -rf\n", ":2:", "user" },
		{ "[agent]\ntask_timeout = soon\n", ":2:", "task_timeout" },
		{ "[sshd]\naddress = example.com\n", ":2:", "address" },
		{ "[control_plane]\nurl = ftp://x\n", ":2:", "url" },
		{ "[control_plane]\nserver_id = a b\n", ":2:", "server_id" },
		{ "[channel]\nsocket = relative.sock\n", ":2:", "socket" },
		{ "[agent\n", ":1:", "" },
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct config cfg;
		char err[256] = "";
		assert_int_equal(load(cases[i].text, &cfg, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "kps.conf"));
		assert_non_null(strstr(err, cases[i].line));
		assert_non_null(strstr(err, cases[i].needle));
		config_free(&cfg);
	}
}

static void test_dropins_in_order(void **state)
{
	(void)state;
	char d[256], err[256] = "";
	struct config cfg;
	snprintf(d, sizeof(d), "%s/conf.d", dir);
	mkdir(d, 0755);
	write_file("conf.d/10-a.conf", "[agent]\nuser = first\n");
	write_file("conf.d/20-b.conf", "[agent]\nuser = second\n");
	write_file("conf.d/ignored.txt", "[agent]\nuser = never\n");
	assert_int_equal(load("[agent]\nuser = main\n", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.user, "second");
	config_free(&cfg);
	write_file("conf.d/30-bad.conf", "[agent]\nnope = 1\n");
	assert_int_equal(load("[agent]\nuser = main\n", &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "30-bad.conf:2:"));
	config_free(&cfg);
	char p[300];
	snprintf(p, sizeof(p), "%s/conf.d/30-bad.conf", dir);
	unlink(p);
}

/* [policy] and verify_key: defaults, values, and refusals naming the key. */
static void test_policy_and_verify_key(void **state)
{
	(void)state;
	struct config cfg;
	char err[256] = "";
	assert_int_equal(load("", &cfg, err, sizeof(err)), 0);
	assert_true(cfg.allow_root && cfg.allow_port && cfg.allow_password_login);
	assert_int_equal(cfg.policy_users.n, 0);
	assert_int_equal(cfg.verify_keys.n, 0);
	config_free(&cfg);
	assert_int_equal(load("[policy]\nusers = ubuntu, deploy ,ubuntu\nallow_root = no\nallow_port = false\n"
			      "allow_password_login = 0\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.policy_users.n, 2);
	assert_string_equal(cfg.policy_users.v[0], "ubuntu");
	assert_string_equal(cfg.policy_users.v[1], "deploy");
	assert_false(cfg.allow_root || cfg.allow_port || cfg.allow_password_login);
	config_free(&cfg);
	static const char *const bad[] = {
		"[policy]\nallow_root = maybe\n", "[policy]\nusers = a b\n", "[policy]\nusers = -x\n",
		"[policy]\nallow_port =\n", "[policy]\nother = 1\n", "[control_plane]\nverify_key = relative\n",
		"[control_plane]\nverify_key = /nonexistent/verify_key\n",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		err[0] = '\0';
		assert_true(load(bad[i], &cfg, err, sizeof(err)) < 0);
		assert_true(strstr(err, "policy") || strstr(err, "verify_key"));
		config_free(&cfg);
	}
	/* A file of keys: read at load; anything else in it stops the load. */
	write_file("vk", "# cp\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH4 cp\n");
	char conf[512];
	snprintf(conf, sizeof(conf), "[control_plane]\nverify_key = %s/vk\n", dir);
	assert_int_equal(load(conf, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.verify_keys.n, 1);
	config_free(&cfg);
	write_file("vk", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n");
	assert_true(load(conf, &cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "line 1"));
	config_free(&cfg);
}

/* [agent] unprivileged_user: the network side's user, a user name as
 * written (never resolved at load), default kps-agent. */
/* What the monitor hands its processes: the same configuration, whatever
 * the file says later; a settings block cut short or with a bad value is
 * refused. */
static void test_settings_replay(void **state)
{
	(void)state;
	struct config cfg, copy;
	char err[256] = "";
	assert_int_equal(load("[agent]\nuser = admin\nunprivileged_user = netuser\n[sshd]\nreload = pidfile:/run/s.pid\n"
			      "[control_plane]\nurl = http://10.0.0.1:8080/x\nserver_id = abc\n"
			      "[policy]\nusers = a, b\nallow_port = no\n",
			      &cfg, err, sizeof(err)),
			 0);
	write_file("kps.conf", "[agent]\nuser = = broken\n");
	assert_int_equal(config_load_settings(cfg.settings.data, cfg.settings.len, &copy, err, sizeof(err)), 0);
	assert_string_equal(copy.user, cfg.user);	/* a drop-in of an earlier test may set it */
	assert_string_equal(copy.unprivileged_user, "netuser");
	assert_int_equal(copy.reload, RELOAD_PIDFILE);
	assert_string_equal(copy.reload_arg, "/run/s.pid");
	assert_string_equal(copy.url, "http://10.0.0.1:8080/x");
	assert_int_equal(copy.policy_users.n, 2);
	assert_false(copy.allow_port);
	assert_true(copy.allow_root);
	assert_int_equal(copy.settings.len, cfg.settings.len);
	config_free(&copy);
	/* Cut short: the last value without its end. */
	assert_int_equal(config_load_settings(cfg.settings.data, cfg.settings.len - 1, &copy, err, sizeof(err)),
			 -EBADMSG);
	config_free(&copy);
	config_free(&cfg);
	static const char bad[] = "agent\0task_timeout\0never\0";
	assert_int_equal(config_load_settings(bad, sizeof(bad) - 1, &copy, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "task_timeout"));
	config_free(&copy);
	static const char unknown[] = "agent\0nope\0x\0";
	assert_int_equal(config_load_settings(unknown, sizeof(unknown) - 1, &copy, err, sizeof(err)), -EINVAL);
	config_free(&copy);
}

static void test_unprivileged_user(void **state)
{
	(void)state;
	struct config cfg;
	char err[256] = "";
	assert_int_equal(load("", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.unprivileged_user, "kps-agent");
	config_free(&cfg);
	/* A user that does not exist loads: `run` resolves it. */
	assert_int_equal(load("[agent]\nunprivileged_user = kps-no-such-user ; not resolved\n", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.unprivileged_user, "kps-no-such-user");
	config_free(&cfg);
	static const char longest[] = "abcdefghijklmnopqrstuvwxyz_.-789";
	assert_int_equal(strlen(longest), CONFIG_USER_MAX);
	char text[128];
	snprintf(text, sizeof(text), "[agent]\nunprivileged_user = %s\n", longest);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.unprivileged_user, longest);
	config_free(&cfg);
	static const char *const bad[] = {
		"-kps", "kps agent", "kps/agent", "kps:agent", "r\xc3\xb6ot", "abcdefghijklmnopqrstuvwxyz_.-7890", "",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		snprintf(text, sizeof(text), "[agent]\nuser = root\nunprivileged_user = %s\n", bad[i]);
		err[0] = '\0';
		assert_int_equal(load(text, &cfg, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "kps.conf:3: [agent] unprivileged_user must be a user name"));
		config_free(&cfg);
	}
}

int main(void)
{
	assert_non_null(mkdtemp(dir));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_reload_forms),
		cmocka_unit_test(test_errors_name_file_line_key),
		cmocka_unit_test(test_dropins_in_order),
		cmocka_unit_test(test_policy_and_verify_key),
		cmocka_unit_test(test_unprivileged_user),
		cmocka_unit_test(test_settings_replay),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return r;
}
