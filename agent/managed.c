/* managed/<user> in the state dir, and what it points to. sshd refuses an
 * expired key by itself (expiry-time); the sweep only tidies the file, so
 * a sweep that cannot run now loses nothing but time. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "audit.h"
#include "log.h"
#include "managed.h"
#include "plan.h"

#define INDEX_DIR MANAGED_INDEX_DIR
#define INDEX_MAX 4096
#define SWEEP_RETRIES 5

static int index_dir(int state_fd, bool create)
{
	if (create && mkdirat(state_fd, INDEX_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(state_fd, INDEX_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int managed_note(struct journal *j, const char *user, const char *path)
{
	struct safefile_dir d = SAFEFILE_DIR_INIT;
	_cleanup_free_ char *old = NULL;
	char msg[128];
	size_t len = 0;
	struct safefile_stat st;
	if (!str_is_token(user, USER_NAME_MAX + 1) || streq(user, ".") || streq(user, ".."))
		return -EINVAL;
	d.fd = index_dir(j->dir.fd, true);
	if (d.fd < 0)
		return d.fd;
	int r = safefile_read(&d, user, INDEX_MAX, &old, &len, &st, msg, sizeof(msg));
	if (r == 0 && !(st.exists && len == strlen(path) && memcmp(old, path, len) == 0))
		r = safefile_replace(&d, user, path, strlen(path), 0, 0, 0600, NULL, NULL);
	safefile_close_dir(&d);
	return r;
}

struct indexed {
	char *user;
	char *path;
};

static void indexed_free(struct indexed *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].user);
		free(v[i].path);
	}
	free(v);
}

/* The index, or the one user's line of it. */
static int index_read(const char *state_dir, const char *only, struct indexed **ret, size_t *ret_n)
{
	struct safefile_dir d = SAFEFILE_DIR_INIT;
	struct indexed *v = NULL;
	size_t n = 0;
	int r = 0;
	*ret = NULL;
	*ret_n = 0;
	_cleanup_close_ int state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state_fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d.fd = index_dir(state_fd, false);
	if (d.fd < 0)
		return d.fd == -ENOENT ? 0 : d.fd;
	DIR *dir = fdopendir(dup(d.fd));
	for (struct dirent *e; r == 0 && dir && (e = readdir(dir));) {
		char msg[128], *text = NULL;
		size_t len;
		struct safefile_stat st;
		if (e->d_name[0] == '.' || (only && !streq(only, e->d_name)))
			continue;
		if (safefile_read(&d, e->d_name, INDEX_MAX, &text, &len, &st, msg, sizeof(msg)) < 0 || !st.exists ||
		    len == 0 || text[0] != '/' || memchr(text, '\n', len)) {
			free(text);
			continue;
		}
		struct indexed *nv = reallocarray(v, n + 1, sizeof(*v));
		if (!nv) {
			free(text);
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[n++] = (struct indexed){ strdup(e->d_name), text };
		if (!v[n - 1].user)
			r = -ENOMEM;
	}
	if (dir)
		closedir(dir);
	safefile_close_dir(&d);
	if (r < 0) {
		indexed_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* The user's key file, opened as the agent writes it (the user's walk). */
struct keyfile {
	struct plan_user u;
	struct safefile_dir d;
	const char *name;
	char *dirpath;
	char *text;
	size_t len;
	struct safefile_stat st;
};

static void keyfile_close(struct keyfile *k)
{
	safefile_close_dir(&k->d);
	free(k->u.name);
	free(k->u.home);
	free(k->dirpath);
	free(k->text);
	*k = (struct keyfile){ .d = SAFEFILE_DIR_INIT };
}

static int keyfile_open(const char *user, const char *path, struct keyfile *k)
{
	char msg[256] = "";
	*k = (struct keyfile){ .d = SAFEFILE_DIR_INIT };
	int r = plan_user(user, &k->u);
	if (r < 0)
		return r;
	k->dirpath = strdup(path);
	char *slash = k->dirpath ? strrchr(k->dirpath, '/') : NULL;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	k->name = path + (slash - k->dirpath) + 1;
	r = safefile_open_dir(k->dirpath[0] ? k->dirpath : "/", k->u.uid, k->u.gid, k->u.home, false, &k->d, msg,
			      sizeof(msg));
	if (r == 0)
		r = safefile_read(&k->d, k->name, PLAN_KEYS_MAX, &k->text, &k->len, &k->st, msg, sizeof(msg));
	if (r < 0 && r != -ENOENT)
		log_warnx("%s: %s", path, msg[0] ? msg : strerror(-r));
	return r;
}

static int list_one(const struct indexed *ix, struct managed_entry **v, size_t *n)
{
	struct keyfile k;
	struct authkeys *ak = NULL;
	struct authkeys_entry *e = NULL;
	size_t m = 0;
	int r = keyfile_open(ix->user, ix->path, &k);
	if (r == 0)
		r = authkeys_parse(k.text, k.len, &ak);
	if (r == 0)
		r = authkeys_managed(ak, &e, &m);
	authkeys_free(ak);
	keyfile_close(&k);
	if (r < 0)
		return r == -ENOMEM ? r : 0;	/* gone or unsafe: nothing to show */
	if (m == 0)
		return 0;
	struct managed_entry *nv = reallocarray(*v, *n + m, sizeof(**v));
	if (!nv) {
		authkeys_entries_free(e, m);
		return -ENOMEM;
	}
	*v = nv;
	for (size_t i = 0; i < m; i++)
		nv[(*n)++] = (struct managed_entry){ strdup(ix->user), strdup(ix->path), e[i] };
	free(e);
	return 0;
}

int managed_list(const struct config *cfg, const char *user, struct managed_entry **ret, size_t *n)
{
	struct indexed *ix = NULL;
	size_t nix = 0;
	*ret = NULL;
	*n = 0;
	int r = index_read(cfg->state_dir, user, &ix, &nix);
	for (size_t i = 0; r == 0 && i < nix; i++)
		r = list_one(&ix[i], ret, n);
	indexed_free(ix, nix);
	for (size_t i = 0; r == 0 && i < *n; i++)
		if (!(*ret)[i].user || !(*ret)[i].path)
			r = -ENOMEM;
	if (r < 0) {
		managed_entries_free(*ret, *n);
		*ret = NULL;
		*n = 0;
	}
	return r;
}

void managed_entries_free(struct managed_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].user);
		free(v[i].path);
		free(v[i].e.keypair);
		free(v[i].e.task_id);
		free(v[i].e.fingerprint);
	}
	free(v);
}

