/* File system calls as a user: fsuid and fsgid set, root's supplementary
 * groups dropped, all of it put back on leave. safefile.c runs every call
 * below a directory the user owns this way, so that the kernel's own
 * permission checks, not a check made a moment earlier, stop a race. */
#include <grp.h>
#include <sys/fsuid.h>

#include "fsuid.h"

/* As the user: fsuid and fsgid, and none of root's supplementary groups,
 * which would otherwise open to the agent what the user cannot read. */
struct fsuid_saved fsuid_enter(bool as_user, uid_t uid, gid_t gid)
{
	struct fsuid_saved s = { .n_groups = -1 };
	if (!as_user || uid == 0)
		return s;
	s.active = true;
	s.n_groups = getgroups(FSUID_GROUPS_MAX, s.groups);
	if (s.n_groups > 0 && setgroups(0, NULL) < 0)
		s.n_groups = -1;
	s.gid = (gid_t)setfsgid(gid);
	s.uid = (uid_t)setfsuid(uid);
	return s;
}

void fsuid_leave(struct fsuid_saved *s)
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
