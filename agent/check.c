/* The candidate sshd_config lives for one sshd -T in a private directory
 * of the state dir (root's, 0700): sshd reads it as it would read the real
 * file, Include globs and all, and nothing sshd or a user reads changes.
 * Drop-ins the task changes (Port lines disabled; in a vendor layout the
 * agent's own drop-in holding the block) are written there too, and the
 * candidate's Include lines name them in the place of the real files: the
 * whole configuration is judged as it would be, not the main file alone. */
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"
#include "udiff.h"

static int changes_add(cJSON *arr, const struct plan_file *f)
{
	_cleanup_buf_ struct buf diff = { 0 };
	int r = udiff(f->st.exists ? f->old : NULL, f->old_len, f->new, f->new_len, f->path, &diff);
	if (r < 0)
		return r;
	cJSON *c = cJSON_CreateObject();
	if (!c || !cJSON_AddItemToArray(arr, c) || !cJSON_AddStringToObject(c, "path", f->path) ||
	    !cJSON_AddStringToObject(c, "diff", diff.data ? diff.data : ""))
		return -ENOMEM;
	return 0;
}

static int changes_make(const struct plan *p, struct result *res)
{
	_cleanup_cjson_ cJSON *arr = cJSON_CreateArray();
	int r = arr ? 0 : -ENOMEM;
	if (r == 0 && p->keys.new)
		r = changes_add(arr, &p->keys);
	for (size_t i = 0; r == 0 && i < p->n_conf; i++)
		if (p->conf[i].new)
			r = changes_add(arr, &p->conf[i]);
	free(res->changes);
	res->changes = r == 0 ? cJSON_PrintUnformatted(arr) : NULL;
	return res->changes ? 0 : result_fail(res, ERR_IO_ERROR, "out of memory");
}

static int write_candidate(const char *path, const char *text, size_t len)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	return 0;
}

#define CHECK_SYSCONFDIR "/etc/ssh"	/* where sshd resolves a relative Include */

/* A changed drop-in and its stand-in in the check directory. */
struct standin {
	const struct plan_file *f;
	char copy[CONFIG_PATH_MAX + 96];
	bool placed;	/* an Include of the candidate names it */
};

static int path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A path as one Include argument: sshd splits arguments at blanks and
 * reads quotes and backslashes, so a path with none of those goes in quotes
 * as it is; any other cannot be named, and the stand-in is not used. */
static int include_name(const char *path, struct buf *out)
{
	if (strpbrk(path, "\"\\\n\r"))
		return -EINVAL;
	return buf_printf(out, " \"%s\"", path);
}

/* One Include argument as sshd expands it (glob(3), in sorted order), with
 * every changed drop-in replaced by its stand-in, and one that does not
 * exist yet (the vendor layout's block file) added where the pattern
 * would find it. */
static int include_arg(const char *arg, struct standin *sv, size_t n, struct buf *out)
{
	char pattern[CONFIG_PATH_MAX];
	int k = snprintf(pattern, sizeof(pattern), "%s%s", arg[0] == '/' ? "" : CHECK_SYSCONFDIR "/", arg);
	if (k < 0 || (size_t)k >= sizeof(pattern))
		return -ENAMETOOLONG;
	glob_t g = { 0 };
	int gr = glob(pattern, 0, NULL, &g);
	if (gr != 0 && gr != GLOB_NOMATCH) {
		globfree(&g);
		return -EIO;
	}
	size_t m = gr == 0 ? g.gl_pathc : 0;
	_cleanup_free_ const char **list = calloc(m + n + 1, sizeof(*list));
	if (!list) {
		globfree(&g);
		return -ENOMEM;
	}
	size_t cnt = 0;
	for (size_t i = 0; i < m; i++)
		list[cnt++] = g.gl_pathv[i];
	for (size_t j = 0; j < n; j++) {
		bool listed = false;
		for (size_t i = 0; i < m && !listed; i++)
			listed = streq(g.gl_pathv[i], sv[j].f->path);
		if (!listed && !sv[j].f->st.exists && fnmatch(pattern, sv[j].f->path, FNM_PATHNAME | FNM_PERIOD) == 0)
			list[cnt++] = sv[j].f->path;
	}
	qsort(list, cnt, sizeof(*list), path_cmp);
	int r = 0;
	for (size_t i = 0; r >= 0 && i < cnt; i++) {
		const char *use = list[i];
		for (size_t j = 0; j < n; j++)
			if (streq(list[i], sv[j].f->path)) {
				use = sv[j].copy;
				sv[j].placed = true;
			}
		r = include_name(use, out);
	}
	globfree(&g);
	return r;
}

/* One Include line of the candidate, its arguments expanded into out; the
 * line as it was when a name cannot be written or nothing is found. */
