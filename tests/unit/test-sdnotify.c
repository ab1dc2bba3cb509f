/* sdnotify.c: systemd's protocols without libsystemd. The notification
 * datagram on a real socket (path and abstract), the watchdog's and
 * socket activation's environment as sd_watchdog_enabled(3) and
 * sd_listen_fds(3) read it, and the listener check on real sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "sdnotify.h"
#include "util.h"

static int bound_dgram(struct sockaddr_un *sun, socklen_t *len, bool abstract)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	*sun = (struct sockaddr_un){ .sun_family = AF_UNIX };
	int n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/kps-sdnotify-%ld", abstract ? "@" : "/tmp",
			 (long)getpid());
	if (abstract)
		sun->sun_path[0] = '\0';
	else
		unlink(sun->sun_path);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
	assert_int_equal(bind(fd, (struct sockaddr *)sun, *len), 0);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_notify_path_and_abstract(void **s)
{
	(void)s;
	for (int abstract = 0; abstract < 2; abstract++) {
		struct sockaddr_un sun;
		socklen_t len;
		int fd = bound_dgram(&sun, &len, abstract);
		char env[sizeof(sun.sun_path) + 1];
		snprintf(env, sizeof(env), "%s", abstract ? "@" : sun.sun_path);
		if (abstract)
			snprintf(env + 1, sizeof(env) - 1, "%s", sun.sun_path + 1);
		setenv("NOTIFY_SOCKET", env, 1);
		assert_int_equal(sdnotify_send("READY=1"), 1);
		expect_datagram(fd, "READY=1");
		assert_int_equal(sdnotify_sendf("STATUS=%d applied", 3), 1);
		expect_datagram(fd, "STATUS=3 applied");
		close(fd);
		if (!abstract)
			unlink(sun.sun_path);
	}
}

static void test_notify_none_or_bad(void **s)
{
	(void)s;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(sdnotify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sdnotify_send("READY=1"), -EAFNOSUPPORT);
	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	assert_int_equal(sdnotify_send("READY=1"), -EAFNOSUPPORT);
	setenv("NOTIFY_SOCKET", "/nonexistent/kps-notify", 1);
	assert_true(sdnotify_send("READY=1") < 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_env(void **s)
{
	(void)s;
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 30000000);	/* no WATCHDOG_PID: ours */
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", "1", 1);				/* another process's */
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	setenv("WATCHDOG_PID", pid, 1);
	const char *bad[] = { "0", "-5", "12x", "", "99999999999999999999999" };
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		assert_int_equal(sdnotify_watchdog_usec(), 0);
	}
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
}

static void test_listen_fds_env(void **s)
{
	(void)s;
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	unsetenv("LISTEN_PID");
	setenv("LISTEN_FDS", "2", 1);
	assert_int_equal(sdnotify_listen_fds(), 0);	/* LISTEN_PID is required */
	setenv("LISTEN_PID", "1", 1);
	assert_int_equal(sdnotify_listen_fds(), 0);
	setenv("LISTEN_PID", pid, 1);
	assert_int_equal(sdnotify_listen_fds(), 2);
	setenv("LISTEN_FDS", "x", 1);
	assert_int_equal(sdnotify_listen_fds(), 0);
	setenv("LISTEN_FDS", "100000", 1);
	assert_int_equal(sdnotify_listen_fds(), 0);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
}

static void test_unix_listener(void **s)
{
	(void)s;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/kps-sdnotify-l-%ld", (long)getpid());
	unlink(path);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_false(sdnotify_is_unix_listener(fd, path));	/* bound, not listening */
	assert_int_equal(listen(fd, 4), 0);
	assert_true(sdnotify_is_unix_listener(fd, path));
	assert_false(sdnotify_is_unix_listener(fd, "/tmp/kps-sdnotify-other"));
	char longer[80];
	snprintf(longer, sizeof(longer), "%sx", path);
	assert_false(sdnotify_is_unix_listener(fd, longer));
	int dg = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_false(sdnotify_is_unix_listener(dg, path));
	int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(listen(tcp, 1), 0);
	assert_false(sdnotify_is_unix_listener(tcp, path));
	close(tcp);
	close(dg);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_path_and_abstract),
		cmocka_unit_test(test_notify_none_or_bad),
		cmocka_unit_test(test_watchdog_env),
		cmocka_unit_test(test_listen_fds_env),
		cmocka_unit_test(test_unix_listener),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
