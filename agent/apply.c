/* One task as one transaction. Nothing is written before the plan is
 * complete and the backups are durable; after the first write every failure
 * restores the backups (and reloads sshd when it was reloaded).
 *
 * This file owns the entry points and the record: apply_text takes a task
 * in (intake), serialises on the state dir lock, answers a replay from the
 * journal, runs the transaction (prepare in applyprep.c, the writes in
 * applywrite.c, the rollback in applyundo.c), commits it by recording the
 * result, and puts it in the outbox. */
#include <shadow.h>

#include "apply.h"
#include "applyctx.h"
#include "audit.h"
#include "check.h"
#include "intake.h"
#include "log.h"
#include "managed.h"

static const char *const step_names[STEP_COUNT] = {
	[STEP_SSHD_T] = "sshd_T", [STEP_PROVE] = "prove", [STEP_PLAN] = "plan",     [STEP_BACKUP] = "backup",
	[STEP_CONFIG] = "config", [STEP_RELOAD] = "reload", [STEP_WRITE] = "write", [STEP_PROBE] = "probe",
};

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

/* The commit point is the recorded result: from there a crash keeps the
 * change (recovery sees the result), before it a crash rolls it back. */
static int commit(struct apply *a, unsigned flags)
{
	/* The result is whole before it is recorded: recorded once. */
	size_t warned = a->res->warnings.n;
	warn_no_password(a);
	a->res->duration_ms = now_ms() - a->start;
	int r = journal_record(a->j, a->res);
	if (r < 0) {
		/* Rolled back: what the change would have warned of is not so. */
		while (a->res->warnings.n > warned)
			free(a->res->warnings.v[--a->res->warnings.n]);
		result_fail(a->res, ERR_IO_ERROR, "cannot record the result (%s); the change was rolled back",
			    strerror(-r));
		applyundo_rollback(a);
		return -1;
	}
	a->recorded = true;
	/* In the outbox before the backups go: a crash after this posts the
	 * result from the outbox, one before it finds the backups and the
	 * recorded result, and puts it there (apply_recover). */
	if ((flags & APPLY_OUTBOX) && journal_outbox_put(a->j, a->res) < 0)
		log_warnx("task %s: cannot put the result in the outbox", a->task->id);
	if (journal_backup_clear(a->j) < 0)
		log_warnx("task %s: cannot drop its backups; the next start sees it committed", a->task->id);
	if (a->plan.keys.new && managed_note(a->j, a->plan.user.name, a->plan.keys.path) < 0)
		log_warnx("task %s: cannot note %s in the state dir; `list` will not show it", a->task->id,
			  a->plan.keys.path);
	audit_task(a->task, &a->plan, &a->sshd);
	return 0;
}

/* *recorded: the commit recorded the result (and put it in the outbox). */
static int apply_run(const struct config *cfg, struct journal *j, const struct task *task, unsigned flags,
		     int64_t start, struct result *res, bool *recorded)
{
	struct apply a = { .cfg = cfg, .j = j, .task = task, .res = res, .start = start,
			   .deadline = now_ms() + (int64_t)cfg->task_timeout_s * 1000, .mark = apply_now_us() };
	struct pubkey replaced = { 0 };
	_cleanup_free_ char *server_id = config_server_id(cfg);
	a.replaced = &replaced;
	int r = applyprep_prepare(&a, server_id, &replaced);
	if (r == 0 && (flags & APPLY_CHECK)) {
		r = check_plan(cfg, &a.plan, &a.sshd, res);
	} else if (r == 0) {
		r = applywrite_transact(&a);
		if (r < 0)
			applyundo_rollback(&a);
		else if (a.backed_up)
			r = commit(&a, flags);
	}
	if (r == 0 && !a.recorded)
		warn_no_password(&a);
	*recorded = a.recorded;
	log_steps(&a);
	pubkey_free(&replaced);
	backup_free(&a.backup);
	sshd_settings_free(&a.sshd);
	plan_free(&a.plan);
	return r;
}

int apply_task(const struct config *cfg, struct journal *j, const struct task *task, struct result *res)
{
	bool recorded;
	return apply_run(cfg, j, task, 0, now_ms(), res, &recorded);
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
		bool committed = false;
		if (task)
			apply_run(cfg, j, task, flags, start, res, &committed);
		if (committed)
			return;	/* recorded at the commit point, with its outbox entry */
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
