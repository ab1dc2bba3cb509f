/* The rollback of an apply: every file the task wrote goes back (the key
 * file by a three-way undo when someone wrote it since), and sshd serves
 * again where it served before. apply_recover does the same after a crash,
 * from the backups in the state dir. */
#include "apply.h"
#include "applyctx.h"
#include "linemerge.h"
#include "log.h"

static int remove_file(const struct backup_file *f, const char *home, char *msg, size_t msglen)
{
	_cleanup_free_ char *dir = strdup(f->path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	struct safefile_dir d;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	int r = safefile_open_dir(dir[0] ? dir : "/", f->walk_uid, f->walk_gid, home, false, &d, msg, msglen);
	if (r == 0)
		r = safefile_remove(&d, slash + 1);
	if (r == 0 && f->dir_created)
		safefile_remove_dir(&d);
	safefile_close_dir(&d);
	return r == -ENOENT ? 0 : r;
}

static bool same_text(const char *a, size_t a_len, const char *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* One try of restore_keys, in the key file's directory d. */
static int restore_keys_in(const struct backup_file *f, struct safefile_dir *d, const char *name, char *msg,
			   size_t msglen)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_buf_ struct buf out = { 0 };
	size_t len = 0;
	struct safefile_stat st;
	int r = safefile_read(d, name, PLAN_KEYS_MAX, &text, &len, &st, msg, msglen);
	bool ours = r == 0 && st.exists && same_text(text, len, f->ours, f->ours_len);
	bool theirs = r == 0 && st.exists && !ours && !(f->existed && same_text(text, len, f->data, f->len));
	if (theirs)
		r = linemerge_undo(f->data, f->len, f->ours, f->ours_len, text, len, &out);
	if (theirs && r == 0 && !same_text(text, len, out.data ? out.data : "", out.len))
		r = safefile_replace(d, name, out.data ? out.data : "", out.len, st.uid, st.gid, st.mode, &st, NULL);
	else if (ours && f->existed)
		r = safefile_replace(d, name, f->data, f->len, f->uid, f->gid, f->mode, &st, NULL);
	else if (ours)
		r = safefile_remove(d, name);
	if (r == 0 && (ours || !st.exists) && !f->existed && f->dir_created)
		safefile_remove_dir(d);	/* only when empty */
	if (r == 0 && theirs)
		log_warnx("rollback: %s changed after the agent wrote it; the task's edit was undone on the newer file",
			  f->path);
	return r;
}

/* The key file goes back to its backup while it holds what the task wrote.
 * Once someone else wrote it, the task's edit alone is undone on their
 * file; if it still holds the backup, the task never wrote it. The same
 * after a crash: the manifest holds both texts. A write that races the
 * rollback (-EAGAIN from safefile_replace) makes it read the file again. */
static int restore_keys(const struct backup_file *f, const char *home, char *msg, size_t msglen)
{
	_cleanup_free_ char *dir = strdup(f->path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	int r = -EAGAIN;
	for (int attempt = 0; r == -EAGAIN && attempt < KEYS_RETRIES; attempt++) {
		struct safefile_dir d;
		int o = safefile_open_dir(dir[0] ? dir : "/", f->walk_uid, f->walk_gid, home, false, &d, msg, msglen);
		if (o == 0)
			r = restore_keys_in(f, &d, slash + 1, msg, msglen);
		safefile_close_dir(&d);
		if (o == -ENOENT)	/* never created, or removed since: nothing of the task's is left */
			return 0;
		if (o < 0)
			return o;
	}
	return r;
}

/* Puts every backed-up file back as it was. Returns the number of files
 * that could not be restored. */
static int restore_files(const struct backup *b, bool *sshd_touched)
{
	int failed = 0;
	for (size_t i = b->n; i-- > 0;) {
		const struct backup_file *f = &b->files[i];
		char msg[256] = "";
		const char *home = f->home[0] ? f->home : NULL;
		int r;
		if (!f->written && f->sshd_config)	/* a key file tells by its text */
			continue;
		if (!f->sshd_config)
			r = restore_keys(f, home, msg, sizeof(msg));
		else if (f->existed)
			r = applywrite_file(f->path, f->walk_uid, f->walk_gid, home, false, f->data, f->len, f->uid,
				       f->gid, f->mode, NULL, msg, sizeof(msg));
		else
			r = remove_file(f, home, msg, sizeof(msg));
		if (r < 0) {
			log_warnx("rollback: cannot restore %s: %s", f->path, msg[0] ? msg : strerror(-r));
			failed++;
		}
		if (f->sshd_config)
			*sshd_touched = true;
	}
	return failed;
}

/* sshd serves on its old ports again: a new generation listens on each,
 * and the first answers the handshake. */
static bool serving_again(const struct apply *a, const struct listeners *before, char *msg, size_t msglen)
{
	/* A reload that reloads nothing leaves the old sshd serving: after the
	 * wait for a new one, any sshd there will do. */
	if (applywrite_wait_generation(now_ms() + PORT_WAIT_MS, before, a->listen_ports, a->n_listen_ports, msg, msglen) < 0 &&
	    (!before || applywrite_wait_generation(now_ms(), NULL, a->listen_ports, a->n_listen_ports, msg, msglen) < 0))
		return false;
	return applywrite_handshake_ok(a, a->listen_ports[0], msg, msglen);
}

/* Every rollback ends with sshd serving where it served before the task.
 * A sshd that could not bind (a squatter took a port in the moment sshd
 * re-executed) has exited: the reload finds nothing to reload, and it is
 * started again, by systemd or as the binary itself. Returns the number of
 * failures. */
static int reload_back(struct apply *a)
{
	struct reload_plan plan;
	char msg[RESULT_MSG_MAX] = "";
	struct listeners before = { 0 };
	bool seen = listen_read(&before) == 0;
	sshd_units_query(&a->units);
	int r = sshd_reload_plan(a->cfg, &a->sshd, &a->units, a->plan.port_change, &plan);
	if (r == 0)
		r = sshd_reload_run(&plan, msg, sizeof(msg));
	if (r < 0)
		log_warnx("rollback: cannot reload sshd: %s", msg);
	if (r == 0 && plan.n > 0 && serving_again(a, seen ? &before : NULL, msg, sizeof(msg))) {
		listen_free(&before);
		return 0;
	}
	if (r == 0 && plan.n == 0) {
		listen_free(&before);
		return 0;
	}
	listen_free(&before);
	seen = listen_read(&before) == 0;
	log_warnx("rollback: sshd does not serve on port %d (%s); starting it", a->listen_ports[0], msg);
	sshd_units_query(&a->units);
	sshd_start_plan(a->cfg, &a->units, &plan);
	r = sshd_reload_run(&plan, msg, sizeof(msg));
	bool ok = r == 0 && serving_again(a, seen ? &before : NULL, msg, sizeof(msg));
	listen_free(&before);
	if (ok) {
		result_warn(a->res, "sshd had stopped during the change; it was started again on port %d",
			    a->listen_ports[0]);
		return 0;
	}
	log_warnx("rollback: sshd does not serve on port %d: %s", a->listen_ports[0], msg);
	return 1;
}

void applyundo_rollback(struct apply *a)
{
	bool sshd_touched = false;
	if (!a->backed_up)
		return;
	int failed = restore_files(&a->backup, &sshd_touched);
	if (a->reloaded && sshd_touched)
		failed += reload_back(a);
	if (failed) {
		result_warn(a->res, "rollback left %d file(s) or sshd unrestored; backups kept in %s", failed,
			    a->cfg->state_dir);
		return;
	}
	journal_backup_clear(a->j);
}

int apply_recover(const struct config *cfg, struct journal *j, unsigned flags, enum error_code code, const char *msg)
{
	struct backup b;
	int r = journal_backup_read(j, &b);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		log_warnx("cannot read the backups of an interrupted task: %s", strerror(-r));
		return r;
	}
	struct result old;
	result_init(&old);
	int found = journal_lookup(j, b.task_id, &old);
	bool committed = found == 0 && old.code == ERR_NONE;
	/* Committed, cut off before its result reached the outbox. */
	if (committed && (flags & APPLY_OUTBOX) && journal_outbox_put(j, &old) < 0)
		log_warnx("task %s: cannot put the result in the outbox", b.task_id);
	result_free(&old);
	if (committed) {
		/* Its SUCCESS was recorded: committed, only the backups were left. */
		log_info("task %s had committed; dropping its backups", b.task_id);
		backup_free(&b);
		return journal_backup_clear(j);
	}
	bool sshd_touched = false;
	int failed = restore_files(&b, &sshd_touched);
	if (sshd_touched) {
		struct sshd_settings s;
		struct sshd_units u;
		struct reload_plan plan;
		char why[RESULT_MSG_MAX] = "";
		sshd_units_query(&u);
		if (sshd_query(cfg, "root", &s, NULL, why, sizeof(why)) == 0) {
			if (sshd_running_pid(&s) > 0 && sshd_reload_plan(cfg, &s, &u, true, &plan) == 0)
				sshd_reload_run(&plan, why, sizeof(why));
			sshd_settings_free(&s);
		}
	}
	struct result res;
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", b.task_id);
	result_set_server_id(&res, b.server_id ? b.server_id : "");
	result_fail(&res, code, "%s", msg);
	if (failed == 0 && found == -ENOENT) {
		journal_record(j, &res);
		if (flags & APPLY_OUTBOX)
			journal_outbox_put(j, &res);
	}
	if (failed == 0)
		journal_backup_clear(j);
	log_warnx("task %s was interrupted and %s", b.task_id,
		  failed ? "could not be rolled back fully" : "has been rolled back");
	result_free(&res);
	backup_free(&b);
	return failed ? -EIO : 0;
}
