/* The fd-based walk, StrictModes checks and atomic replace. Below a
 * directory the user owns, file system calls run with the user's fsuid so
 * that the kernel, not a check we made a moment earlier, stops a race. */
#include <fcntl.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/xattr.h>

#include "log.h"
#include "safefile.h"
#include "selinux.h"

#define SAFEFILE_MAX_LINKS 8
#define SELINUX_XATTR "security.selinux"

#define SAVED_GROUPS_MAX 64

struct fsuid_saved {
	bool active;
	uid_t uid;
	gid_t gid;
	int n_groups;		/* root's supplementary groups, put back on leave; -1 none saved */
	gid_t groups[SAVED_GROUPS_MAX];
};

/* As the user: fsuid and fsgid, and none of root's supplementary groups,
 * which would otherwise open to the agent what the user cannot read. */
static struct fsuid_saved fsuid_enter(bool as_user, uid_t uid, gid_t gid)
{
	struct fsuid_saved s = { .n_groups = -1 };
	if (!as_user || uid == 0)
		return s;
	s.active = true;
	s.n_groups = getgroups(SAVED_GROUPS_MAX, s.groups);
	if (s.n_groups > 0 && setgroups(0, NULL) < 0)
		s.n_groups = -1;
	s.gid = (gid_t)setfsgid(gid);
	s.uid = (uid_t)setfsuid(uid);
	return s;
}

static void fsuid_leave(struct fsuid_saved *s)
{
	if (!s->active)
		return;
	int e = errno;
	setfsuid(s->uid);
	setfsgid(s->gid);
	if (s->n_groups > 0)
		setgroups((size_t)s->n_groups, s->groups);
	errno = e;
	s->active = false;
}

#define _cleanup_fsuid_ _cleanup_(fsuid_leave) __attribute__((unused))

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

/* With SELinux on, what a create in dirfd makes gets the default context of
 * its final path, name in that directory: as restorecon would set it. */
static int label_next_create(int dirfd, const char *name, mode_t mode)
{
	if (!selinux_on())
		return 0;
	char link[64], dir[PATH_MAX], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	ssize_t n = readlink(link, dir, sizeof(dir) - 1);
	if (n < 0)
		return -errno;
	dir[n] = '\0';
	if (snprintf(path, sizeof(path), "%s/%s", streq(dir, "/") ? "" : dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return selinux_create_as(path, mode);
}

static int make_dir(struct safefile_dir *dir, int parent, const char *name, char *msg, size_t msglen)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->uid != 0, dir->uid, dir->gid);
	int l = label_next_create(parent, name, S_IFDIR | 0700);
	if (l < 0) {
		snprintf(msg, msglen, "cannot find the SELinux context for %s: %s", name, strerror(-l));
		return l;
	}
	int made = mkdirat(parent, name, 0700);
	selinux_create_done();
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

static void fill_stat(struct safefile_stat *out, const struct stat *st)
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
	fill_stat(st, &raw);
	r = read_all(fd, max, ret, ret_len);
	if (r == -EFBIG)
		snprintf(msg, msglen, "%s is larger than %zu bytes", name, max);
	return r;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Keeps the label a policy gave the old file; no label, no SELinux: fine.
 * Only where SELinux is on: some kernels refuse the xattr otherwise. */
static int copy_label(int dirfd, const char *name, int tmpfd)
{
	char label[256];
	if (access("/sys/fs/selinux/enforce", F_OK) < 0)
		return 0;
	_cleanup_close_ int old = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (old < 0)
		return 0;
	ssize_t n = fgetxattr(old, SELINUX_XATTR, label, sizeof(label));
	if (n <= 0)
		return 0;
	if (fsetxattr(tmpfd, SELINUX_XATTR, label, (size_t)n, 0) < 0 && errno != ENOTSUP)
		return -errno;
	return 0;
}

static bool unchanged(int dirfd, const char *name, const struct safefile_stat *expect)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT && !expect->exists;
	return expect->exists && st.st_dev == expect->dev && st.st_ino == expect->ino &&
	       st.st_size == expect->size && st.st_mtim.tv_sec == expect->mtime.tv_sec &&
	       st.st_mtim.tv_nsec == expect->mtime.tv_nsec;
}

