/* The candidate sshd_config lives for one sshd -T in a private directory
 * of the state dir (root's, 0700): sshd reads it as it would read the real
 * file, Include globs and all, and nothing sshd or a user reads changes. */
#include <fcntl.h>
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

static int judge_candidate(const struct config *cfg, struct plan *p, const char *path, struct result *res)
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
	/* Drop-ins the task would edit (Port lines) are still the old ones
	 * under the candidate: their ports are the plan's to judge. */
	bool dropins = false;
	for (size_t i = 1; i < p->n_conf; i++)
		dropins |= p->conf[i].new != NULL;
	bool port_change = p->port_change;
	if (dropins)
		p->port_change = false;
	r = plan_check_effective(p, &s, false, res);
	p->port_change = port_change;
	sshd_settings_free(&s);
	return r;
}

static int candidate_check(const struct config *cfg, struct plan *p, const struct sshd_settings *now,
			   struct result *res)
{
	const struct plan_file *m = &p->conf[0];
	if (p->n_conf == 0 || !m->new)
		return plan_check_effective(p, now, false, res);
	char dir[CONFIG_PATH_MAX + 32], path[CONFIG_PATH_MAX + 64];
	/* mkdtemp's template: six placeholder letters it replaces. */
	int n = snprintf(dir, sizeof(dir) - 6, "%s/check.", cfg->state_dir);
	if (n < 0 || (size_t)n >= sizeof(dir) - 6)
		return result_fail(res, ERR_IO_ERROR, "state dir path too long: %s", cfg->state_dir);
	memset(dir + n, 'X', 6);
	dir[n + 6] = '\0';
	if (!mkdtemp(dir))
		return result_fail(res, ERR_IO_ERROR, "cannot make a directory for the candidate in %s: %s",
				   cfg->state_dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/sshd_config", dir);
	int r = write_candidate(path, m->new, m->new_len);
	if (r < 0)
		result_fail(res, ERR_IO_ERROR, "cannot write the candidate %s: %s", path, strerror(-r));
	else
		r = judge_candidate(cfg, p, path, res);
	unlink(path);
	rmdir(dir);
	return r;
}

int check_plan(const struct config *cfg, struct plan *p, const struct sshd_settings *now, struct result *res)
{
	if (changes_make(p, res) < 0)
		return -1;
	return candidate_check(cfg, p, now, res);
}
