/* The files a plan reads: each read once, through the safefile walk with
 * the owner checks of the user whose path it is, kept with its stat and old
 * text beside the new text the plan works out; the sshd_config files are
 * looked up by path and read on first use. Reads; writes nothing. */
#include "planfile.h"

static int split_path(const char *path, char **dir, const char **name)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	if (!slash || !slash[1])
		return -EINVAL;
	*dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
	*name = slash + 1;
	return *dir ? 0 : -ENOMEM;
}

static int fail_io(struct result *res, int r, const char *what, const char *msg)
{
	if (safefile_error_is_unsafe(r))
		return result_fail(res, ERR_UNSAFE_PATH, "%s: %s", what, msg[0] ? msg : strerror(-r));
	return result_fail(res, ERR_IO_ERROR, "%s: %s", what, msg[0] ? msg : strerror(-r));
}

/* Reads f->path with the owner checks of its walk user; a missing ~/.ssh
 * reads as an empty file that will be created. */
int planfile_read(struct plan_file *f, size_t max, struct result *res)
{
	_cleanup_free_ char *dir = NULL;
	const char *name;
	char msg[256] = "";
	struct safefile_dir d;
	if (split_path(f->path, &dir, &name) < 0)
		return result_fail(res, ERR_IO_ERROR, "bad path %s", f->path);
	int r = safefile_open_dir(dir, f->walk_uid, f->walk_gid, f->home, false, &d, msg, sizeof(msg));
	if (r == -ENOENT && d.missing) {
		safefile_close_dir(&d);
		f->dir_missing = true;
		f->old = calloc(1, 1);
		return f->old ? 0 : result_fail(res, ERR_IO_ERROR, "out of memory");
	}
	if (r == 0)
		r = safefile_read(&d, name, max, &f->old, &f->old_len, &f->st, msg, sizeof(msg));
	safefile_close_dir(&d);
	return r < 0 ? fail_io(res, r, f->path, msg) : 0;
}

void planfile_set_new(struct plan_file *f, char *text, size_t len)
{
	/* Every file of a plan was read. The analyzer takes a failure from
	 * another file (safefile_open_dir, result_fail) for a success. */
	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
	if (len == f->old_len && memcmp(text, f->old, len) == 0) {
		free(text);
		return;
	}
	free(f->new);
	f->new = text;
	f->new_len = len;
}

static int add_conf(struct plan *p, const char *path, struct result *res)
{
	for (size_t i = 0; i < p->n_conf; i++)
		if (streq(p->conf[i].path, path))
			return 0;
	if (p->n_conf == PLAN_MAX_CONF)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "more than %d sshd_config files", PLAN_MAX_CONF);
	struct plan_file *f = &p->conf[p->n_conf++];
	*f = (struct plan_file){ .path = strdup(path) };
	if (!f->path)
		return result_fail(res, ERR_IO_ERROR, "out of memory");
	if (planfile_read(f, PLAN_CONF_MAX, res) < 0)
		return -1;
	if (!f->st.exists && p->n_conf == 1)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "%s does not exist", path);
	f->uid = f->st.uid;
	f->gid = f->st.gid;
	f->mode = f->st.mode;
	return 0;
}

/* The index of path among the plan's files, read on first use; -1 with
 * res set on failure. */
ssize_t planfile_conf_index(struct plan *p, const char *path, struct result *res)
{
	if (add_conf(p, path, res) < 0)
		return -1;
	for (size_t i = 0; i < p->n_conf; i++)
		if (streq(p->conf[i].path, path))
			return (ssize_t)i;
	return -1;
}

void planfile_free(struct plan_file *f)
{
	free(f->path);
	free(f->old);
	free(f->new);
}

/* A file under the vendor config's directory (/usr/etc/ssh): the package's. */
bool planfile_is_vendor(const struct plan *p, const char *path)
{
	size_t n = p->vendor_dir ? strlen(p->vendor_dir) : 0;
	return n && strncmp(path, p->vendor_dir, n) == 0 && path[n] == '/';
}

void planfile_include_pattern(const char *arg, char pattern[static PATH_MAX])
{
	snprintf(pattern, PATH_MAX, "%s%s%s", arg[0] == '/' ? "" : SSHD_SYSCONFDIR, arg[0] == '/' ? "" : "/", arg);
}