static int make_temp_file(int dirfd, const char *name, char *tmp, size_t size)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t rnd;
		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
			return -EIO;
		int n = snprintf(tmp, size, ".%.200s.kps-%016llx", name, (unsigned long long)rnd);
		if (n < 0 || (size_t)n >= size)
			return -ENAMETOOLONG;
		int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* A temp file beside name, labelled for name (the rename keeps it). */
static int make_temp(int dirfd, const char *name, char *tmp, size_t size)
{
	int l = label_next_create(dirfd, name, S_IFREG | 0600);
	if (l < 0)
		return l;
	int fd = make_temp_file(dirfd, name, tmp, size);
	selinux_create_done();
	return fd;
}

#define CARRY_MAX ((off_t)1024 * 1024)	/* appended to the old file during the swap */
#define CARRY_ROUNDS 4

static bool is_file(int dirfd, const char *name, dev_t dev, ino_t ino)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino;
}

#define RENAME_PLAIN 1	/* the file system has no renameat2 flags */

static bool no_rename_flags(int e)
{
	return e == EINVAL || e == ENOSYS;
}

/* Nothing was expected at name: tmp goes there only if nothing came since. */
static int rename_noreplace(int dirfd, const char *tmp, const char *name)
{
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST)
		return -EAGAIN;
	return no_rename_flags(errno) ? RENAME_PLAIN : -errno;
}

/* tmp and name swapped: what came out is the file expected, which goes, or
 * someone else's, which is swapped back. */
static int rename_exchange(int dirfd, const char *tmp, const char *name, const struct safefile_stat *expect,
			   const struct stat *ours)
{
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0) {
		if (errno == ENOENT)
			return -EAGAIN;
		return no_rename_flags(errno) ? RENAME_PLAIN : -errno;
	}
	if (is_file(dirfd, tmp, expect->dev, expect->ino)) {
		if (unlinkat(dirfd, tmp, 0) == 0)
			return 0;
		/* The old file cannot go: the swap is undone, ours is removed. */
		int e = errno;
		if (renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0)
			log_warnx("cannot remove %s, the old %s: %s", tmp, name, strerror(e));
		return -e;
	}
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_EXCHANGE) < 0)
		return -errno;
	/* A third writer's file, displaced in between, stays under tmp. */
	if (!is_file(dirfd, tmp, ours->st_dev, ours->st_ino)) {
		log_warnx("%s was replaced twice while the agent wrote it; one version is kept as %s", name, tmp);
		return -EEXIST;
	}
	return -EAGAIN;
}

/* Renames tmp over name, but only over the file expected there: the check
 * before a plain rename leaves a window in which an editor's rename lands
 * and would be lost. RENAME_EXCHANGE leaves what was displaced under tmp,
 * so it is seen; someone else's file is swapped back and -EAGAIN makes the
 * caller redo its edit on top of it. Where the file system has no
 * renameat2 flags, a plain rename. */
static int swap_rename(int dirfd, const char *tmp, const char *name, const struct safefile_stat *expect,
		       const struct stat *ours)
{
	int r = RENAME_PLAIN;
	if (expect && !expect->exists)
		r = rename_noreplace(dirfd, tmp, name);
	else if (expect)
		r = rename_exchange(dirfd, tmp, name, expect, ours);
	if (r != RENAME_PLAIN)
		return r;
	return renameat(dirfd, tmp, dirfd, name) < 0 ? -errno : 0;
}

/* Writes data to a new temporary file and renames it over name when name
 * is still as expected. fd: the new file, open; st: its stat. */
