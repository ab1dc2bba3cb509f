/* One task as one transaction. Nothing is written before the plan is
 * complete and the backups are durable; after the first write every failure
 * restores the backups (and reloads sshd when it was reloaded). */
#include <shadow.h>
#include <time.h>

#include "apply.h"
#include "audit.h"
#include "check.h"
#include "intake.h"
#include "linemerge.h"
#include "listen.h"
#include "log.h"
#include "managed.h"
#include "plan.h"
#include "policy.h"
#include "proof.h"
#include "selinux.h"
#include "sshd.h"

#define PORT_WAIT_MS 5000
#define KEYS_RETRIES 5		/* redoing the edit when someone else wrote the file */

/* Where a task's time goes, for `-v` and the benchmarks. */
enum step {
	STEP_SSHD_T,
	STEP_PROVE,
	STEP_PLAN,
	STEP_BACKUP,
	STEP_CONFIG,
	STEP_RELOAD,
	STEP_WRITE,
	STEP_PROBE,
	STEP_COUNT,
};

static const char *const step_names[STEP_COUNT] = {
	[STEP_SSHD_T] = "sshd_T", [STEP_PROVE] = "prove", [STEP_PLAN] = "plan",     [STEP_BACKUP] = "backup",
	[STEP_CONFIG] = "config", [STEP_RELOAD] = "reload", [STEP_WRITE] = "write", [STEP_PROBE] = "probe",
};

struct apply {
	const struct config *cfg;
	struct journal *j;
	const struct task *task;
	struct result *res;
	int64_t deadline;
	struct plan plan;
	struct sshd_settings sshd;	/* as sshd is before the task */
	struct sshd_units units;
	bool running;			/* sshd answers on its port */
	bool units_known;
	struct backup backup;
	bool backed_up;
	bool reloaded;
	int64_t step_us[STEP_COUNT];
	int64_t mark;
	const struct pubkey *replaced;	/* the key a keypair credential proved */
	int listen_ports[SSHD_MAX_PORTS];	/* where sshd listens today (ListenAddress ports too) */
	char stale[RESULT_MSG_MAX];	/* no new sshd was seen after the last reload: why */
	size_t n_listen_ports;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Charges the time since the last mark to a step. */
static void step_done(struct apply *a, enum step s)
{
	int64_t t = now_us();
	a->step_us[s] += t - a->mark;
	a->mark = t;
}

static void log_steps(const struct apply *a)
{
	char line[256];
	size_t used = 0;
	for (int i = 0; i < STEP_COUNT; i++)
		used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%s=%.1f", i ? " " : "", step_names[i],
					 (double)a->step_us[i] / 1000.0);
	log_debug("task %s steps (ms): %s", a->task->id, line);
}

static const char *action_name(enum task_action a)
{
	return a == TASK_ASSOCIATE ? "associate" : "disassociate";
}

static int check_preconditions(const struct apply *a, const char *server_id)
{
	const struct task *t = a->task;
	if (t->has_expiry && time(NULL) > t->expires_at)
		return result_fail(a->res, ERR_EXPIRED, "task expired before it was applied");
	if (server_id && strcasecmp(server_id, t->server_id) != 0)
		return result_fail(a->res, ERR_WRONG_SERVER, "task is for server %s, this is %s", t->server_id,
				   server_id);
	return 0;
}

/* sshd -T costs tens of ms; its answer is kept in the state dir under a
 * digest of everything it depends on, and reused while that is unchanged.
 * The digest is taken before and after the call so that a file changing
 * under it is never cached with the wrong answer. */
