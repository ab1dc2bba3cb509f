/* systemd's protocols without libsystemd (sdnotify.h). */
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sdnotify.h"
#include "util.h"

int sdnotify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (!path || !*path)
		return 0;
	size_t len = strlen(path);
	/* An absolute path, or '@' for the abstract namespace; the vsock form
	 * is for VMs' own managers, never a service's. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path))
		return -EAFNOSUPPORT;
	memcpy(sun.sun_path, path, len);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sun, sl);
	if (n < 0)
		return -errno;
	return (size_t)n == strlen(state) ? 1 : -EPROTO;
}

int sdnotify_sendf(const char *fmt, ...)
{
	char state[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(state, sizeof(state), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	return sdnotify_send(state);
}

/* A decimal number that is all of s, > 0. */
static bool sdnotify_number(const char *s, unsigned long long *v)
{
	char *end;
	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && *v > 0;
}

/* $LISTEN_PID / $WATCHDOG_PID: absent (watchdog only) or this process. */
static bool sdnotify_ours(const char *var, bool absent_ok)
{
	unsigned long long pid;
	const char *s = getenv(var);
	if (!s)
		return absent_ok;
	return sdnotify_number(s, &pid) && pid == (unsigned long long)getpid();
}

uint64_t sdnotify_watchdog_usec(void)
{
	unsigned long long usec;
	if (!sdnotify_ours("WATCHDOG_PID", true) || !sdnotify_number(getenv("WATCHDOG_USEC"), &usec))
		return 0;
	return usec;
}

int sdnotify_listen_fds(void)
{
	unsigned long long n;
	if (!sdnotify_ours("LISTEN_PID", false) || !sdnotify_number(getenv("LISTEN_FDS"), &n) || n > 1024)
		return 0;
	return (int)n;
}

bool sdnotify_is_unix_listener(int fd, const char *path)
{
	struct sockaddr_un sun = { 0 };
	socklen_t len = sizeof(sun);
	int type = 0, listening = 0;
	socklen_t tl = sizeof(type), ll = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || !listening ||
	    getsockname(fd, (struct sockaddr *)&sun, &len) < 0 || sun.sun_family != AF_UNIX)
		return false;
	size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
	size_t want = strlen(path);
	/* The kernel may count the name's terminating NUL or not. */
	if (n > 0 && sun.sun_path[n - 1] == '\0')
		n--;
	return n == want && memcmp(sun.sun_path, path, want) == 0;
}
