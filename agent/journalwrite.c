/* The writes of the journal (journal.h): a result recorded, put in the
 * outbox, the backups of a task in hand. Workers and `apply` make them;
 * the monitor only reads and removes (journal.c). */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "journal.h"

/* Results and the outbox are ordered by mtime, and the kernel stamps files
 * with a clock that ticks every few ms: many records share a stamp. Each is
 * stamped again with the precise time, so that oldest first is the order
 * they were written in. */
static int stamp(const struct safefile_dir *dir, const char *name)
{
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[1] = ts[0];
	return utimensat(dir->fd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* res as dir/<task_id>.json, stamped; with hold_until (a record's, see
 * journal_record) when it is set. */
static int put_result(const struct safefile_dir *dir, const struct result *res, bool with_hold)
{
	char name[TASK_ID_MAX + 8];
	if (!res->task_id[0])
		return -EINVAL;
	_cleanup_free_ char *text = result_to_json(res);
	if (!text)
		return -ENOMEM;
	if (with_hold && res->hold_until > 0) {
		char *held = NULL;
		size_t n = strlen(text);
		if (asprintf(&held, "%.*s,\"hold_until\":%lld}", (int)(n - 1), text, (long long)res->hold_until) < 0)
			return -ENOMEM;
		free(text);
		text = held;
	}
	journal_file_name(res->task_id, name, sizeof(name));
	int r = safefile_replace(dir, name, text, strlen(text), 0, 0, 0600, NULL, NULL);
	return r < 0 ? r : stamp(dir, name);
}

/* A task that may come again (a signed one, until its expires_at) is kept
 * until then, whatever results_keep says: see journal_prune. */
int journal_record(struct journal *j, const struct result *res)
{
	int r = put_result(&j->results, res, true);
	if (r == 0)
		journal_prune(j, res->task_id);
	return r;
}

int journal_outbox_put(struct journal *j, const struct result *res)
{
	return put_result(&j->outbox, res, false);
}

static cJSON *file_to_json(const struct backup_file *f)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	bool ok = cJSON_AddStringToObject(o, "path", f->path) && cJSON_AddNumberToObject(o, "walk_uid", f->walk_uid) &&
		  cJSON_AddNumberToObject(o, "walk_gid", f->walk_gid) &&
		  cJSON_AddStringToObject(o, "home", f->home ? f->home : "") &&
		  cJSON_AddBoolToObject(o, "existed", f->existed) && cJSON_AddNumberToObject(o, "uid", f->uid) &&
		  cJSON_AddNumberToObject(o, "gid", f->gid) && cJSON_AddNumberToObject(o, "mode", f->mode) &&
		  cJSON_AddNumberToObject(o, "len", (double)f->len) && cJSON_AddBoolToObject(o, "dir_created", f->dir_created) &&
		  cJSON_AddBoolToObject(o, "sshd_config", f->sshd_config) &&
		  cJSON_AddNumberToObject(o, "ours_len", (double)f->ours_len);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int journal_backup_write(struct journal *j, const struct backup *b)
{
	_cleanup_cjson_ cJSON *root = cJSON_CreateObject();
	cJSON *files = root ? cJSON_AddArrayToObject(root, "files") : NULL;
	if (!files || !cJSON_AddStringToObject(root, "task_id", b->task_id) ||
	    !cJSON_AddStringToObject(root, "server_id", b->server_id ? b->server_id : ""))
		return -ENOMEM;
	/* One file: a JSON line naming the files, then their contents as they
	 * are, back to back. One fsync, no encoding. */
	for (size_t i = 0; i < b->n; i++) {
		cJSON *o = file_to_json(&b->files[i]);
		if (!o || !cJSON_AddItemToArray(files, o))
			return -ENOMEM;
	}
	_cleanup_free_ char *head = cJSON_PrintUnformatted(root);
	_cleanup_buf_ struct buf out = { 0 };
	int r = head ? buf_printf(&out, "%s\n", head) : -ENOMEM;
	for (size_t i = 0; r == 0 && i < b->n; i++) {
		r = buf_append(&out, b->files[i].data, b->files[i].len);
		if (r == 0 && b->files[i].ours_len)
			r = buf_append(&out, b->files[i].ours, b->files[i].ours_len);
	}
	if (r < 0)
		return r;
	return safefile_replace(&j->dir, MANIFEST, out.data, out.len, 0, 0, 0600, NULL, NULL);
}