static int sshd_query_cached(struct apply *a, struct sshd_settings *s, char *msg, size_t msglen)
{
	const char *user = a->plan.user.name;
	char before[65], after[65], name[64];
	_cleanup_free_ char *cached = NULL;
	_cleanup_buf_ struct buf raw = { 0 };
	size_t len;
	*s = (struct sshd_settings){ 0 };
	snprintf(name, sizeof(name), "sshd-T.%s", user);
	bool keyed = sshd_inputs_digest(a->cfg, user, before) == 0;
	if (keyed && journal_cache_get(a->j, name, before, &cached, &len) == 0 &&
	    sshd_settings_parse(cached, len, s) == 0)
		return 0;
	sshd_settings_free(s);
	int r = sshd_query(a->cfg, user, s, &raw, msg, msglen);
	if (r == 0 && keyed && sshd_inputs_digest(a->cfg, user, after) == 0 && streq(before, after))
		journal_cache_put(a->j, name, after, raw.data, raw.len);
	return r;
}

static int query_sshd(struct apply *a, struct sshd_settings *s)
{
	char msg[RESULT_MSG_MAX] = "";
	int r = sshd_query_cached(a, s, msg, sizeof(msg));
	if (r == -ENOENT)
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg);
	if (r == -EINVAL || r == -EBADMSG)
		return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "%s", msg);
	if (r == -ETIMEDOUT)
		return result_fail(a->res, ERR_TIMEOUT, "sshd -T did not answer in time");
	if (r < 0)
		return result_fail(a->res, ERR_IO_ERROR, "%s", msg);
	return 0;
}

static struct proof_target target(const struct apply *a, int port)
{
	return (struct proof_target){ .address = a->cfg->address, .port = port, .user = a->plan.user.name,
				      .hostkeys = &a->sshd.hostkeys, .timeout_ms = a->cfg->connect_timeout_ms };
}

static int prove_credential(struct apply *a, struct pubkey *replaced)
{
	const struct task *t = a->task;
	char msg[RESULT_MSG_MAX] = "";
	if (!a->running)
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "sshd does not answer on %s port %d",
				   a->cfg->address, a->sshd.ports[0]);
	struct proof_target tg = target(a, a->sshd.ports[0]);
	switch (proof_credential(&tg, t->auth_type, &t->auth_key, replaced, msg, sizeof(msg))) {
	case PROOF_OK:
		return 0;
	case PROOF_REFUSED:
		return result_fail(a->res, ERR_AUTH_FAILED, "%s", msg);
	case PROOF_BAD_CREDENTIAL:
		return result_fail(a->res, ERR_INVALID_TASK, "%s", msg);
	case PROOF_UNREACHABLE:
	case PROOF_HOSTKEY:
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg);
	case PROOF_ERROR:
		break;
	}
	return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg[0] ? msg : "cannot prove the credential");
}

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