static int candidate_include(const struct sshdconf_directive *d, const char *line, size_t len, struct standin *sv,
			     size_t n, struct buf *out, bool *exact)
{
	size_t mark = out->len;
	int r = buf_puts(out, "Include");
	for (size_t i = 0; r >= 0 && i < d->args.n; i++)
		r = include_arg(d->args.v[i], sv, n, out);
	if (r >= 0)
		r = buf_puts(out, "\n");
	if (r == -EINVAL || (r >= 0 && out->len == mark + strlen("Include\n"))) {
		*exact &= r != -EINVAL;
		out->len = mark;
		r = buf_append(out, line, len);
	}
	return r;
}

/* The main file as it would be, its Include lines expanded (see above). */
static int candidate_text(const struct plan *p, struct standin *sv, size_t n, struct buf *out, bool *exact)
{
	const struct plan_file *m = &p->conf[0];
	const char *text = m->new ? m->new : m->old;
	size_t len = m->new ? m->new_len : m->old_len;
	for (size_t pos = 0; text && pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) + 1 : len;
		struct sshdconf_directive d = { 0 };
		size_t at = 0;
		int r = sshdconf_next(text + pos, end - pos, &at, &d);
		if (r == 1 && !strcasecmp(d.keyword, "Include") && d.args.n > 0)
			r = candidate_include(&d, text + pos, end - pos, sv, n, out, exact);
		else if (r >= 0)
			r = buf_append(out, text + pos, end - pos);
		strv_free(&d.args);
		if (r < 0)
			return r;
		pos = end;
	}
	return buf_puts(out, "");
}

static int judge_candidate(const struct config *cfg, struct plan *p, const char *path, bool exact,
			   struct result *res)
{
	struct config c = *cfg;
	struct sshd_settings s = { 0 };
	char msg[RESULT_MSG_MAX] = "";
	c.sshd_config = (char *)path;
	int r = sshd_query(&c, p->user.name, &s, NULL, msg, sizeof(msg));
	if (r == -ENOENT)
		return result_fail(res, ERR_SSHD_UNREACHABLE, "%s", msg);
	if (r == -EINVAL || r == -EBADMSG)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "the candidate %s: %s", cfg->sshd_config, msg);
	if (r < 0)
		return result_fail(res, ERR_IO_ERROR, "%s", msg);
	/* A changed drop-in no Include of the main file names (one Included
	 * from another drop-in) is still the old one under the candidate: its
	 * Port lines are the plan's to judge. */
	bool port_change = p->port_change;
	if (!exact)
		p->port_change = false;
	r = plan_check_effective(p, &s, false, res);
	p->port_change = port_change;
	sshd_settings_free(&s);
	return r;
}

static void candidate_remove(const char *dir, const char *path, const struct standin *sv, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sv[i].copy[0])
			unlink(sv[i].copy);
	unlink(path);
	rmdir(dir);
}

static int candidate_write(const struct plan *p, const char *dir, const char *path, struct standin *sv, size_t n,
			   bool *exact)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(sv[i].copy, sizeof(sv[i].copy), "%s/dropin-%zu.conf", dir, i);
		int r = write_candidate(sv[i].copy, sv[i].f->new, sv[i].f->new_len);
		if (r < 0)
			return r;
	}
	_cleanup_buf_ struct buf text = { 0 };
	*exact = true;
	int r = candidate_text(p, sv, n, &text, exact);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		*exact &= sv[i].placed;
	return write_candidate(path, text.data, text.len);
}

static int candidate_check(const struct config *cfg, struct plan *p, const struct sshd_settings *now,
			   struct result *res)
{
	struct standin sv[PLAN_MAX_CONF] = { 0 };
	size_t n = 0;
	for (size_t i = 1; i < p->n_conf; i++)
		if (p->conf[i].new)
			sv[n++].f = &p->conf[i];
	if (p->n_conf == 0 || (!p->conf[0].new && n == 0))
		return plan_check_effective(p, now, false, res);
	char dir[CONFIG_PATH_MAX + 32], path[CONFIG_PATH_MAX + 64];
	/* mkdtemp's template: six placeholder letters it replaces. */
	int k = snprintf(dir, sizeof(dir) - 6, "%s/check.", cfg->state_dir);
	if (k < 0 || (size_t)k >= sizeof(dir) - 6)
		return result_fail(res, ERR_IO_ERROR, "state dir path too long: %s", cfg->state_dir);
	memset(dir + k, 'X', 6);
	dir[k + 6] = '\0';
	if (!mkdtemp(dir))
		return result_fail(res, ERR_IO_ERROR, "cannot make a directory for the candidate in %s: %s",
				   cfg->state_dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/sshd_config", dir);
	bool exact = false;
	int r = candidate_write(p, dir, path, sv, n, &exact);
	if (r < 0)
		result_fail(res, ERR_IO_ERROR, "cannot write the candidate in %s: %s", dir, strerror(-r));
	else
		r = judge_candidate(cfg, p, path, exact, res);
	candidate_remove(dir, path, sv, n);
	return r;
}

int check_plan(const struct config *cfg, struct plan *p, const struct sshd_settings *now, struct result *res)
{
	if (changes_make(p, res) < 0)
		return -1;
	return candidate_check(cfg, p, now, res);
}