static int swap_in(const struct safefile_dir *dir, const char *name, const void *data, size_t len, const void *tail,
		   size_t tail_len, uid_t uid, gid_t gid, mode_t mode, const struct safefile_stat *expect, int *ret_fd,
		   struct stat *st)
{
	char tmp[NAME_MAX + 1];
	_cleanup_close_ int fd = make_temp(dir->fd, name, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	int r = write_all(fd, data, len);
	if (r == 0)
		r = write_all(fd, tail, tail_len);
	if (r == 0 && (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0))
		r = -errno;
	if (r == 0)
		r = copy_label(dir->fd, name, fd);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && fstat(fd, st) < 0)
		r = -errno;
	if (r == 0 && expect && !unchanged(dir->fd, name, expect))
		r = -EAGAIN;
	if (r == 0)
		r = swap_rename(dir->fd, tmp, name, expect, st);
	if (r == 0) {
		*ret_fd = TAKE_FD(fd);
		return 0;
	}
	if (r == -EEXIST)	/* tmp holds someone else's file now */
		return -EAGAIN;
	unlinkat(dir->fd, tmp, 0);
	return r;
}

/* "echo key >> authorized_keys" opens the old file and may write to it
 * just after the rename: its line would go with the old inode. What was
 * appended there during the swap is carried over to the new file, whose
 * own appends are carried in the next round. Takes both fds. */
static void carry_appends(const struct safefile_dir *dir, const char *name, int old_fd, struct safefile_stat seen,
			  int cur_fd, struct stat *cur_st, const void *data, size_t len, uid_t uid, gid_t gid,
			  mode_t mode)
{
	_cleanup_close_ int old = old_fd;
	_cleanup_close_ int cur = cur_fd;
	_cleanup_free_ char *tail = NULL;
	size_t tail_len = 0;
	for (int round = 0; round < CARRY_ROUNDS; round++) {
		struct stat o;
		if (fstat(old, &o) < 0 || (o.st_size == seen.size && o.st_mtim.tv_sec == seen.mtime.tv_sec &&
					    o.st_mtim.tv_nsec == seen.mtime.tv_nsec))
			return;
		if (o.st_size <= seen.size || o.st_size - seen.size > CARRY_MAX - (off_t)tail_len) {
			log_warnx("%s was rewritten in place while the agent replaced it; that write is lost", name);
			return;
		}
		size_t more = (size_t)(o.st_size - seen.size);
		char *t = realloc(tail, tail_len + more);
		if (!t)
			return;
		tail = t;
		if (pread(old, tail + tail_len, more, seen.size) != (ssize_t)more)
			return;
		tail_len += more;
		struct safefile_stat now;
		fill_stat(&now, cur_st);
		int next = -1;
		if (swap_in(dir, name, data, len, tail, tail_len, uid, gid, mode, &now, &next, cur_st) < 0)
			return;
		fsync(dir->fd);
		close(old);
		old = cur;
		cur = next;
		seen = now;
	}
}

int safefile_replace(const struct safefile_dir *dir, const char *name, const void *data, size_t len, uid_t uid,
		     gid_t gid, mode_t mode, const struct safefile_stat *expect, struct safefile_stat *written)
{
	_cleanup_fsuid_ struct fsuid_saved s = fsuid_enter(dir->as_user, dir->uid, dir->gid);
	struct safefile_stat seen = expect ? *expect : (struct safefile_stat){ 0 };
	_cleanup_close_ int old = -1;
	if (expect && expect->exists) {
		struct stat o;
		old = openat(dir->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (old < 0 || fstat(old, &o) < 0 || o.st_dev != expect->dev || o.st_ino != expect->ino)
			return old < 0 && errno != ENOENT && errno != ELOOP ? -errno : -EAGAIN;
	}
	int fd = -1;
	struct stat st;
	int r = swap_in(dir, name, data, len, NULL, 0, uid, gid, mode, expect, &fd, &st);
	if (r != 0)
		return r;
	if (fsync(dir->fd) < 0)
		r = -errno;
	if (old >= 0)
		carry_appends(dir, name, TAKE_FD(old), seen, TAKE_FD(fd), &st, data, len, uid, gid, mode);
	else
		close(fd);
	if (written)
		fill_stat(written, &st);
	return r;
}

int safefile_replace_nosync(const struct safefile_dir *dir, const char *name, const void *data, size_t len,
			    mode_t mode)
{
	char tmp[NAME_MAX + 1];
	_cleanup_close_ int fd = make_temp(dir->fd, name, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	int r = write_all(fd, data, len);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && renameat(dir->fd, tmp, dir->fd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(dir->fd, tmp, 0);
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
