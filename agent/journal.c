/* results/<task_id>.json, outbox/<task_id>.json and inflight.json (the
 * backups) in the state dir: the durable records. Everything written here
 * is fsync'd before the agent acts on it. Records are found through
 * journalcache.c's index. The writes that make a record are journalwrite.c's:
 * the monitor, which only reads, lists and removes, does not link them. */
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "journal.h"

#define MANIFEST_MAX ((size_t)48 * 1024 * 1024)
#define RESULT_MAX ((size_t)64 * 1024)

static int make_state_dir(const char *path)
{
	char partial[PATH_MAX];
	if (strlen(path) >= sizeof(partial) || path[0] != '/')
		return -EINVAL;
	for (const char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		snprintf(partial, sizeof(partial), "%.*s", (int)(p - path), path);
		if (mkdir(partial, *p ? 0755 : 0700) < 0 && errno != EEXIST)
			return -errno;
		if (!*p)
			return 0;
	}
}

static int open_sub(struct journal *j, const char *name, struct safefile_dir *sub)
{
	*sub = (struct safefile_dir)SAFEFILE_DIR_INIT;
	if (mkdirat(j->dir.fd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	sub->fd = openat(j->dir.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub->fd < 0)
		return -errno;
	struct stat st;
	if (fstat(sub->fd, &st) < 0)
		return -errno;
	return st.st_uid == 0 && !(st.st_mode & 022) ? 0 : -EPERM;
}

int journal_open(const char *state_dir, size_t keep, struct journal *j, char *msg, size_t msglen)
{
	*j = (struct journal){ .keep = keep, .dir = SAFEFILE_DIR_INIT, .results = SAFEFILE_DIR_INIT, .outbox = SAFEFILE_DIR_INIT,
			       .lock_fd = -1 };
	int r = make_state_dir(state_dir);
	if (r == 0)
		r = safefile_open_dir(state_dir, 0, 0, NULL, false, &j->dir, msg, msglen);
	if (r == 0)
		r = open_sub(j, "results", &j->results);
	if (r == 0)
		r = open_sub(j, "outbox", &j->outbox);
	if (r == 0) {
		j->lock_fd = openat(j->dir.fd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (j->lock_fd < 0)
			r = -errno;
	}
	if (r < 0 && msglen && !msg[0])
		snprintf(msg, msglen, "state dir %s: %s", state_dir, strerror(-r));
	return r;
}

void journal_close(struct journal *j)
{
	safefile_close_dir(&j->dir);
	safefile_close_dir(&j->results);
	safefile_close_dir(&j->outbox);
	closep(&j->lock_fd);
	j->lock_fd = -1;
}

int journal_lock(struct journal *j, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int wait = 1;
	while (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		poll(NULL, 0, wait);
		wait = wait < 50 ? wait * 2 : 50;
	}
	return 0;
}


int journal_lookup(struct journal *j, const char *task_id, struct result *res)
{
	char name[TASK_ID_MAX + 8];
	char msg[128];
	_cleanup_free_ char *text = NULL;
	size_t len;
	struct safefile_stat st;
	journal_file_name(task_id, name, sizeof(name));
	int r = safefile_read(&j->results, name, RESULT_MAX, &text, &len, &st, msg, sizeof(msg));
	if (r < 0)
		return r;
	if (!st.exists)
		return -ENOENT;
	return result_from_json(text, len, res);
}

static bool in_outbox(const struct journal *j, const char *task_id)
{
	char name[TASK_ID_MAX + 8];
	struct stat st;
	journal_file_name(task_id, name, sizeof(name));
	return fstatat(j->outbox.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The result's hold_until is still ahead: its task may come again. */
static bool held(const struct journal *j, const char *task_id)
{
	char name[TASK_ID_MAX + 8], msg[128];
	_cleanup_free_ char *text = NULL;
	size_t len;
	struct safefile_stat st;
	journal_file_name(task_id, name, sizeof(name));
	if (safefile_read(&j->results, name, RESULT_MAX, &text, &len, &st, msg, sizeof(msg)) < 0 || !st.exists)
		return false;
	_cleanup_cjson_ cJSON *root = cJSON_ParseWithLength(text, len);
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "hold_until");
	return cJSON_IsNumber(h) && h->valuedouble > (double)time(NULL);
}

int journal_prune(struct journal *j, const char *keep_id)
{
	struct journal_entry *v = NULL;
	size_t n = 0, acked = 0;
	if (journalcache_count(&j->results) <= j->keep)
		return 0;
	int r = journalcache_list(&j->results, &v, &n);
	if (r < 0)
		return r;
	/* Newest first: the first results_keep acknowledged ones stay. */
	for (size_t i = n; i-- > 0;) {
		if (in_outbox(j, v[i].id))
			continue;
		if (++acked <= j->keep || (keep_id && streq(v[i].id, keep_id)) || held(j, v[i].id))
			continue;
		char name[TASK_ID_MAX + 8];
		journal_file_name(v[i].id, name, sizeof(name));
		if (unlinkat(j->results.fd, name, 0) < 0 && errno != ENOENT && r == 0)
			r = -errno;
	}
	journalcache_entries_free(v, n);
	return r;
}

int journal_outbox_list(struct journal *j, struct strv *ids)
{
	struct journal_entry *v = NULL;
	size_t n = 0;
	int r = journalcache_list(&j->outbox, &v, &n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		r = strv_push_take(ids, v[i].id);
		v[i].id = NULL;
	}
	journalcache_entries_free(v, n);
	return r;
}

int journal_outbox_get(struct journal *j, const char *task_id, char **json, size_t *len)
{
	char name[TASK_ID_MAX + 8], msg[128];
	struct safefile_stat st;
	journal_file_name(task_id, name, sizeof(name));
	int r = safefile_read(&j->outbox, name, RESULT_MAX, json, len, &st, msg, sizeof(msg));
	if (r == 0 && !st.exists) {
		free(*json);
		*json = NULL;
		return -ENOENT;
	}
	return r;
}

int journal_outbox_remove(struct journal *j, const char *task_id)
{
	char name[TASK_ID_MAX + 8];
	journal_file_name(task_id, name, sizeof(name));
	int r = safefile_remove(&j->outbox, name);
	/* An acknowledged result now counts against results_keep. */
	if (r == 0)
		journal_prune(j, NULL);
	return r;
}

static int json_uint(const cJSON *o, const char *key, unsigned *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4294967295.0)
		return -EBADMSG;
	*out = (unsigned)v->valuedouble;
	return 0;
}

static int json_to_file(const cJSON *o, struct backup_file *f)
{
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(o, "path");
	const cJSON *home = cJSON_GetObjectItemCaseSensitive(o, "home");
	const cJSON *len = cJSON_GetObjectItemCaseSensitive(o, "len");
	const cJSON *ours_len = cJSON_GetObjectItemCaseSensitive(o, "ours_len");
	unsigned walk_uid, walk_gid, uid, gid, mode;
	*f = (struct backup_file){ 0 };
	if (!cJSON_IsString(path) || !cJSON_IsString(home) || !cJSON_IsNumber(len) || len->valuedouble < 0 ||
	    len->valuedouble > MANIFEST_MAX || !cJSON_IsNumber(ours_len) || ours_len->valuedouble < 0 ||
	    ours_len->valuedouble > MANIFEST_MAX)
		return -EBADMSG;
	if (json_uint(o, "walk_uid", &walk_uid) < 0 || json_uint(o, "walk_gid", &walk_gid) < 0 ||
	    json_uint(o, "uid", &uid) < 0 || json_uint(o, "gid", &gid) < 0 || json_uint(o, "mode", &mode) < 0)
		return -EBADMSG;
	*f = (struct backup_file){
		.path = strdup(path->valuestring),
		.home = strdup(home->valuestring),
		.walk_uid = walk_uid, .walk_gid = walk_gid, .uid = uid, .gid = gid, .mode = mode & 07777,
		.existed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "existed")),
		.dir_created = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "dir_created")),
		.sshd_config = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "sshd_config")),
		.written = true,
	};
	f->len = (size_t)len->valuedouble;
	f->ours_len = (size_t)ours_len->valuedouble;
	return f->path && f->home ? 0 : -ENOMEM;
}

