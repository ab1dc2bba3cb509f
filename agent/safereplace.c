/* Atomic replacement of a file in a directory the safefile walk opened: a
 * temporary file beside it, owner, mode and SELinux label set on the fd,
 * fsync, then a rename that lands only over the file that was read
 * (renameat2 RENAME_EXCHANGE / RENAME_NOREPLACE), and what a concurrent
 * "echo >> file" appended during the swap carried over. The safefile_replace*
 * half of safefile.h; the walk and reads are safefile.c's. */
#include <fcntl.h>
#include <sys/random.h>
#include <sys/xattr.h>

#include "fsuid.h"
#include "log.h"
#include "safefile.h"

#define SELINUX_XATTR "security.selinux"

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
	int l = safefile_label_at(dirfd, name, S_IFREG | 0600);
	if (l < 0)
		return l;
	int fd = make_temp_file(dirfd, name, tmp, size);
	safefile_label_done();
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
		safefile_stat_from(&now, cur_st);
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
		safefile_stat_from(written, &st);
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
