/* Works out a task's change from the files as they are: the new
 * authorized_keys, the new sshd_config texts, and the probe's expectations. */
#include <fnmatch.h>
#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <strings.h>

#include "plan.h"
#include "sshdmatch.h"
#include "sshdpenalty.h"

#define PLAN_INCLUDE_DEPTH 8
#define SSHD_SYSCONFDIR "/etc/ssh"
#define PLAN_VENDOR_DROPIN "00-kps-agent.conf"

/* A file under the vendor config's directory (/usr/etc/ssh): the package's. */
static bool is_vendor_path(const struct plan *p, const char *path)
{
	size_t n = p->vendor_dir ? strlen(p->vendor_dir) : 0;
	return n && strncmp(path, p->vendor_dir, n) == 0 && path[n] == '/';
}

int plan_user(const char *name, struct plan_user *u)
{
	struct passwd pw, *found = NULL;
	long size = sysconf(_SC_GETPW_R_SIZE_MAX);
	_cleanup_free_ char *buf = malloc(size > 0 ? (size_t)size : 16384);
	if (!buf)
		return -ENOMEM;
	int r = getpwnam_r(name, &pw, buf, size > 0 ? (size_t)size : 16384, &found);
	if (r != 0)
		return -r;
	if (!found)
		return -ENOENT;
	if (!pw.pw_dir || pw.pw_dir[0] != '/')
		return -ENOENT;
	*u = (struct plan_user){ .name = strdup(name), .uid = pw.pw_uid, .gid = pw.pw_gid, .home = strdup(pw.pw_dir) };
	return u->name && u->home ? 0 : -ENOMEM;
}

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
static int read_plan_file(struct plan_file *f, size_t max, struct result *res)
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

static void set_new(struct plan_file *f, char *text, size_t len)
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
		set_new(&p->keys, text, len);
	free_keys(removed, n_removed);
	authkeys_free(ak);
	return r < 0 ? result_fail(res, r == -EINVAL ? ERR_INVALID_TASK : ERR_IO_ERROR,
				   "cannot edit authorized_keys: %s", strerror(-r))
		     : 0;
}

static int add_conf(struct plan *p, const char *path, struct result *res);
static ssize_t conf_index(struct plan *p, const char *path, struct result *res);

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
		snprintf(pattern, sizeof(pattern), "%s%s%s", a[0] == '/' ? "" : SSHD_SYSCONFDIR, a[0] == '/' ? "" : "/", a);
		if (glob(pattern, 0, NULL, &g) != 0)
			g.gl_pathc = 0;
		for (size_t k = 0; out->n == 0 && k < g.gl_pathc; k++) {
			ssize_t at = conf_index(p, g.gl_pathv[k], res);
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
	ssize_t top = strchr(value, ' ') ? conf_index(p, path, &scratch) : -1;
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
	if (read_plan_file(&p->keys, PLAN_KEYS_MAX, res) < 0)
		return -1;
	/* A key file root keeps for the user (outside home) stays root's. */
	bool root_kept = p->keys.st.exists && p->keys.st.uid == 0 && u->uid != 0;
	p->keys.uid = root_kept ? 0 : u->uid;
	p->keys.gid = root_kept ? p->keys.st.gid : u->gid;
	p->keys.mode = root_kept ? p->keys.st.mode : 0600;
	return edit_keys(p, t, replaced, res);
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
	if (read_plan_file(f, PLAN_CONF_MAX, res) < 0)
		return -1;
	if (!f->st.exists && p->n_conf == 1)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "%s does not exist", path);
	f->uid = f->st.uid;
	f->gid = f->st.gid;
	f->mode = f->st.mode;
	return 0;
}