static int write_file(const char *path, uid_t walk_uid, gid_t walk_gid, const char *home, bool create,
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
	int r = write_file(f->path, f->walk_uid, f->walk_gid, f->home, f->dir_missing, data, len, f->uid, f->gid,
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
static int wait_generation(int64_t until, const struct listeners *before, const int *ports, size_t n, char *msg,
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
		if (wait_generation(until < a->deadline ? until : a->deadline, &before, ports, n, msg, sizeof(msg)) < 0)
			snprintf(a->stale, sizeof(a->stale), "%s", msg);
	} else if (r < 0) {
		r = result_fail(a->res, ERR_RELOAD_FAILED, "%s", msg);
	}
	if (seen)
		listen_free(&before);
	step_done(a, STEP_RELOAD);
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
	step_done(a, STEP_WRITE);
	struct sshd_settings s;
	int r = query_sshd(a, &s);
	if (r == 0)
		r = plan_check_effective(p, &s, stage1, a->res);
	sshd_settings_free(&s);
	step_done(a, STEP_CONFIG);
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
		int r = write_file(p->keys.path, p->keys.walk_uid, p->keys.walk_gid, p->keys.home, p->keys.dir_missing,
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
static bool handshake_ok(const struct apply *a, int port, char *msg, size_t msglen)
{
	struct proof_target tg = target(a, port);
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
	if (handshake_ok(a, port, msg, sizeof(msg)) && !a->stale[0])
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
	struct proof_target tg = target(a, p->port ? p->port : a->sshd.ports[0]);
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
			r = write_file(f->path, f->walk_uid, f->walk_gid, home, false, f->data, f->len, f->uid,
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
	if (wait_generation(now_ms() + PORT_WAIT_MS, before, a->listen_ports, a->n_listen_ports, msg, msglen) < 0 &&
	    (!before || wait_generation(now_ms(), NULL, a->listen_ports, a->n_listen_ports, msg, msglen) < 0))
		return false;
	return handshake_ok(a, a->listen_ports[0], msg, msglen);
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

static void rollback(struct apply *a)
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

/* The commit point is the recorded result: from there a crash keeps the
 * change (recovery sees the result), before it a crash rolls it back. */
static int commit(struct apply *a)
{
	int r = journal_record(a->j, a->res);
	if (r < 0) {
		result_fail(a->res, ERR_IO_ERROR, "cannot record the result (%s); the change was rolled back",
			    strerror(-r));
		rollback(a);
		return -1;
	}
	if (journal_backup_clear(a->j) < 0)
		log_warnx("task %s: cannot drop its backups; the next start sees it committed", a->task->id);
	if (a->plan.keys.new && managed_note(a->j, a->plan.user.name, a->plan.keys.path) < 0)
		log_warnx("task %s: cannot note %s in the state dir; `list` will not show it", a->task->id,
			  a->plan.keys.path);
	audit_task(a->task, &a->plan, &a->sshd);
	return 0;
}

/* Password login that the result would call on but that nobody can use:
 * root under a PermitRootLogin other than yes (the agent never changes
 * it), or a user without a usable password. */
static void warn_no_password(struct apply *a)
{
	const struct plan *p = &a->plan;
	const char *prl = a->sshd.permit_root_login;
	if (p->password != 1)
		return;
	/* sshd -T spells prohibit-password by its old name. */
	if (prl && streq(prl, "without-password"))
		prl = "prohibit-password";
	if (p->user.uid == 0 && prl && !streq(prl, "yes"))
		result_warn(a->res,
			    "PermitRootLogin %s keeps password login off for root: PasswordAuthentication is on, "
			    "but root cannot log in with a password (the agent never changes PermitRootLogin)",
			    prl);
	if (a->task->action != TASK_DISASSOCIATE)
		return;
	struct spwd sp, *found = NULL;
	char buf[4096];
	if (getspnam_r(p->user.name, &sp, buf, sizeof(buf), &found) != 0 || !found)
		return;
	const char *h = found->sp_pwdp;
	if (!h || !h[0] || h[0] == '!' || h[0] == '*')
		result_warn(a->res, "user %s has no usable password: password login is on but nobody can use it",
			    p->user.name);
	explicit_bzero(buf, sizeof(buf));
}

static int transact(struct apply *a)
{
	struct plan *p = &a->plan;
	bool conf = config_changes(p);
	if (!conf) {
		if (plan_check_effective(p, &a->sshd, false, a->res) < 0)
			return -1;
	}
	if ((conf || p->keys.new) && back_up(a) < 0)
		return -1;
	step_done(a, STEP_BACKUP);
	if (conf && change_config(a) < 0)
		return -1;
	if (p->keys.new && write_keys(a) < 0)
		return -1;
	step_done(a, STEP_WRITE);
	if (check_time(a) < 0)
		return -1;
	int r = probe(a);
	step_done(a, STEP_PROBE);
	return r;
}

/* The port of an "addr:port" ListenAddress as sshd -T prints it; 0 when
 * there is none. */
static int listen_entry_port(const char *entry, char *addr, size_t addrlen)
{
	const char *colon = strrchr(entry, ':');
	char *end;
	if (!colon)
		return 0;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return 0;
	snprintf(addr, addrlen, "%.*s", (int)(colon - entry), entry);
	return (int)port;
}

static void note_listen_ports(struct apply *a)
{
	const struct sshd_settings *s = &a->sshd;
	for (size_t i = 0; i < s->listen.n && a->n_listen_ports < SSHD_MAX_PORTS; i++) {
		char addr[128];
		int port = listen_entry_port(s->listen.v[i], addr, sizeof(addr));
		bool dup = false;
		for (size_t k = 0; k < a->n_listen_ports; k++)
			dup |= a->listen_ports[k] == port;
		if (port && !dup)
			a->listen_ports[a->n_listen_ports++] = port;
	}
	for (size_t i = 0; a->n_listen_ports == 0 && i < s->n_ports; i++)
		a->listen_ports[i] = s->ports[i];
	if (a->n_listen_ports == 0)
		a->n_listen_ports = s->n_ports;
}

/* Before anything is written: the ordered port must be free on every
 * address sshd will listen on. A program there would make sshd fail to
 * bind it, and a sshd that binds nothing exits. */
/* Under SELinux sshd may bind only ports labelled ssh_port_t: another
 * label would have sshd fail to bind after the change. */
static int check_port_label(struct apply *a, int port)
{
	char type[128] = "";
	int r = selinux_port_type(port, type, sizeof(type));
	if (r == -ENOENT && !selinux_on())
		return 0;
	if (r < 0 && r != -ENOENT)
		return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "cannot read the SELinux policy's port labels: %s",
				   strerror(-r));
	if (r == 0 && streq(type, SELINUX_SSH_PORT_TYPE))
		return 0;
	return result_fail(a->res, ERR_SSHD_CONFIG_INVALID,
			   "SELinux labels port %d %s, not %s: sshd could not bind it; label it first with "
			   "`semanage port -a -t %s -p tcp %d`",
			   port, r == 0 ? type : "with the default port type", SELINUX_SSH_PORT_TYPE, SELINUX_SSH_PORT_TYPE,
			   port);
}

static int check_port_free(struct apply *a)
{
	const struct plan *p = &a->plan;
	if (!p->port_change)
		return 0;
	if (check_port_label(a, p->port) < 0)
		return -1;
	for (size_t i = 0; a->running && i < a->n_listen_ports; i++)
		if (a->listen_ports[i] == p->port)
			return 0;	/* sshd holds it already */
	for (size_t i = 0; i < a->sshd.listen.n; i++) {
		char addr[128];
		if (!listen_entry_port(a->sshd.listen.v[i], addr, sizeof(addr)))
			continue;
		int r = listen_port_free(addr, p->port);
		if (r == -EADDRINUSE) {
			struct listeners now;
			long uid = listen_read(&now) == 0 ? listen_foreign(&now, p->port) : -1;
			if (now.v)
				listen_free(&now);
			if (uid >= 0)
				return result_fail(a->res, ERR_PORT_IN_USE, "port %d on %s is taken by another program (uid %ld)",
						   p->port, addr, uid);
			return result_fail(a->res, ERR_PORT_IN_USE, "port %d on %s is taken by another program", p->port,
					   addr);
		}
		if (r < 0 && r != -EINVAL)
			return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "sshd could not listen on %s port %d: %s", addr,
					   p->port, strerror(-r));
	}
	return 0;
}

/* Socket activation: the port lives in ssh.socket. A generator derives
 * its ListenStream from sshd_config: Ubuntu's own, or where the
 * distribution has none (Debian 13) the package's, from the managed
 * block's Port lines. Without either sshd's Port is not where sshd
 * listens, and the change is refused before anything changes. */
static const char *const socket_generators[] = {
	"/usr/lib/systemd/system-generators/sshd-socket-generator",
	"/lib/systemd/system-generators/sshd-socket-generator",
	"/etc/systemd/system-generators/sshd-socket-generator",
	"/usr/lib/systemd/system-generators/kps-agent-generator",
	"/lib/systemd/system-generators/kps-agent-generator",
	"/etc/systemd/system-generators/kps-agent-generator",
};

static int check_socket_port(struct apply *a)
{
	if (!a->plan.port_change)
		return 0;
	if (!a->units_known) {
		sshd_units_query(&a->units);
		a->units_known = true;
	}
	if (!a->units.ssh_socket_active)
		return 0;
	for (size_t i = 0; i < ELEMENTSOF(socket_generators); i++)
		if (access(socket_generators[i], X_OK) == 0)
			return 0;
	return result_fail(a->res, ERR_SSHD_CONFIG_INVALID,
			   "sshd is socket-activated (ssh.socket) and no generator derives the socket's ports from "
			   "sshd_config: the port lives in the socket unit (systemctl edit ssh.socket), not in sshd_config");
}

static int prepare(struct apply *a, const char *server_id, struct pubkey *replaced)
{
	const struct task *t = a->task;
	const char *user = t->user ? t->user : a->cfg->user;
	if (check_preconditions(a, server_id) < 0)
		return -1;
	int r = plan_user(user, &a->plan.user);
	if (r == -ENOENT)
		return result_fail(a->res, ERR_USER_NOT_FOUND, "no user %s", user);
	if (r < 0)
		return result_fail(a->res, ERR_IO_ERROR, "cannot look up user %s: %s", user, strerror(-r));
	if (query_sshd(a, &a->sshd) < 0 || policy_check(a->cfg, t, &a->sshd, &a->plan, a->res) < 0)
		return -1;
	step_done(a, STEP_SSHD_T);
	a->running = proof_port_open(a->cfg->address, a->sshd.ports[0], a->cfg->connect_timeout_ms);
	note_listen_ports(a);
	if (t->auth_type != AUTH_NONE && prove_credential(a, replaced) < 0)
		return -1;
	step_done(a, STEP_PROVE);
	if (plan_keys(&a->plan, a->cfg, &a->sshd, t, replaced->type ? replaced : NULL, a->res) < 0)
		return -1;
	r = plan_sshd_config(&a->plan, a->cfg, &a->sshd, t, a->res);
	if (r == 0)
		r = check_port_free(a);
	if (r == 0)
		r = check_socket_port(a);
	step_done(a, STEP_PLAN);
	return r;
}

static int apply_run(const struct config *cfg, struct journal *j, const struct task *task, unsigned flags,
		     struct result *res)
{
	struct apply a = { .cfg = cfg, .j = j, .task = task, .res = res,
			   .deadline = now_ms() + (int64_t)cfg->task_timeout_s * 1000, .mark = now_us() };
	struct pubkey replaced = { 0 };
	_cleanup_free_ char *server_id = config_server_id(cfg);
	a.replaced = &replaced;
	int r = prepare(&a, server_id, &replaced);
	if (r == 0 && (flags & APPLY_CHECK)) {
		r = check_plan(cfg, &a.plan, &a.sshd, res);
	} else if (r == 0) {
		r = transact(&a);
		if (r < 0)
			rollback(&a);
		else if (a.backed_up)
			r = commit(&a);
	}
	if (r == 0)
		warn_no_password(&a);
	log_steps(&a);
	pubkey_free(&replaced);
	backup_free(&a.backup);
	sshd_settings_free(&a.sshd);
	plan_free(&a.plan);
	return r;
}

int apply_task(const struct config *cfg, struct journal *j, const struct task *task, struct result *res)
{
	return apply_run(cfg, j, task, 0, res);
}

static void log_result(const struct task *t, const struct result *res, const char *user)
{
	struct log_task lt = {
		.task_id = res->task_id[0] ? res->task_id : "-",
		.server_id = res->server_id,
		.action = t ? action_name(t->action) : NULL,
		.keypair = t && t->n_keys ? t->keys[0].name : NULL,
		.user = user,
		.result = res->code == ERR_NONE ? "SUCCESS" : "FAILED",
		.error_code = res->code == ERR_NONE ? NULL : error_code_name(res->code),
		.duration_ms = res->duration_ms,
	};
	log_task(&lt);
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

/* The log line, the audit record of a refusal, and for check the changes
 * (none when it stopped before planning). */
static int apply_done(struct task *task, struct result *res, const struct config *cfg, unsigned flags,
		      int64_t start)
{
	if (res->duration_ms < 0)
		res->duration_ms = now_ms() - start;
	if ((flags & APPLY_CHECK) && !res->changes)
		res->changes = strdup("[]");
	if (!(flags & APPLY_CHECK))
		audit_refused(task, task ? (task->user ? task->user : cfg->user) : NULL, res);
	log_result(task, res, task ? (task->user ? task->user : cfg->user) : NULL);
	if (task)
		task_free(task);
	return res->code == ERR_NONE ? 0 : -1;
}

static int with_journal(const struct config *cfg, struct journal *j, unsigned flags, struct result *res)
{
	char msg[256] = "";
	int r = journal_open(cfg->state_dir, cfg->results_keep, j, msg, sizeof(msg));
	if (r < 0)
		return result_fail(res, ERR_IO_ERROR, "%s", msg);
	r = journal_lock(j, cfg->task_timeout_s * 1000);
	if (r < 0)
		return result_fail(res, r == -ETIMEDOUT ? ERR_TIMEOUT : ERR_IO_ERROR,
				   "cannot take the state dir lock: %s", strerror(-r));
	/* A dry run leaves even an interrupted task to the next apply. */
	if (!(flags & APPLY_CHECK) &&
	    apply_recover(cfg, j, flags, ERR_IO_ERROR,
			  "the agent stopped in the middle of this task; it was rolled back") < 0)
		return result_fail(res, ERR_IO_ERROR, "an interrupted task could not be rolled back");
	return 0;
}

/* A task that did not verify is answered (on the control plane's route
 * through the outbox), never recorded under its task_id. */
static void answer_untrusted(const struct config *cfg, unsigned flags, const struct result *res)
{
	struct journal j;
	char msg[256] = "";
	if (!res->task_id[0] || !(flags & APPLY_OUTBOX) || (flags & APPLY_CHECK))
		return;
	if (journal_open(cfg->state_dir, cfg->results_keep, &j, msg, sizeof(msg)) == 0)
		journal_outbox_put(&j, res);
	journal_close(&j);
}

/* Under the lock: a task seen before gets its recorded result, any other
 * is applied (or checked) and recorded (a check records nothing). */
static void apply_locked(const struct config *cfg, struct journal *j, const struct task *task, unsigned flags,
			 int64_t start, struct result *res)
{
	bool check = flags & APPLY_CHECK;
	struct result recorded;
	result_init(&recorded);
	if (journal_lookup(j, res->task_id, &recorded) == 0) {
		result_free(res);
		*res = recorded;
		if (check)
			result_warn(res, "task %s was applied before: apply returns this recorded result and "
					 "changes nothing", res->task_id);
	} else {
		if (task)
			apply_run(cfg, j, task, flags, res);
		res->duration_ms = now_ms() - start;
		int r = check ? 0 : journal_record(j, res);
		if (r < 0)
			result_warn(res, "cannot record the result: %s", strerror(-r));
	}
	/* A replay is posted again too: the first post may have been lost. */
	if ((flags & APPLY_OUTBOX) && !check && journal_outbox_put(j, res) < 0)
		log_warnx("task %s: cannot put the result in the outbox", res->task_id);
}

int apply_text(const struct config *cfg, const char *text, size_t len, unsigned flags, struct result *res)
{
	int64_t start = now_ms();
	struct task task = { 0 };
	struct journal j;
	bool parsed, trusted;

	result_init(res);
	_cleanup_free_ char *server_id = config_server_id(cfg);
	parsed = intake_task(cfg, server_id, text, len, &task, res, &trusted) == 0;
	if (server_id)
		result_set_server_id(res, server_id);
	if (!trusted)
		answer_untrusted(cfg, flags, res);
	else if (res->task_id[0] && with_journal(cfg, &j, flags, res) == 0)
		apply_locked(cfg, &j, parsed ? &task : NULL, flags, start, res);
	if (trusted && res->task_id[0])
		journal_close(&j);
	return apply_done(parsed ? &task : NULL, res, cfg, flags, start);
}
