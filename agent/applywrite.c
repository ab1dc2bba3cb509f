/* An apply's writes: the backups made durable first, then sshd_config
 * (make before break on a port change), the reloads waited for until a new
 * sshd serves, authorized_keys (redone on a file someone else changed
 * meanwhile), and the probe that sshd behaves as ordered. The first failure
 * returns; the caller rolls back (applyundo.c). */
#include "applyctx.h"
#include "log.h"

static int back_up_file(struct apply *a, const struct plan_file *f, bool sshd_config)
{
	struct backup_file b = {
		.path = strdup(f->path),
		.walk_uid = f->walk_uid,
		.walk_gid = f->walk_gid,
		.home = strdup(f->home ? f->home : ""),
		.existed = f->st.exists,
		.uid = f->st.uid,
		.gid = f->st.gid,
		.mode = f->st.mode,
		.data = malloc(f->old_len + 1),
		.len = f->old_len,
		.dir_created = f->dir_missing,
		.sshd_config = sshd_config,
		.ours = sshd_config ? NULL : malloc(f->new_len + 1),
		.ours_len = sshd_config ? 0 : f->new_len,
	};
	if (!b.path || !b.home || !b.data || (!sshd_config && !b.ours)) {
		free(b.path);
		free(b.home);
		free(b.data);
		free(b.ours);
		return -ENOMEM;
	}
	memcpy(b.data, f->old, f->old_len);
	if (b.ours)
		memcpy(b.ours, f->new, f->new_len);
	if (backup_add(&a->backup, &b) < 0) {
		free(b.path);
		free(b.home);
		free(b.data);
		free(b.ours);
		return -ENOMEM;
	}
	return 0;
}

static int back_up(struct apply *a)
{
	struct plan *p = &a->plan;
	int r = 0;
	snprintf(a->backup.task_id, sizeof(a->backup.task_id), "%s", a->task->id);
	a->backup.server_id = a->res->server_id ? strdup(a->res->server_id) : NULL;
	for (size_t i = 0; r == 0 && i < p->n_conf; i++)
		if (p->conf[i].new || (i == p->block && p->main_stage1))
			r = back_up_file(a, &p->conf[i], true);
	if (r == 0 && p->keys.new)
		r = back_up_file(a, &p->keys, false);
	if (r == 0)
		r = journal_backup_write(a->j, &a->backup);
	if (r < 0)
		return result_fail(a->res, ERR_IO_ERROR, "cannot write backups to %s: %s", a->cfg->state_dir,
				   strerror(-r));
	a->backed_up = true;
	return 0;
}

int applywrite_file(const char *path, uid_t walk_uid, gid_t walk_gid, const char *home, bool create,
		      const char *data, size_t len, uid_t uid, gid_t gid, mode_t mode, struct safefile_stat *expect,
		      char *msg, size_t msglen)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	struct safefile_dir d;
	int r = safefile_open_dir(dir[0] ? dir : "/", walk_uid, walk_gid, home, create, &d, msg, msglen);
	if (r == 0)
		r = safefile_replace(&d, slash + 1, data, len, uid, gid, mode, expect, expect);
	safefile_close_dir(&d);
	return r;
}

/* A rollback restores only what the task wrote: a file it never wrote may
 * hold someone else's newer lines. */
static void mark_written(struct apply *a, const char *path)
{
	for (size_t i = 0; i < a->backup.n; i++)
		if (streq(a->backup.files[i].path, path))
			a->backup.files[i].written = true;
}

/* safefile_replace refreshes the expected stat once its rename went
 * through: from then on the file is the task's, even when the directory
 * fsync after it failed. */
static bool swapped_in(const struct safefile_stat *before, const struct safefile_stat *after)
{
	return before->exists != after->exists || before->ino != after->ino || before->dev != after->dev;
}

