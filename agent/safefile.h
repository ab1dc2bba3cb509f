/* Files the agent writes as root in places others own: an fd-based walk
 * that never follows a link it did not mean to, owner and mode checks as
 * sshd's StrictModes makes them, and atomic replacement. */
#pragma once

#include <limits.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "util.h"

/* How the files and directories created here are labelled: selinux.c's
 * labeller (the context restorecon would give), set by the processes that
 * write users' files and sshd_config (kps-agent-tool). Unset, the kernel's
 * default applies: the monitor creates only its own state files and does
 * not link libselinux. create_at: the next create in this thread gets the
 * label of dirfd/name (-errno when it cannot be looked up); done: after
 * the create. */
struct safefile_labeller {
	int (*create_at)(int dirfd, const char *name, mode_t mode);
	void (*done)(void);
};
void safefile_set_labeller(const struct safefile_labeller *l);
int safefile_label_at(int dirfd, const char *name, mode_t mode);
void safefile_label_done(void);

struct safefile_dir {
	int fd;			/* the directory */
	int parent_fd;		/* its parent, for removing it again */
	char name[NAME_MAX + 1];	/* its name in the parent */
	uid_t uid;		/* the owner allowed besides root */
	gid_t gid;
	bool as_user;		/* owned by uid != 0: file I/O runs with the user's fsuid */
	bool created;		/* safefile_open_dir created it */
	bool missing;		/* -ENOENT for the last component alone, which create would make */
};

struct safefile_stat {
	bool exists;
	uid_t uid;
	gid_t gid;
	mode_t mode;		/* permission bits */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

#define SAFEFILE_DIR_INIT { .fd = -1, .parent_fd = -1 }

/* Opens the directory path, walking from / one component at a time.
 * Every directory must be owned by root or uid and not be writable by group
 * or others. A symlink is followed only where root alone controls it (a
 * root-owned link in a root-owned, not group/world-writable directory);
 * below any directory uid owns, a symlink is refused (-ELOOP). When create
 * is set and the last component is missing inside home (or a directory uid
 * owns), it is created 0700 uid:gid; without create that case returns
 * -ENOENT with dir->missing set. Errors: -ELOOP (link), -EPERM (owner
 * or mode), -ENOTDIR, -ENOENT, other -errno; msg says which component. */
int safefile_open_dir(const char *path, uid_t uid, gid_t gid, const char *home, bool create,
		      struct safefile_dir *dir, char *msg, size_t msglen);
void safefile_close_dir(struct safefile_dir *dir);

/* Reads name in dir: a regular file, not a link, owned by root or
 * dir->uid, not writable by group or others, with one hard link (-EMLINK).
 * A missing file reads as empty with st->exists false. -EFBIG over max. */
int safefile_read(const struct safefile_dir *dir, const char *name, size_t max, char **ret, size_t *ret_len,
		  struct safefile_stat *st, char *msg, size_t msglen);

/* Replaces name in dir with data atomically: a temp file in the same
 * directory, owner and mode set on the fd, the old file's SELinux label
 * kept, fsync, renameat, fsync of the directory. When expect is given the
 * file must still be what was read (same inode, size and mtime, or still
 * absent) just before the rename, else -EAGAIN and nothing changed.
 * written (may be NULL) gets the new file's stat, to expect next time. */
int safefile_replace(const struct safefile_dir *dir, const char *name, const void *data, size_t len, uid_t uid,
		     gid_t gid, mode_t mode, const struct safefile_stat *expect, struct safefile_stat *written);

/* The same without fsync and without checks, for caches: a crash may lose
 * the new content, never leave a torn file. */
int safefile_replace_nosync(const struct safefile_dir *dir, const char *name, const void *data, size_t len,
			    mode_t mode);

/* Removes name from dir (a missing file is fine) and syncs the directory. */
int safefile_remove(const struct safefile_dir *dir, const char *name);

/* Removes dir itself when it is empty (for a ~/.ssh the agent created). */
int safefile_remove_dir(struct safefile_dir *dir);

/* A stat as safefile_stat holds it (exists set). */
void safefile_stat_from(struct safefile_stat *out, const struct stat *st);

/* Maps a safefile error to "unsafe" (true) or an I/O failure (false). */
bool safefile_error_is_unsafe(int r);
