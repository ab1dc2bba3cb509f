/* The authorized_keys side of a plan: which file sshd reads for the user
 * (AuthorizedKeysFile as sshd splits and expands it, a directory of key
 * fragments, a path shared by every user refused), and its new text: the
 * managed entries removed or added, and the keys the probe must then see
 * accepted or refused. */
#include <glob.h>
#include <pwd.h>
#include <strings.h>

#include "planfile.h"

static int push_key(struct pubkey **v, size_t *n, const struct pubkey *k)
{
	struct pubkey *nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	struct pubkey *c = &nv[*n];
	*c = (struct pubkey){ .type = strdup(k->type), .base64 = strdup(k->base64),
			      .comment = k->comment ? strdup(k->comment) : NULL,
			      .fingerprint = k->fingerprint ? strdup(k->fingerprint) : NULL };
	(*n)++;
	return c->type && c->base64 ? 0 : -ENOMEM;
}

static bool key_in(const struct pubkey *v, size_t n, const struct pubkey *k)
{
	for (size_t i = 0; i < n; i++)
		if (pubkey_equal(&v[i], k))
			return true;
	return false;
}

static void free_keys(struct pubkey *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pubkey_free(&v[i]);
	free(v);
}

static int add_task_keys(struct plan *p, struct authkeys *ak, const struct task *t)
{
	for (size_t i = 0; i < t->n_keys; i++) {
		struct pubkey k = { 0 };
		const char *text = t->keys[i].public_key;
		int r = pubkey_parse(text, strlen(text), &k);
		if (r == 0)
			r = authkeys_add_expiring(ak, t->keys[i].name, t->id, &k, t->key_expires_at);
		if (r == 0)
			r = push_key(&p->accept, &p->n_accept, &k);
		pubkey_free(&k);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The removed keys sshd must now refuse: those no line carries any more. */
static int collect_refused(struct plan *p, const struct authkeys *ak, const struct pubkey *removed, size_t n,
			   struct result *res)
{
	for (size_t i = 0; i < n; i++) {
		if (key_in(p->accept, p->n_accept, &removed[i]) || key_in(p->refuse, p->n_refuse, &removed[i]))
			continue;
		if (authkeys_has_key(ak, &removed[i])) {
			result_warn(res, "key %s is still in %s on a line the agent does not manage",
				    removed[i].fingerprint ? removed[i].fingerprint : removed[i].type, p->keys.path);
			continue;
		}
		int r = push_key(&p->refuse, &p->n_refuse, &removed[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int edit_keys(struct plan *p, const struct task *t, const struct pubkey *replaced, struct result *res)
{
	struct authkeys *ak = NULL;
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	_cleanup_strv_ struct strv names = { 0 };
	int r = authkeys_parse(p->keys.old, p->keys.old_len, &ak);
	for (size_t i = 0; r == 0 && t->action == TASK_DISASSOCIATE && i < t->n_keys; i++)
		r = strv_push(&names, t->keys[i].name);
	if (r == 0)
		r = authkeys_remove_managed(ak, t->action == TASK_ASSOCIATE || names.n == 0 ? NULL : &names,
					    &removed, &n_removed);
	if (r == 0 && replaced && t->action == TASK_ASSOCIATE) {
		r = authkeys_remove_key(ak, replaced);
		if (r >= 0)
			r = push_key(&removed, &n_removed, replaced);
	}
	if (r >= 0 && t->action == TASK_ASSOCIATE)
		r = add_task_keys(p, ak, t);
	if (r >= 0)
		r = collect_refused(p, ak, removed, n_removed, res);
	char *text = NULL;
	size_t len = 0;
	if (r >= 0)
		r = authkeys_serialise(ak, &text, &len);
	if (r >= 0)
		planfile_set_new(&p->keys, text, len);
	free_keys(removed, n_removed);
	authkeys_free(ak);
	return r < 0 ? result_fail(res, r == -EINVAL ? ERR_INVALID_TASK : ERR_IO_ERROR,
				   "cannot edit authorized_keys: %s", strerror(-r))
		     : 0;
}

/* What sshd's tilde_expand_filename() makes of an argument at parse time:
 * "~" is the home of the user sshd runs as (root), "~name" that user's. */
static char *tilde_expand(const char *arg)
{
	if (arg[0] != '~')
		return strdup(arg);
	const char *slash = strchr(arg, '/');
	size_t n = slash ? (size_t)(slash - arg) - 1 : strlen(arg) - 1;
	char name[256];
	struct passwd pw, *found = NULL;
	char buf[4096];
	if (n >= sizeof(name))
		return NULL;
	memcpy(name, arg + 1, n);
	name[n] = '\0';
	if ((n ? getpwnam_r(name, &pw, buf, sizeof(buf), &found) : getpwuid_r(0, &pw, buf, sizeof(buf), &found)) != 0 ||
	    !found)
		return NULL;
	char *out = NULL;
	return asprintf(&out, "%s%s", pw.pw_dir, slash ? slash : "") < 0 ? NULL : out;
}

/* Does an AuthorizedKeysFile line of the config, split and expanded as
 * sshd does it, print as value? */
static bool line_prints_as(const struct strv *args, const char *value)
{
	_cleanup_buf_ struct buf b = { 0 };
	for (size_t i = 0; i < args->n; i++) {
		_cleanup_free_ char *e = tilde_expand(args->v[i]);
		if (!e || (i && buf_append(&b, " ", 1) < 0) || buf_puts(&b, e) < 0)
			return false;
	}
	return b.data && streq(b.data, value);
}

static int find_keys_line(struct plan *p, size_t index, int depth, const char *value, struct strv *out,
			  struct result *res);

/* The files an Include names, searched in sshd's order. */
/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH */
static void find_keys_included(struct plan *p, const struct strv *args, int depth, const char *value,
			       struct strv *out, struct result *res)
{
	for (size_t i = 0; out->n == 0 && i < args->n; i++) {
		char pattern[PATH_MAX];
		const char *a = args->v[i];
		glob_t g = { 0 };
		planfile_include_pattern(a, pattern);
		if (glob(pattern, 0, NULL, &g) != 0)
			g.gl_pathc = 0;
		for (size_t k = 0; out->n == 0 && k < g.gl_pathc; k++) {
			ssize_t at = planfile_conf_index(p, g.gl_pathv[k], res);
			if (at >= 0)
				find_keys_line(p, (size_t)at, depth + 1, value, out, res);
		}
		globfree(&g);
	}
}

/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH */
static int find_keys_line(struct plan *p, size_t index, int depth, const char *value, struct strv *out,
			  struct result *res)
{
	struct sshdconf_directive d = { 0 };
	size_t pos = 0;
	int r;
	while (out->n == 0 && depth <= PLAN_INCLUDE_DEPTH &&
	       (r = sshdconf_next(p->conf[index].old, p->conf[index].old_len, &pos, &d)) > 0) {
		if (!strcasecmp(d.keyword, "AuthorizedKeysFile") && line_prints_as(&d.args, value)) {
			for (size_t i = 0; r >= 0 && i < d.args.n; i++)
				r = strv_push_take(out, tilde_expand(d.args.v[i]));
		} else if (!strcasecmp(d.keyword, "Include")) {
			find_keys_included(p, &d.args, depth, value, out, res);
		}
	}
	strv_free(&d.args);
	return out->n ? 0 : -ENOENT;
}

/* The AuthorizedKeysFile entries as sshd split them. sshd -T joins them
 * with spaces, so a quoted path with a space in it reads like two paths:
 * the config line that prints as the answer says which it is. */
static int keys_entries(struct plan *p, const struct config *cfg, const char *value, struct strv *out)
{
	/* A config file that cannot be read leaves the answer as printed. */
	struct result scratch;
	result_init(&scratch);
	char vendor_path[PATH_MAX];
	bool vendor;
	const char *path = sshd_main_config(cfg, vendor_path, sizeof(vendor_path), &vendor);
	ssize_t top = strchr(value, ' ') ? planfile_conf_index(p, path, &scratch) : -1;
	int r = top >= 0 ? find_keys_line(p, (size_t)top, 0, value, out, &scratch) : -ENOENT;
	result_free(&scratch);
	if (r == 0)
		return 0;
	strv_free(out);
	_cleanup_free_ char *copy = strdup(value);
	char *save = NULL;
	if (!copy)
		return -ENOMEM;
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		if (strv_push(out, w) < 0)
			return -ENOMEM;
	return 0;
}

/* Lexically, with "." and ".." taken out: is path inside dir? */
static bool path_under(const char *path, const char *dir)
{
	char norm[PATH_MAX];
	size_t n = 0;
	_cleanup_free_ char *copy = strdup(path);
	char *save = NULL;
	if (!copy)
		return false;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (streq(c, "."))
			continue;
		if (streq(c, "..")) {
			while (n > 0 && norm[--n] != '/')
				;
			continue;
		}
		size_t l = strlen(c);
		if (n + l + 2 >= sizeof(norm))
			return false;
		norm[n++] = '/';
		memcpy(norm + n, c, l);
		n += l;
	}
	norm[n] = '\0';
	size_t d = strlen(dir);
	while (d > 1 && dir[d - 1] == '/')
		d--;
	return strncmp(norm, dir, d) == 0 && norm[d] == '/';
}

#define KEYS_FRAGMENT_NAME "kps-agent"
#define SSHD_WILDCARD_VERSION 1000	/* OpenSSH 10.0 reads every file an AuthorizedKeysFile glob matches */

/* Where sshd reads a directory of key files (".ssh/authorized_keys.d/" and a star,
 * Fedora CoreOS), each tool owns one file there: the agent's is
 * DIR/kps-agent, and the other files are left alone. Only where this sshd
 * expands the wildcard (OpenSSH 10.0 and later); an older one reads a file
 * named "*". [sshd] key_fragment = no keeps the first plain file. */
static char *keys_fragment(const struct config *cfg, const struct strv *entries)
{
	const char *dir_glob = NULL;
	for (size_t i = 0; !dir_glob && cfg->key_fragment && i < entries->n; i++) {
		size_t n = strlen(entries->v[i]);
		if (n > 2 && streq(entries->v[i] + n - 2, "/*") && !strpbrk(entries->v[i], "?[") &&
		    strchr(entries->v[i], '*') == entries->v[i] + n - 1)
			dir_glob = entries->v[i];
	}
	if (!dir_glob || sshd_version(cfg) < SSHD_WILDCARD_VERSION)
		return NULL;
	char *path = NULL;
	int n = (int)strlen(dir_glob) - 1;
	return asprintf(&path, "%.*s" KEYS_FRAGMENT_NAME, n, dir_glob) < 0 ? NULL : path;
}

/* The file sshd reads for the user: the agent's fragment where sshd reads a
 * directory of them, else the first entry that is a path, not a wildcard
 * (OpenSSH 10 reads every file a wildcard matches). */
static int keys_path(struct plan *p, const struct config *cfg, const struct sshd_settings *s, struct result *res)
{
	const struct plan_user *u = &p->user;
	_cleanup_strv_ struct strv entries = { 0 };
	if (keys_entries(p, cfg, s->authorized_keys_file, &entries) < 0)
		return result_fail(res, ERR_IO_ERROR, "out of memory");
	if (entries.n == 0 || streq(entries.v[0], "none"))
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "sshd reads no authorized_keys file for user %s",
				   u->name);
	const char *pattern = NULL;
	_cleanup_free_ char *fragment = keys_fragment(cfg, &entries);
	if (fragment)
		pattern = fragment;
	for (size_t i = 0; !pattern && i < entries.n; i++)
		if (!strpbrk(entries.v[i], "*?["))
			pattern = entries.v[i];
	if (!pattern)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "every AuthorizedKeysFile entry (%s) is a wildcard: no file to write", s->authorized_keys_file);
	p->keys.path = sshd_expand_keys_path(pattern, u->home, u->name, u->uid);
	if (!p->keys.path)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "cannot expand AuthorizedKeysFile %s", pattern);
	/* A path that names no user is every user's: a key written there for
	 * one would log in as all of them. */
	if (!strstr(pattern, "%u") && !strstr(pattern, "%U") && !path_under(p->keys.path, u->home))
		return result_fail(res, ERR_UNSAFE_PATH,
				   "AuthorizedKeysFile %s is shared by every user: a key written there for %s logs in as each of them",
				   pattern, u->name);
	return 0;
}

int plan_keys(struct plan *p, const struct config *cfg, const struct sshd_settings *s, const struct task *t,
	      const struct pubkey *replaced, struct result *res)
{
	const struct plan_user *u = &p->user;
	if (!p->keys.path && keys_path(p, cfg, s, res) < 0)
		return -1;
	p->keys.walk_uid = u->uid;
	p->keys.walk_gid = u->gid;
	p->keys.home = u->home;
	if (planfile_read(&p->keys, PLAN_KEYS_MAX, res) < 0)
		return -1;
	/* A key file root keeps for the user (outside home) stays root's. */
	bool root_kept = p->keys.st.exists && p->keys.st.uid == 0 && u->uid != 0;
	p->keys.uid = root_kept ? 0 : u->uid;
	p->keys.gid = root_kept ? p->keys.st.gid : u->gid;
	p->keys.mode = root_kept ? p->keys.st.mode : 0600;
	return edit_keys(p, t, replaced, res);
}

void plan_keys_reset(struct plan *p)
{
	planfile_free(&p->keys);
	p->keys = (struct plan_file){ 0 };
	free_keys(p->accept, p->n_accept);
	free_keys(p->refuse, p->n_refuse);
	p->accept = p->refuse = NULL;
	p->n_accept = p->n_refuse = 0;
}