/* Every Port line sshd reads must yield to the new one, drop-ins too. */
/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH */
static int plan_includes(struct plan *p, size_t index, int depth, struct result *res)
{
	_cleanup_strv_ struct strv pats = { 0 };
	if (depth > PLAN_INCLUDE_DEPTH)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "Include nested deeper than %d", PLAN_INCLUDE_DEPTH);
	if (sshdconf_includes(p->conf[index].old, p->conf[index].old_len, &pats) < 0)
		return result_fail(res, ERR_IO_ERROR, "out of memory");
	for (size_t i = 0; i < pats.n; i++) {
		char pattern[PATH_MAX];
		snprintf(pattern, sizeof(pattern), "%s%s%s", pats.v[i][0] == '/' ? "" : SSHD_SYSCONFDIR,
			 pats.v[i][0] == '/' ? "" : "/", pats.v[i]);
		glob_t g = { 0 };
		if (glob(pattern, 0, NULL, &g) != 0) {
			globfree(&g);
			continue;
		}
		int r = 0;
		for (size_t k = 0; r == 0 && k < g.gl_pathc; k++) {
			size_t before = p->n_conf;
			r = add_conf(p, g.gl_pathv[k], res);
			if (r == 0 && p->n_conf > before)
				r = plan_includes(p, p->n_conf - 1, depth + 1, res);
		}
		globfree(&g);
		if (r < 0)
			return r;
	}
	return 0;
}

static void want_from_task(struct plan *p, const struct task *t)
{
	struct sshdconf_block *w = &p->want;
	p->password = p->kbdinteractive = -1;
	if ((t->action == TASK_DISASSOCIATE && !p->keep_password) || t->disable_password == 0) {
		/* Password login back on; keyboard-interactive back to what
		 * the admin had before the agent turned it off. */
		w->password = 1;
		w->kbdinteractive = -1;
	} else if (t->disable_password == 1) {
		w->password = 0;
		w->kbdinteractive = 0;
		p->kbdinteractive = 0;
	} else {
		return;
	}
	p->password = w->password;
}

static bool ports_are(const struct sshd_settings *s, int port)
{
	return s->n_ports == 1 && s->ports[0] == port;
}

static int write_main(const struct plan_file *f, const struct sshdconf_block *b, char **text, size_t *len,
		      struct result *res)
{
	int r = sshdconf_block_write(f->old, f->old_len, b, text, len);
	return r < 0 ? result_fail(res, ERR_SSHD_CONFIG_INVALID, "cannot edit %s: %s", f->path, strerror(-r)) : 0;
}

static int plan_port(struct plan *p, const struct sshd_settings *s, struct result *res)
{
	p->want.ports[0] = p->port;
	p->want.n_ports = 1;
	for (size_t i = 0; i < s->n_ports && i + 1 < SSHDCONF_MAX_PORTS; i++)
		p->stage1_ports[p->n_stage1_ports++] = s->ports[i];
	p->stage1_ports[p->n_stage1_ports++] = p->port;
	struct sshdconf_block stage1 = p->want;
	memcpy(stage1.ports, p->stage1_ports, sizeof(stage1.ports));
	stage1.n_ports = p->n_stage1_ports;
	if (write_main(&p->conf[p->block], &stage1, &p->main_stage1, &p->main_stage1_len, res) < 0)
		return -1;
	if (plan_includes(p, 0, 0, res) < 0)
		return -1;
	for (size_t i = 1; i < p->n_conf; i++) {
		struct plan_file *f = &p->conf[i];
		char *text;
		size_t len;
		bool changed;
		/* The vendor's files under /usr are the package's: a Port line
		 * there is one the agent cannot change (check_ports says so). */
		if (i == p->block || is_vendor_path(p, f->path))
			continue;
		if (sshdconf_disable_ports(f->old, f->old_len, &text, &len, &changed) < 0)
			return result_fail(res, ERR_IO_ERROR, "cannot edit %s", f->path);
		set_new(f, text, len);
	}
	return 0;
}

/* The index of path among the plan's files, read on first use; -1 with
 * res set on failure. */