static int write_plan_file(struct apply *a, struct plan_file *f, const char *data, size_t len)
{
	char msg[256] = "";
	struct safefile_stat before = f->st;
	int r = applywrite_file(f->path, f->walk_uid, f->walk_gid, f->home, f->dir_missing, data, len, f->uid, f->gid,
			   f->mode, &f->st, msg, sizeof(msg));
	if (swapped_in(&before, &f->st) || f->dir_missing)
		mark_written(a, f->path);
	if (r == -EAGAIN)
		return result_fail(a->res, ERR_IO_ERROR, "%s changed while the agent was writing it", f->path);
	if (r < 0)
		return result_fail(a->res, safefile_error_is_unsafe(r) ? ERR_UNSAFE_PATH : ERR_IO_ERROR,
				   "cannot write %s: %s", f->path, msg[0] ? msg : strerror(-r));
	return 0;
}

/* The ports sshd listens on once the config on disk is read: both during
 * the first stage of a port change, the new one after, today's otherwise. */
static size_t expected_ports(const struct apply *a, bool stage1, const int **ports)
{
	const struct plan *p = &a->plan;
	if (p->port_change && stage1) {
		*ports = p->stage1_ports;
		return p->n_stage1_ports;
	}
	if (p->port_change) {
		*ports = &p->port;
		return 1;
	}
	*ports = a->listen_ports;
	return a->n_listen_ports;
}

/* A reload is done when a new sshd serves: sshd re-executes on SIGHUP and
 * opens new sockets, so every expected port has a root listener that was
 * not there before. Until then the old sshd may answer, and a user told
 * "done" would meet it. */