static void audit_expired(const struct indexed *ix, const struct authkeys_entry *e, size_t n, const char *before,
			  const char *after)
{
	for (size_t i = 0; i < n; i++) {
		struct audit_record r = { .user = ix->user, .keypair = e[i].keypair, .fingerprint = e[i].fingerprint,
					  .task_id = e[i].task_id, .path = ix->path, .sha256_before = before,
					  .sha256_after = after, .detail = "key_expires_at passed; entry removed" };
		audit_emit(AUDIT_KEY_EXPIRED, &r);
		log_info("key %s (%s) of user %s expired; its entry was removed from %s", e[i].keypair,
			 e[i].fingerprint, ix->user, ix->path);
	}
}

/* One file: drop what expired (redone when someone wrote the file
 * meanwhile), then the earliest expiry left. */
static int sweep_one(const struct indexed *ix, int64_t now, int64_t *next)
{
	int r = -EAGAIN;
	for (int attempt = 0; r == -EAGAIN && attempt < SWEEP_RETRIES; attempt++) {
		struct keyfile k;
		struct authkeys *ak = NULL;
		struct authkeys_entry *gone = NULL, *left = NULL;
		size_t n_gone = 0, n_left = 0;
		_cleanup_free_ char *text = NULL;
		size_t len = 0;
		r = keyfile_open(ix->user, ix->path, &k);
		if (r == 0)
			r = authkeys_parse(k.text, k.len, &ak);
		if (r == 0)
			r = authkeys_remove_expired(ak, now, &gone, &n_gone);
		if (r > 0)
			r = authkeys_serialise(ak, &text, &len);
		if (r == 0 && n_gone > 0)
			r = safefile_replace(&k.d, k.name, text, len, k.st.uid, k.st.gid, k.st.mode, &k.st, NULL);
		if (r == 0 && n_gone > 0) {
			char before[65], after[65];
			audit_sha256(k.text, k.len, before);
			audit_sha256(text, len, after);
			audit_expired(ix, gone, n_gone, before, after);
		}
		if (r == 0 && authkeys_managed(ak, &left, &n_left) == 0)
			for (size_t i = 0; i < n_left; i++)
				if (left[i].expires > now && (!*next || left[i].expires < *next))
					*next = left[i].expires;
		authkeys_entries_free(gone, n_gone);
		authkeys_entries_free(left, n_left);
		authkeys_free(ak);
		keyfile_close(&k);
	}
	return r == -ENOENT ? 0 : r;
}

int managed_sweep(const struct config *cfg, int64_t now, int64_t *next)
{
	struct journal j;
	struct indexed *ix = NULL;
	size_t nix = 0;
	char msg[256] = "";
	*next = 0;
	int r = journal_open(cfg->state_dir, cfg->results_keep, &j, msg, sizeof(msg));
	if (r == 0)
		r = journal_lock(&j, 0) == 0 ? 0 : -EBUSY;
	if (r == 0)
		r = index_read(cfg->state_dir, NULL, &ix, &nix);
	for (size_t i = 0; r == 0 && i < nix; i++) {
		int s = sweep_one(&ix[i], now, next);
		if (s < 0 && s != -ENOMEM)
			log_warnx("expired keys of user %s: cannot update %s: %s", ix[i].user, ix[i].path, strerror(-s));
		else if (s < 0)
			r = s;
	}
	indexed_free(ix, nix);
	journal_close(&j);
	return r;
}