static ssize_t conf_index(struct plan *p, const char *path, struct result *res)
{
	if (add_conf(p, path, res) < 0)
		return -1;
	for (size_t i = 0; i < p->n_conf; i++)
		if (streq(p->conf[i].path, path))
			return (ssize_t)i;
	return -1;
}

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
		snprintf(pattern, sizeof(pattern), "%s%s%s", a[0] == '/' ? "" : SSHD_SYSCONFDIR, a[0] == '/' ? "" : "/", a);
		glob_t g = { 0 };
		int r = 0;
		/* No match is no file, as for sshd. */
		if (glob(pattern, 0, NULL, &g) != 0)
			g.gl_pathc = 0;
		for (size_t k = 0; r == 0 && k < g.gl_pathc; k++) {
			ssize_t at = conf_index(w->p, g.gl_pathv[k], w->res);
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
static int check_match_blocks(struct plan *p, const struct sshd_settings *s, struct result *res)
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

/* OpenSSH 9.8+ penalises an address whose connections end without a login
 * (PerSourcePenalties): the agent's refused proofs and its probes do, by
 * design, and a penalised [sshd] address would fail every later proof and
 * probe. Where sshd penalises it, the managed block exempts it, keeping
 * the admin's own exemptions (the block's line comes first and wins). */
static int want_penalty_exempt(struct plan *p, const struct config *cfg, const struct sshd_settings *s,
			       struct result *res)
{
	const char *addr = streq(cfg->address, "localhost") ? "127.0.0.1" : cfg->address;
	if (sshdpenalty_exempt(s->penalties, s->penalty_exempt, addr))
		return 0;
	const char *base = p->want.penalty_exempt[0] ? p->want.penalty_exempt
			   : s->penalty_exempt && strcasecmp(s->penalty_exempt, "none") != 0 ? s->penalty_exempt
											       : "";
	char list[SSHDCONF_EXEMPT_MAX];
	int n = snprintf(list, sizeof(list), "%s%s%s", base, base[0] ? "," : "", addr);
	if (n < 0 || (size_t)n >= sizeof(list))
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "PerSourcePenaltyExemptList would be longer than %zu bytes with %s added", sizeof(list) - 1,
				   addr);
	memcpy(p->want.penalty_exempt, list, (size_t)n + 1);
	return 0;
}

/* No /etc/ssh/sshd_config, the vendor's under /usr (openSUSE, SLES 16):
 * creating the /etc one would replace the whole vendor config, so the block
 * goes into a drop-in of its own in the directory the vendor config
 * includes, named to sort first. */
static int plan_vendor_block(struct plan *p, const struct config *cfg, struct result *res)
{
	_cleanup_strv_ struct strv pats = { 0 };
	char dropin[PATH_MAX];
	const char *slash = strrchr(cfg->sshd_config, '/');
	int dirlen = slash ? (int)(slash - cfg->sshd_config) : 0;
	snprintf(dropin, sizeof(dropin), "%.*s/sshd_config.d/" PLAN_VENDOR_DROPIN, dirlen, cfg->sshd_config);
	if (sshdconf_includes(p->conf[0].old, p->conf[0].old_len, &pats) < 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "cannot read the Include lines of %s", p->conf[0].path);
	bool included = false;
	for (size_t i = 0; !included && i < pats.n; i++) {
		char pattern[PATH_MAX];
		snprintf(pattern, sizeof(pattern), "%s%s%s", pats.v[i][0] == '/' ? "" : SSHD_SYSCONFDIR,
			 pats.v[i][0] == '/' ? "" : "/", pats.v[i]);
		included = fnmatch(pattern, dropin, FNM_PATHNAME) == 0;
	}
	if (!included)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "%s does not exist and the vendor config %s includes no %.*s/sshd_config.d: no place for the "
				   "agent's settings",
				   cfg->sshd_config, p->conf[0].path, dirlen, cfg->sshd_config);
	ssize_t at = conf_index(p, dropin, res);
	if (at < 0)
		return -1;
	struct plan_file *f = &p->conf[at];
	if (!f->st.exists) {
		f->uid = 0;
		f->gid = 0;
		f->mode = 0644;
	}
	p->block = (size_t)at;
	return 0;
}

