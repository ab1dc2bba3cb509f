/* Match criteria as sshd's servconf.c match_cfg_line() reads them, with the
 * client left open: User and Group are this user's, LocalPort is one of
 * the ports sshd listens on, and Address, LocalAddress, Host and RDomain
 * can be anything a client brings. */
#include <strings.h>

#include "sshdmatch.h"

/* NOLINTNEXTLINE(misc-no-recursion): one level per '*' of the pattern */
bool sshdmatch_pattern(const char *s, const char *pattern)
{
	for (;;) {
		if (!*pattern)
			return !*s;
		if (*pattern == '*') {
			while (*pattern == '*')
				pattern++;
			if (!*pattern)
				return true;
			for (; *s; s++)
				if ((*pattern == '?' || *s == *pattern) && sshdmatch_pattern(s, pattern))
					return true;
			return false;
		}
		if (!*s || (*pattern != '?' && *pattern != *s))
			return false;
		s++;
		pattern++;
	}
}

/* Calls fn on each comma-separated pattern of list, with its negation. */
static int list_each(const char *list, int (*fn)(const char *pat, bool negated, void *ud), void *ud)
{
	_cleanup_free_ char *copy = strdup(list);
	if (!copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *pat = strtok_r(copy, ",", &save); pat; pat = strtok_r(NULL, ",", &save)) {
		bool negated = pat[0] == '!';
		int r = fn(negated ? pat + 1 : pat, negated, ud);
		if (r != 0)
			return r;
	}
	return 0;
}

struct list_match {
	const char *s;
	bool positive;
};

static int match_one(const char *pat, bool negated, void *ud)
{
	struct list_match *m = ud;
	if (!sshdmatch_pattern(m->s, pat))
		return 0;
	if (negated)
		return -1;
	m->positive = true;
	return 0;
}

int sshdmatch_pattern_list(const char *s, const char *list)
{
	struct list_match m = { .s = s };
	int r = list_each(list, match_one, &m);
	if (r == -1)
		return -1;
	return r == 0 && m.positive ? 1 : 0;
}

static bool has_wildcard(const char *p)
{
	return strpbrk(p, "*?") != NULL;
}

struct satisfy {
	const char *list;
	const char *positive;
	bool found;
};

/* Does the negated pattern neg take every string pos matches? */
static bool covers(const char *neg, const char *pos)
{
	if (streq(neg, "*") || streq(neg, pos))
		return true;
	return !has_wildcard(pos) && sshdmatch_pattern(pos, neg);
}

static int negated_covers(const char *pat, bool negated, void *ud)
{
	struct satisfy *s = ud;
	return negated && covers(pat, s->positive) ? 1 : 0;
}

static int positive_alive(const char *pat, bool negated, void *ud)
{
	struct satisfy *s = ud;
	if (negated || !pat[0])
		return 0;
	struct satisfy inner = { .list = s->list, .positive = pat };
	if (list_each(s->list, negated_covers, &inner) == 0) {
		s->found = true;
		return 1;
	}
	return 0;
}

bool sshdmatch_list_satisfiable(const char *list)
{
	struct satisfy s = { .list = list };
	int r = list_each(list, positive_alive, &s);
	return r < 0 || s.found;	/* out of memory: assume it can */
}

/* servconf.c's ga_match_pattern_list(): a negated group match wins. */
static bool group_matches(const struct strv *groups, const char *list)
{
	bool found = false;
	for (size_t i = 0; groups && i < groups->n; i++) {
		int r = sshdmatch_pattern_list(groups->v[i], list);
		if (r < 0)
			return false;
		found |= r == 1;
	}
	return found;
}

static bool port_matches(const struct sshdmatch_user *u, const char *arg)
{
	char *end;
	errno = 0;
	long port = strtol(arg, &end, 10);
	if (errno || end == arg || *end || port < 1 || port > 65535)
		return true;	/* sshd -t refuses it; nothing to judge */
	for (size_t i = 0; i < u->n_ports; i++)
		if (u->ports[i] == port)
			return true;
	return false;
}

static int criterion(const char *attrib, const char *arg, const struct sshdmatch_user *u)
{
	if (!strcasecmp(attrib, "user"))
		return sshdmatch_pattern_list(u->name, arg) == 1;
	if (!strcasecmp(attrib, "group"))
		return group_matches(u->groups, arg);
	if (!strcasecmp(attrib, "localport"))
		return port_matches(u, arg);
	if (!strcasecmp(attrib, "address") || !strcasecmp(attrib, "localaddress") || !strcasecmp(attrib, "host") ||
	    !strcasecmp(attrib, "rdomain"))
		return sshdmatch_list_satisfiable(arg);
	/* Version, SessionType, Command and what later sshds add: the client
	 * or the request decides; it can apply. */
	return 1;
}

int sshdmatch_can_apply(const struct strv *criteria, const struct sshdmatch_user *u)
{
	if (criteria->n == 0)
		return -EBADMSG;
	if (criteria->n == 1 && !strcasecmp(criteria->v[0], "all"))
		return 1;
	int result = 1;
	for (size_t i = 0; i < criteria->n; i++) {
		const char *attrib = criteria->v[i];
		if (!strcasecmp(attrib, "all"))
			return -EBADMSG;	/* "all" stands alone */
		/* Invalid-User takes no argument and never holds for a user
		 * that exists. */
		if (!strcasecmp(attrib, "invalid-user")) {
			result = 0;
			continue;
		}
		if (i + 1 == criteria->n)
			return -EBADMSG;
		if (!criterion(attrib, criteria->v[++i], u))
			result = 0;
	}
	return result;
}
