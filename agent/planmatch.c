/* The Match blocks of a plan's sshd_config files: sshd -T answers for one
 * connection, so every block that could apply to the user for some client
 * is walked, in sshd's order and through its Includes, and must agree with
 * the password settings the task orders. */
#include <glob.h>
#include <grp.h>
#include <strings.h>

#include "planfile.h"
#include "planmatch.h"
#include "sshdmatch.h"

static int user_groups(const struct plan_user *u, struct strv *out)
{
	gid_t groups[256];
	int n = (int)ELEMENTSOF(groups);
	if (getgrouplist(u->name, u->gid, groups, &n) < 0)
		return -E2BIG;
	for (int i = 0; i < n; i++) {
		struct group gr, *found = NULL;
		char buf[4096];
		if (getgrgid_r(groups[i], &gr, buf, sizeof(buf), &found) == 0 && found) {
			int r = strv_push(out, gr.gr_name);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Where the walk is: the Match block it is in (none: global lines). */
struct match_walk {
	struct plan *p;
	struct sshdmatch_user who;
	const char *block_file;
	unsigned block_line;
	bool applies;
	struct result *res;
};

static int match_overrides(struct match_walk *w, const struct sshdconf_directive *d)
{
	const struct plan *p = w->p;
	bool pw = !strcasecmp(d->keyword, "PasswordAuthentication");
	bool kbd = !strcasecmp(d->keyword, "KbdInteractiveAuthentication") ||
		   !strcasecmp(d->keyword, "ChallengeResponseAuthentication");
	if ((!pw && !kbd) || d->args.n == 0)
		return 0;
	int value = !strcasecmp(d->args.v[0], "yes");
	if ((pw && p->password >= 0 && value != p->password) || (kbd && p->kbdinteractive == 0 && value)) {
		const char *what = pw ? "PasswordAuthentication" : d->keyword;
		return result_fail(w->res, ERR_SSHD_CONFIG_INVALID,
				   "%s line %u: a Match block sets %s %s for user %s from some clients, against the order",
				   w->block_file, w->block_line, what, value ? "yes" : "no", p->user.name);
	}
	return 0;
}

static int walk_conf(struct match_walk *w, size_t index, int depth);

/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH, see walk_conf */
static int walk_include(struct match_walk *w, const struct sshdconf_directive *d, int depth)
{
	for (size_t i = 0; i < d->args.n; i++) {
		char pattern[PATH_MAX];
		const char *a = d->args.v[i];
		planfile_include_pattern(a, pattern);
		glob_t g = { 0 };
		int r = 0;
		/* No match is no file, as for sshd. */
		if (glob(pattern, 0, NULL, &g) != 0)
			g.gl_pathc = 0;
		for (size_t k = 0; r == 0 && k < g.gl_pathc; k++) {
			ssize_t at = planfile_conf_index(w->p, g.gl_pathv[k], w->res);
			r = at < 0 ? -1 : walk_conf(w, (size_t)at, depth + 1);
		}
		globfree(&g);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Every directive sshd reads, in its order: an Include is read where it
 * stands, under the Match block around it, and a Match block in an
 * included file ends with that file, as in servconf.c. */
/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH */
static int walk_conf(struct match_walk *w, size_t index, int depth)
{
	if (depth > PLAN_INCLUDE_DEPTH)
		return result_fail(w->res, ERR_SSHD_CONFIG_INVALID, "Include nested deeper than %d", PLAN_INCLUDE_DEPTH);
	const char *file = w->block_file;
	unsigned line = w->block_line;
	bool applies = w->applies;
	struct sshdconf_directive d = { 0 };
	size_t pos = 0;
	int r;
	while ((r = sshdconf_next(w->p->conf[index].old, w->p->conf[index].old_len, &pos, &d)) > 0) {
		if (!strcasecmp(d.keyword, "Match")) {
			int can = sshdmatch_can_apply(&d.args, &w->who);
			if (can < 0) {
				r = result_fail(w->res, ERR_SSHD_CONFIG_INVALID, "%s line %u: a Match line sshd does not take",
						w->p->conf[index].path, d.line);
				break;
			}
			w->block_file = w->p->conf[index].path;
			w->block_line = d.line;
			w->applies = can == 1;
		} else if (!strcasecmp(d.keyword, "Include")) {
			/* Under a block that cannot apply, sshd reads nothing of it. */
			if ((!w->block_file || w->applies) && walk_include(w, &d, depth) < 0) {
				r = -1;
				break;
			}
		} else if (w->block_file && w->applies && match_overrides(w, &d) < 0) {
			r = -1;
			break;
		}
	}
	strv_free(&d.args);
	if (r == -EBADMSG)
		r = result_fail(w->res, ERR_SSHD_CONFIG_INVALID, "%s: an unmatched quote", w->p->conf[index].path);
	w->block_file = file;
	w->block_line = line;
	w->applies = applies;
	return r < 0 ? -1 : 0;
}

/* sshd -T answers for loopback only. A Match block that only other clients
 * meet (Address *,!127.0.0.1; Host; LocalPort of the new port) would
 * break the promise for them: every block that can apply to the user for
 * some client must agree with the order. */
int planmatch_check(struct plan *p, const struct sshd_settings *s, struct result *res)
{
	if (p->password < 0 && p->kbdinteractive != 0)
		return 0;
	_cleanup_strv_ struct strv groups = { 0 };
	if (user_groups(&p->user, &groups) < 0)
		return result_fail(res, ERR_IO_ERROR, "cannot list the groups of user %s", p->user.name);
	struct match_walk w = {
		.p = p,
		.who = { .name = p->user.name, .groups = &groups, .ports = p->port_change ? &p->port : s->ports,
			 .n_ports = p->port_change ? 1 : s->n_ports },
		.res = res,
	};
	return walk_conf(&w, 0, 0);
}