int plan_sshd_config(struct plan *p, const struct config *cfg, const struct sshd_settings *s, const struct task *t,
		     struct result *res)
{
	char vendor_path[PATH_MAX];
	bool vendor;
	const char *top = sshd_main_config(cfg, vendor_path, sizeof(vendor_path), &vendor);
	if (conf_index(p, top, res) != 0)
		return -1;
	p->block = 0;
	if (vendor) {
		p->vendor_dir = strndup(top, (size_t)(strrchr(top, '/') - top));
		if (!p->vendor_dir)
			return result_fail(res, ERR_IO_ERROR, "out of memory");
		if (plan_vendor_block(p, cfg, res) < 0)
			return -1;
	}
	struct plan_file *main = &p->conf[p->block];
	int r = sshdconf_block_read(main->old, main->old_len, &p->want);
	if (r < 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "the kps-agent block in %s is damaged", main->path);
	want_from_task(p, t);
	if (want_penalty_exempt(p, cfg, s, res) < 0)
		return -1;
	if (t->port && !ports_are(s, t->port)) {
		p->port = t->port;
		p->port_change = true;
		if (plan_port(p, s, res) < 0)
			return -1;
	}
	char *text;
	size_t len;
	if (write_main(main, &p->want, &text, &len, res) < 0)
		return -1;
	set_new(main, text, len);
	return check_match_blocks(p, s, res);
}

static bool port_in(const int *ports, size_t n, int port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

/* The port after a ListenAddress's last colon; 0, which no plan wants,
 * when it is not a port number. */
static int listen_port(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || v < 0 || v > 65535)
		return 0;
	return (int)v;
}

static int check_ports(const struct plan *p, const struct sshd_settings *s, bool stage1, struct result *res)
{
	const int *want = stage1 ? p->stage1_ports : &p->port;
	size_t n = stage1 ? p->n_stage1_ports : 1;
	for (size_t i = 0; i < s->n_ports; i++)
		if (!port_in(want, n, s->ports[i]))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID,
					   "sshd would still listen on port %d: a Port line the agent cannot change",
					   s->ports[i]);
	for (size_t i = 0; i < n; i++)
		if (!port_in(s->ports, s->n_ports, want[i]))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID, "sshd would not listen on port %d", want[i]);
	for (size_t i = 0; i < s->listen.n; i++) {
		const char *colon = strrchr(s->listen.v[i], ':');
		if (colon && !port_in(want, n, listen_port(colon + 1)))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID,
					   "ListenAddress %s keeps its own port", s->listen.v[i]);
	}
	return 0;
}

int plan_check_effective(const struct plan *p, const struct sshd_settings *s, bool stage1, struct result *res)
{
	const char *u = p->user.name;
	if (p->password >= 0 && s->password != p->password)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "PasswordAuthentication for user %s stays %s: a Match block or an earlier line overrides it",
				   u, s->password ? "yes" : "no");
	if (p->kbdinteractive == 0 && s->kbdinteractive != 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "KbdInteractiveAuthentication for user %s stays yes: a Match block overrides it", u);
	if (p->n_accept && s->pubkey == 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "PubkeyAuthentication is off for user %s", u);
	if (p->port_change)
		return check_ports(p, s, stage1, res);
	return 0;
}

static void plan_file_free(struct plan_file *f)
{
	free(f->path);
	free(f->old);
	free(f->new);
}

void plan_keys_reset(struct plan *p)
{
	plan_file_free(&p->keys);
	p->keys = (struct plan_file){ 0 };
	free_keys(p->accept, p->n_accept);
	free_keys(p->refuse, p->n_refuse);
	p->accept = p->refuse = NULL;
	p->n_accept = p->n_refuse = 0;
}

void plan_free(struct plan *p)
{
	plan_file_free(&p->keys);
	for (size_t i = 0; i < p->n_conf; i++)
		plan_file_free(&p->conf[i]);
	free(p->main_stage1);
	free(p->vendor_dir);
	free_keys(p->accept, p->n_accept);
	free_keys(p->refuse, p->n_refuse);
	free(p->user.name);
	free(p->user.home);
	*p = (struct plan){ 0 };
}
