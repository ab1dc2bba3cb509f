/* Running file system calls as a user (fsuid.c). */
#pragma once

#include <sys/types.h>

#include "util.h"

#define FSUID_GROUPS_MAX 64

struct fsuid_saved {
	bool active;
	uid_t uid;
	gid_t gid;
	int n_groups;		/* root's supplementary groups, put back on leave; -1 none saved */
	gid_t groups[FSUID_GROUPS_MAX];
};

/* As the user when as_user is set and uid is not root; a no-op otherwise. */
struct fsuid_saved fsuid_enter(bool as_user, uid_t uid, gid_t gid);
/* Back to root's fsuid, fsgid and groups; errno is kept. */
void fsuid_leave(struct fsuid_saved *s);

/* A guard that leaves when it goes out of scope; it is never read. */
#define _cleanup_fsuid_ _cleanup_(fsuid_leave) __attribute__((unused))
