/* Finding kps-agent's helper executables (helper.h). */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "helper.h"
#include "log.h"
#include "util.h"
#include "version.h"

/* dir/name may be used when it is a regular file owned by the owner of
 * our own executable and writable by no one else. */
static int helper_try(const char *dir, const char *name, const struct stat *self)
{
	char path[PATH_MAX];
	struct stat st;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != self->st_uid || (st.st_mode & 022)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

int helper_open(const char *name)
{
	char self[PATH_MAX];
	struct stat st;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0 && stat("/proc/self/exe", &st) == 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			int fd = helper_try(slash == self ? "/" : self, name, &st);
			if (fd >= 0)
				return fd;
		}
	}
	struct stat root = { .st_uid = 0 };
	return helper_try(KPS_LIBEXECDIR, name, &root);
}

int helper_role(int argc, char **argv, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "%s: started only by `kps-agent run`\n", argc > 0 ? argv[0] : "kps-agent");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (!streq(argv[i], "-v"))
			return 2;
		log_set_debug(true);
	}
	return 0;
}

int helper_exec(const char *name, char *const argv[])
{
	_cleanup_close_ int fd = helper_open(name);
	if (fd < 0)
		return fd;
	fexecve(fd, argv, environ);
	return -errno;
}
