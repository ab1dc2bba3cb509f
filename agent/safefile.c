/* The fd-based walk, StrictModes checks, reads and removals. Below a
 * directory the user owns, file system calls run with the user's fsuid
 * (fsuid.c) so that the kernel, not a check we made a moment earlier,
 * stops a race. Atomic replacement is safereplace.c's. */
#include <fcntl.h>

#include "fsuid.h"
#include "safefile.h"

#define SAFEFILE_MAX_LINKS 8

bool safefile_error_is_unsafe(int r)
{
	return r == -ELOOP || r == -EPERM || r == -EMLINK || r == -ENOTDIR || r == -EXDEV || r == -EINVAL;
}

static int check_dir(const struct stat *st, uid_t uid, const char *what, char *msg, size_t msglen)
{
	if (!S_ISDIR(st->st_mode)) {
		snprintf(msg, msglen, "%s is not a directory", what);
		return -ENOTDIR;
	}
	if (st->st_uid != 0 && st->st_uid != uid) {
		snprintf(msg, msglen, "%s is owned by uid %u, neither root nor the user", what,
			 (unsigned)st->st_uid);
		return -EPERM;
	}
	if (st->st_mode & 022) {
		snprintf(msg, msglen, "%s is writable by group or others (mode %03o)", what,
			 (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* A link that only root could have made or changed: root-owned, in a
 * root-owned directory nobody else may write, above anything the user owns. */
static int link_target(int dirfd, const struct stat *dirst, const char *name, bool user_part, char *target,
		       size_t size)
{
	struct stat lst;
	if (fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISLNK(lst.st_mode))
		return -ENOTDIR;
	if (user_part || dirst->st_uid != 0 || (dirst->st_mode & 022) || lst.st_uid != 0)
		return -ELOOP;
	ssize_t n = readlinkat(dirfd, name, target, size - 1);
	if (n < 0)
		return -errno;
	if ((size_t)n >= size - 1)
		return -ENAMETOOLONG;
	target[n] = '\0';
	return 0;
}

/* Splices a link target into the rest of the walk: path becomes
 * (target absolute ? target : walked + "/" + target) + "/" + rest. */
static int splice_link(char *path, size_t size, const char *walked, const char *target, const char *rest)
{
	char next[PATH_MAX];
	int n;
	/* The analyzer takes link_target's -errno for a possible 0, target unset. */
	/* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
	if (target[0] == '/')
		n = snprintf(next, sizeof(next), "%s/%s", target, rest);
	else
		n = snprintf(next, sizeof(next), "%s/%s/%s", walked, target, rest);
	if (n < 0 || (size_t)n >= sizeof(next) || (size_t)n >= size)
		return -ENAMETOOLONG;
	memcpy(path, next, (size_t)n + 1);
	return 0;
}

static bool inside(const char *walked, const char *home)
{
	size_t n = home ? strlen(home) : 0;
	if (n == 0)
		return false;
	while (n > 1 && home[n - 1] == '/')
		n--;
	return strncmp(walked, home, n) == 0 && (walked[n] == '\0' || walked[n] == '/');
}

static const struct safefile_labeller *labeller;

void safefile_set_labeller(const struct safefile_labeller *l)
{
	labeller = l;
}

int safefile_label_at(int dirfd, const char *name, mode_t mode)
{
	return labeller ? labeller->create_at(dirfd, name, mode) : 0;
}

void safefile_label_done(void)
{
	if (labeller)
		labeller->done();
}

static int make_dir(struct safefile_dir *dir, int parent, const char *name, char *msg, size_t msglen)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->uid != 0, dir->uid, dir->gid);
	int l = safefile_label_at(parent, name, S_IFDIR | 0700);
	if (l < 0) {
		snprintf(msg, msglen, "cannot find the SELinux context for %s: %s", name, strerror(-l));
		return l;
	}
	int made = mkdirat(parent, name, 0700);
	safefile_label_done();
	if (made < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(msg, msglen, "cannot create directory %s: %s", name, strerror(e));
		return -e;
	}
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchown(fd, dir->uid, dir->gid) < 0 || fchmod(fd, 0700) < 0 || fsync(parent) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	dir->created = true;
	return fd;
}

static int walk_step(struct safefile_dir *dir, int cur, const char *name,
		     const char *walked, bool last, const char *home, bool create, char *msg, size_t msglen)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->as_user, dir->uid, dir->gid);
	int fd = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT || !last)
		return fd >= 0 ? fd : -errno;
	fsuid_leave(&s);
	snprintf(msg, msglen, "directory %s/%s does not exist", walked, name);
	/* Only ~/.ssh-like leaves are created: inside home or a user's dir. */
	if (!dir->as_user && !inside(walked, home))
		return -ENOENT;
	if (!create) {
		dir->missing = true;
		return -ENOENT;
	}
	msg[0] = '\0';
	return make_dir(dir, cur, name, msg, msglen);
}

/* name, which walk_step would not open as a directory, may be a link only
 * root could have made: its target is spliced into todo in its place. */
static int follow_link(const struct safefile_dir *dir, const struct stat *st, const char *name, const char *walked,
		       const char *rest_of_todo, char *todo, size_t size, int *links, char *msg, size_t msglen)
{
	char target[PATH_MAX];
	int r = link_target(dir->fd, st, name, dir->as_user, target, sizeof(target));
	if (r == -ELOOP || r == -ENOTDIR) {
		snprintf(msg, msglen, "%s%s%s is %s", walked, streq(walked, "/") ? "" : "/", name,
			 r == -ELOOP ? "a symlink" : "not a directory");
		return r;
	}
	if (r < 0)
		return r;
	if (++*links > SAFEFILE_MAX_LINKS)
		return -ELOOP;
	char rest[PATH_MAX];
	snprintf(rest, sizeof(rest), "%s", rest_of_todo);
	return splice_link(todo, size, walked, target, rest);
}

/* The next component at *p into name; *p moves past it and its slashes. */
static int next_name(const char **p, char name[static NAME_MAX + 1])
{
	size_t n = strcspn(*p, "/");
	if (n > NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(name, *p, n);
	name[n] = '\0';
	*p += n;
	while (**p == '/')
		(*p)++;
	return 0;
}

/* The directory the walk is in passes StrictModes' checks; below one the
 * user owns, the walk goes on as the user. */
static int check_current(struct safefile_dir *dir, struct stat *st, const char *walked, char *msg, size_t msglen)
{
	if (fstat(dir->fd, st) < 0)
		return -errno;
	int r = check_dir(st, dir->uid, walked, msg, msglen);
	if (r < 0)
		return r;
	if (st->st_uid != 0)
		dir->as_user = true;
	return 0;
}

/* Steps into fd, the directory name below dir->fd. */
static void descend(struct safefile_dir *dir, int fd, const char *name, char *walked, size_t size)
{
	closep(&dir->parent_fd);
	dir->parent_fd = dir->fd;
	dir->fd = fd;
	snprintf(dir->name, sizeof(dir->name), "%s", name);
	size_t wl = strlen(walked);
	snprintf(walked + wl, size - wl, "%s%s", wl > 1 ? "/" : "", name);
}

#define WALK_AGAIN 1

/* One walk from / along todo: 0 with dir on its last directory,
 * WALK_AGAIN when a link was spliced into todo, or -errno. */
static int walk_from_root(struct safefile_dir *dir, char *todo, size_t size, const char *path, const char *home,
			  bool create, int *links, char *msg, size_t msglen)
{
	uid_t uid = dir->uid;
	gid_t gid = dir->gid;
	char walked[PATH_MAX];

	safefile_close_dir(dir);
	*dir = (struct safefile_dir){ .fd = -1, .parent_fd = -1, .uid = uid, .gid = gid };
	dir->fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir->fd < 0)
		return -errno;
	snprintf(walked, sizeof(walked), "/");
	struct stat st;
	/* next_name leaves p past the slashes after each name */
	for (const char *p = todo + strspn(todo, "/");;) {
		int r = check_current(dir, &st, walked, msg, msglen);
		if (r < 0)
			return r;
		if (!*p)
			return 0;
		char name[NAME_MAX + 1];
		r = next_name(&p, name);
		if (r < 0)
			return r;
		if (streq(name, "..") || streq(name, ".")) {
			snprintf(msg, msglen, "%s has a . or .. component", path);
			return -EINVAL;
		}
		int fd = walk_step(dir, dir->fd, name, walked, *p == '\0', home, create, msg, msglen);
		if (fd == -ELOOP || fd == -ENOTDIR) {
			r = follow_link(dir, &st, name, walked, p, todo, size, links, msg, msglen);
			return r < 0 ? r : WALK_AGAIN;
		}
		if (fd < 0) {
			if (!msg[0])
				snprintf(msg, msglen, "cannot open %s/%s: %s", walked, name, strerror(-fd));
			return fd;
		}
		descend(dir, fd, name, walked, sizeof(walked));
	}
}

int safefile_open_dir(const char *path, uid_t uid, gid_t gid, const char *home, bool create,
		      struct safefile_dir *dir, char *msg, size_t msglen)
{
	char todo[PATH_MAX];
	int links = 0;
	int r;

	msg[0] = '\0';
	*dir = (struct safefile_dir)SAFEFILE_DIR_INIT;
	dir->uid = uid;
	dir->gid = gid;
	if (path[0] != '/' || strlen(path) >= sizeof(todo)) {
		snprintf(msg, msglen, "%s is not an absolute path", path);
		return -EINVAL;
	}
	snprintf(todo, sizeof(todo), "%s", path);
	do
		r = walk_from_root(dir, todo, sizeof(todo), path, home, create, &links, msg, msglen);
	while (r == WALK_AGAIN);
	return r;
}

void safefile_close_dir(struct safefile_dir *dir)
{
	closep(&dir->fd);
	closep(&dir->parent_fd);
	dir->fd = dir->parent_fd = -1;
}

void safefile_stat_from(struct safefile_stat *out, const struct stat *st)
{
	*out = (struct safefile_stat){
		.exists = true,
		.uid = st->st_uid,
		.gid = st->st_gid,
		.mode = st->st_mode & 07777,
		.dev = st->st_dev,
		.ino = st->st_ino,
		.size = st->st_size,
		.mtime = st->st_mtim,
	};
}

static int check_file(const struct stat *st, uid_t uid, const char *name, char *msg, size_t msglen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(msg, msglen, "%s is not a regular file", name);
		return -EINVAL;
	}
	if (st->st_uid != 0 && st->st_uid != uid) {
		snprintf(msg, msglen, "%s is owned by uid %u, neither root nor the user", name,
			 (unsigned)st->st_uid);
		return -EPERM;
	}
	if (st->st_mode & 022) {
		snprintf(msg, msglen, "%s is writable by group or others (mode %03o)", name,
			 (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	if (st->st_nlink > 1) {
		snprintf(msg, msglen, "%s has %lu hard links", name, (unsigned long)st->st_nlink);
		return -EMLINK;
	}
	return 0;
}

static int read_all(int fd, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_buf_ struct buf b = { 0 };
	int r = buf_read_fd(&b, fd, max);
	if (r < 0)
		return r;
	*ret = buf_steal(&b, ret_len);
	return *ret ? 0 : -ENOMEM;
}

int safefile_read(const struct safefile_dir *dir, const char *name, size_t max, char **ret, size_t *ret_len,
		  struct safefile_stat *st, char *msg, size_t msglen)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->as_user, dir->uid, dir->gid);
	msg[0] = '\0';
	*st = (struct safefile_stat){ 0 };
	_cleanup_close_ int fd = openat(dir->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		*ret = calloc(1, 1);
		*ret_len = 0;
		return *ret ? 0 : -ENOMEM;
	}
	if (fd < 0) {
		int e = errno;
		struct stat lst;
		/* Under the user's fsuid a file the user may not open is judged
		 * as any other: someone else's, a hard link, a loose mode. */
		if (e == EACCES && fstatat(dir->fd, name, &lst, AT_SYMLINK_NOFOLLOW) == 0) {
			int r = check_file(&lst, dir->uid, name, msg, msglen);
			if (r < 0)
				return r;
		}
		snprintf(msg, msglen, e == ELOOP ? "%s is a symlink" : "cannot open %s: %s", name, strerror(e));
		return -e;
	}
	struct stat raw;
	if (fstat(fd, &raw) < 0)
		return -errno;
	int r = check_file(&raw, dir->uid, name, msg, msglen);
	if (r < 0)
		return r;
	safefile_stat_from(st, &raw);
	r = read_all(fd, max, ret, ret_len);
	if (r == -EFBIG)
		snprintf(msg, msglen, "%s is larger than %zu bytes", name, max);
	return r;
}

int safefile_remove(const struct safefile_dir *dir, const char *name)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->as_user, dir->uid, dir->gid);
	if (unlinkat(dir->fd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return fsync(dir->fd) < 0 ? -errno : 0;
}

int safefile_remove_dir(struct safefile_dir *dir)
{
	if (dir->parent_fd < 0 || !dir->name[0])
		return -EINVAL;
	if (unlinkat(dir->parent_fd, dir->name, AT_REMOVEDIR) < 0)
		return -errno;
	return fsync(dir->parent_fd) < 0 ? -errno : 0;
}