int journal_backup_read(struct journal *j, struct backup *b)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	char msg[128];
	struct safefile_stat st;
	*b = (struct backup){ 0 };
	int r = safefile_read(&j->dir, MANIFEST, MANIFEST_MAX, &text, &len, &st, msg, sizeof(msg));
	if (r < 0)
		return r;
	if (!st.exists)
		return -ENOENT;
	const char *nl = memchr(text, '\n', len);
	if (!nl)
		return -EBADMSG;
	const char *data = nl + 1, *end = text + len;
	_cleanup_cjson_ cJSON *root = cJSON_ParseWithLength(text, (size_t)(nl - text));
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "task_id");
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(root, "server_id");
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
	if (!cJSON_IsString(id) || !str_is_token(id->valuestring, TASK_ID_MAX) || !cJSON_IsArray(files))
		return -EBADMSG;
	snprintf(b->task_id, sizeof(b->task_id), "%s", id->valuestring);
	if (cJSON_IsString(sid) && sid->valuestring[0])
		b->server_id = strdup(sid->valuestring);
	const cJSON *o;
	cJSON_ArrayForEach(o, files) {
		struct backup_file f;
		r = json_to_file(o, &f);
		if (r == 0 && (f.len > (size_t)(end - data) || f.ours_len > (size_t)(end - data) - f.len))
			r = -EBADMSG;
		if (r == 0 && (!(f.data = malloc(f.len + 1)) || !(f.ours = malloc(f.ours_len + 1))))
			r = -ENOMEM;
		if (r == 0) {
			memcpy(f.data, data, f.len);
			f.data[f.len] = '\0';
			data += f.len;
			memcpy(f.ours, data, f.ours_len);
			f.ours[f.ours_len] = '\0';
			data += f.ours_len;
			r = backup_add(b, &f);
		}
		if (r < 0) {
			free(f.path);
			free(f.home);
			free(f.data);
			free(f.ours);
			return r;
		}
	}
	return 0;
}

int journal_backup_clear(struct journal *j)
{
	return safefile_remove(&j->dir, MANIFEST);
}

/* Takes ownership of f's allocations. */
int backup_add(struct backup *b, const struct backup_file *f)
{
	struct backup_file *n = realloc(b->files, (b->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	b->files = n;
	b->files[b->n++] = *f;
	return 0;
}

void backup_free(struct backup *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->files[i].path);
		free(b->files[i].home);
		free(b->files[i].data);
		free(b->files[i].ours);
	}
	free(b->files);
	free(b->server_id);
	*b = (struct backup){ 0 };
}

