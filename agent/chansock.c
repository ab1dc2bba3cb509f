/* The local channel's socket (chansock.h). */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/util.h>

#include "chansock.h"
#include "sdnotify.h"
#include "util.h"

/* The socket systemd passed us for this path, if it did. */
static int chansock_activated(const char *path)
{
	int n = sdnotify_listen_fds();
	for (int fd = SDNOTIFY_LISTEN_FDS_START; fd < SDNOTIFY_LISTEN_FDS_START + n; fd++)
		if (sdnotify_is_unix_listener(fd, path))
			return fd;
	return -ENOENT;
}

static int chansock_parent(const struct sockaddr_un *sun)
{
	char dir[sizeof(sun->sun_path)];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s", sun->sun_path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* A socket left by an agent that died goes; a live agent's socket, or a
 * file that is not a socket at all, stays and stops us. */
static int chansock_stale(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0)
		return -EADDRINUSE;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int chansock_bind(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	int r = chansock_parent(&sun);
	if (r == 0)
		r = chansock_stale(path, &sun);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Created 0600 from the start: no moment where others may connect. */
	mode_t old = umask(0177);
	r = bind(fd, (const struct sockaddr *)&sun, sizeof(sun));
	int e = errno;
	umask(old);
	if (r < 0)
		return -e;
	if (chmod(path, 0600) < 0) {
		e = errno;
		unlink(path);
		return -e;
	}
	/* cppcheck-suppress unreadVariable ; the _cleanup_ reads it */
	return TAKE_FD(fd);
}

int chansock_open(const char *path, bool *bound)
{
	*bound = false;
	/* systemd keeps its socket across our reloads: not ours to unlink.
	 * Passed blocking unless the unit says NonBlocking=yes, and libevent
	 * accepts until EAGAIN. */
	int fd = chansock_activated(path);
	if (fd >= 0) {
		int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (dup < 0 || evutil_make_socket_nonblocking(dup) < 0)
			return dup < 0 ? -errno : (close(dup), -EIO);
		return dup;
	}
	fd = chansock_bind(path);
	if (fd < 0)
		return fd;
	if (listen(fd, SOMAXCONN) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return -e;
	}
	*bound = true;
	return fd;
}

const char *chansock_strerror(int err)
{
	return err == -EEXIST ? "it exists and is not a socket" :
	       err == -EADDRINUSE ? "another agent is listening there" : strerror(-err);
}