int applywrite_wait_generation(int64_t until, const struct listeners *before, const int *ports, size_t n, char *msg,
			   size_t msglen)
{
	for (int wait = 5;; wait = wait < 100 ? wait * 2 : 100) {
		struct listeners now;
		size_t up = 0;
		long foreign = -1;
		int missing = 0;
		if (listen_read(&now) < 0)
			return 0;	/* no table to read: the probe alone judges */
		for (size_t i = 0; i < n; i++) {
			if (listen_new_root(&now, before, ports[i]))
				up++;
			else if (!missing)
				missing = ports[i], foreign = listen_foreign(&now, ports[i]);
		}
		listen_free(&now);
		if (up == n)
			return 0;
		if (now_ms() >= until) {
			if (foreign >= 0)
				snprintf(msg, msglen, "sshd did not come back on port %d: uid %ld took it meanwhile",
					 missing, foreign);
			else
				snprintf(msg, msglen, "sshd did not come back on port %d after the reload", missing);
			return -ETIMEDOUT;
		}
		struct timespec ts = { 0, wait * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static int reload(struct apply *a, bool stage1)
{
	char msg[RESULT_MSG_MAX] = "";
	struct reload_plan plan;
	if (!a->running)
		return 0;
	/* Asked again: a connection since the first look (the proof's own,
	 * under socket activation) may have started sshd. */
	sshd_units_query(&a->units);
	a->units_known = true;
	int r = sshd_reload_plan(a->cfg, &a->sshd, &a->units, a->plan.port_change, &plan);
	if (r < 0)
		return result_fail(a->res, ERR_RELOAD_FAILED, "no way to reload sshd: no systemd unit, no pid file");
	struct listeners before;
	bool seen = listen_read(&before) == 0;
	a->reloaded = true;
	a->stale[0] = '\0';
	r = sshd_reload_run(&plan, msg, sizeof(msg));
	/* Under socket activation with the ports unchanged the listeners are
	 * the socket's, the same before and after: the restart job, waited
	 * for, is what says the new sshd serves. */
	bool socket_held = a->units.ssh_socket_active && !a->plan.port_change;
	if (r == 0 && seen && plan.n > 0 && !socket_held) {
		/* The checks after this name what is wrong from a user's side;
		 * this says why when they find nothing. */
		const int *ports;
		size_t n = expected_ports(a, stage1, &ports);
		int64_t until = now_ms() + PORT_WAIT_MS;
		if (applywrite_wait_generation(until < a->deadline ? until : a->deadline, &before, ports, n, msg, sizeof(msg)) < 0)
			snprintf(a->stale, sizeof(a->stale), "%s", msg);
	} else if (r < 0) {
		r = result_fail(a->res, ERR_RELOAD_FAILED, "%s", msg);
	}
	if (seen)
		listen_free(&before);
	apply_step_done(a, STEP_RELOAD);
	return r;
}

/* Writes main (and the drop-ins on the first stage), then lets sshd -T
 * judge the candidate before any reload. */
static int write_config(struct apply *a, const char *main_text, size_t main_len, bool stage1)
{
	struct plan *p = &a->plan;
	if (main_text && write_plan_file(a, &p->conf[p->block], main_text, main_len) < 0)
		return -1;
	for (size_t i = 1; stage1 && i < p->n_conf; i++)
		if (i != p->block && p->conf[i].new &&
		    write_plan_file(a, &p->conf[i], p->conf[i].new, p->conf[i].new_len) < 0)
			return -1;
	apply_step_done(a, STEP_WRITE);
	struct sshd_settings s;
	int r = applyprep_query_sshd(a, &s);
	if (r == 0)
		r = plan_check_effective(p, &s, stage1, a->res);
	sshd_settings_free(&s);
	apply_step_done(a, STEP_CONFIG);
	return r;
}

/* Someone wrote authorized_keys since it was read (a user, config
 * management): never lose their line. Read it again, redo the edit on what
 * is there now, back that up, and try again. */
static int replan_keys(struct apply *a)
{
	struct plan *p = &a->plan;
	plan_keys_reset(p);
	if (plan_keys(p, a->cfg, &a->sshd, a->task, a->replaced->type ? a->replaced : NULL, a->res) < 0)
		return -1;
	for (size_t i = 0; i < a->backup.n; i++) {
		struct backup_file *f = &a->backup.files[i];
		if (f->sshd_config || !streq(f->path, p->keys.path))
			continue;
		char *data = malloc(p->keys.old_len + 1);
		char *ours = malloc(p->keys.new_len + 1);
		if (!data || !ours) {
			free(data);
			free(ours);
			return result_fail(a->res, ERR_IO_ERROR, "out of memory");
		}
		memcpy(data, p->keys.old, p->keys.old_len);
		memcpy(ours, p->keys.new, p->keys.new_len);
		free(f->data);
		free(f->ours);
		*f = (struct backup_file){ .path = f->path, .home = f->home, .walk_uid = f->walk_uid,
					   .walk_gid = f->walk_gid, .existed = p->keys.st.exists, .uid = p->keys.st.uid,
					   .gid = p->keys.st.gid, .mode = p->keys.st.mode, .data = data,
					   .len = p->keys.old_len, .dir_created = f->dir_created, .ours = ours,
					   .ours_len = p->keys.new_len };
	}
	int r = journal_backup_write(a->j, &a->backup);
	return r < 0 ? result_fail(a->res, ERR_IO_ERROR, "cannot write backups: %s", strerror(-r)) : 0;
}

static int write_keys(struct apply *a)
{
	struct plan *p = &a->plan;
	for (int attempt = 0;; attempt++) {
		char msg[256] = "";
		int r = applywrite_file(p->keys.path, p->keys.walk_uid, p->keys.walk_gid, p->keys.home, p->keys.dir_missing,
				   p->keys.new, p->keys.new_len, p->keys.uid, p->keys.gid, p->keys.mode, &p->keys.st, msg,
				   sizeof(msg));
		if (r != -EAGAIN)
			return r < 0 ? result_fail(a->res, safefile_error_is_unsafe(r) ? ERR_UNSAFE_PATH : ERR_IO_ERROR,
						   "cannot write %s: %s", p->keys.path, msg[0] ? msg : strerror(-r))
				     : 0;
		if (attempt == KEYS_RETRIES)
			return result_fail(a->res, ERR_IO_ERROR, "%s kept changing while the agent was writing it",
					   p->keys.path);
		log_info("task %s: %s changed under the agent; redoing the edit", a->task->id, p->keys.path);
		if (replan_keys(a) < 0)
			return -1;
		if (!p->keys.new)
			return 0;
	}
}

static bool config_changes(const struct plan *p)
{
	for (size_t i = 0; i < p->n_conf; i++)
		if (p->conf[i].new)
			return true;
	return p->main_stage1 != NULL;
}

/* "Answers on the port" is an SSH key exchange there that shows one of
 * this VM's host keys: a squatter's listener is not sshd. */
bool applywrite_handshake_ok(const struct apply *a, int port, char *msg, size_t msglen)
{
	struct proof_target tg = apply_target(a, port);
	int64_t until = now_ms() + PORT_WAIT_MS;
	for (int wait = 10;; wait = wait < 200 ? wait * 2 : 200) {
		enum proof_status st = proof_handshake(&tg, msg, msglen);
		if (st == PROOF_OK)
			return true;
		if (st == PROOF_HOSTKEY || now_ms() >= until)
			return false;
		struct timespec ts = { 0, wait * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static int handshake(struct apply *a, int port)
{
	char msg[RESULT_MSG_MAX] = "";
	if (applywrite_handshake_ok(a, port, msg, sizeof(msg)) && !a->stale[0])
		return 0;
	return result_fail(a->res, ERR_PROBE_FAILED, "%s", a->stale[0] ? a->stale : msg[0] ? msg : "sshd does not answer");
}

static int check_time(struct apply *a)
{
	if (now_ms() <= a->deadline)
		return 0;
	return result_fail(a->res, ERR_TIMEOUT, "task ran past its time limit of %d s", a->cfg->task_timeout_s);
}

/* Make before break: sshd listens on the old and the new port, the new one
 * is seen to answer, and only then the old one goes. */
static int change_config(struct apply *a)
{
	struct plan *p = &a->plan;
	bool stage1 = p->main_stage1 && a->running;
	if (stage1) {
		if (write_config(a, p->main_stage1, p->main_stage1_len, true) < 0 || check_time(a) < 0 ||
		    reload(a, true) < 0 || (a->running && handshake(a, p->port) < 0))
			return -1;
	}
	struct plan_file *m = &p->conf[p->block];
	const char *text = m->new ? m->new : (stage1 ? m->old : NULL);
	size_t len = m->new ? m->new_len : m->old_len;
	if (write_config(a, text, len, !stage1) < 0 || check_time(a) < 0)
		return -1;
	return reload(a, false);
}

static int probe(struct apply *a)
{
	struct plan *p = &a->plan;
	char msg[RESULT_MSG_MAX] = "";
	if (!a->running) {
		result_warn(a->res, "sshd is not running: the change was checked with sshd -T but not probed");
		return 0;
	}
	struct proof_target tg = apply_target(a, p->port ? p->port : a->sshd.ports[0]);
	struct proof_expect e = { .accept = p->accept, .n_accept = p->n_accept, .refuse = p->refuse,
				  .n_refuse = p->n_refuse, .password = p->password };
	int64_t deadline = now_ms() + a->cfg->probe_timeout_ms;
	if (deadline > a->deadline)
		deadline = a->deadline;
	enum proof_status st = proof_probe(&tg, &e, deadline, msg, sizeof(msg));
	if (st == PROOF_OK && a->stale[0])
		return result_fail(a->res, ERR_PROBE_FAILED, "%s", a->stale);
	if (st == PROOF_OK)
		return 0;
	if (check_time(a) < 0)
		return -1;
	return result_fail(a->res, ERR_PROBE_FAILED, "%s", msg[0] ? msg : "sshd does not behave as ordered");
}

int applywrite_transact(struct apply *a)
{
	struct plan *p = &a->plan;
	bool conf = config_changes(p);
	if (!conf) {
		if (plan_check_effective(p, &a->sshd, false, a->res) < 0)
			return -1;
	}
	if ((conf || p->keys.new) && back_up(a) < 0)
		return -1;
	apply_step_done(a, STEP_BACKUP);
	if (conf && change_config(a) < 0)
		return -1;
	if (p->keys.new && write_keys(a) < 0)
		return -1;
	apply_step_done(a, STEP_WRITE);
	if (check_time(a) < 0)
		return -1;
	int r = probe(a);
	apply_step_done(a, STEP_PROBE);
	return r;
}
