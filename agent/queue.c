/* The monitor's queue (queue.h). */
#include <signal.h>
#include <sys/wait.h>

#include "applyflags.h"
#include "link.h"
#include "log.h"
#include "queue.h"
#include "worker.h"

#define WORKER_GRACE_S 10	/* past task_timeout before the worker is killed */
#define RECOVER_LIMIT_S 90	/* a rollback's worker: the lock wait, a reload, the probes */
#define SWEEP_LIMIT_S 60	/* a sweep's worker: reading and rewriting the managed files */
#define SPARE_LINGER_S 10	/* a spare worker waits this long for the next job */

struct worker {
	struct job *job;
	pid_t pid;
	struct link *link;
	struct event *timer;
	struct event *done_ev;
	char *out;		/* the result frame's JSON */
	bool recovering;	/* this worker rolls back a task cut off */
	enum error_code code;	/* what the rollback reports */
	char why[160];
	bool answered;		/* its result went to the monitor; the sweep may follow */
	bool swept;		/* the worker's sweep answered */
	struct sweep_report sweep;
};

/* A worker exec'd ahead of the next job, its configuration sent. */
struct spare {
	pid_t pid;
	int fd;			/* blocking until a job adopts it */
	struct event *linger;
};

struct queue {
	struct event_base *base;
	const struct config *cfg;
	int tool_fd;
	queue_done_fn *done;
	queue_ended_fn *ended;
	void *arg;
	struct job *head, *tail;
	size_t n;
	struct worker w;
	struct spare spare;
	struct event *stop_timer;
	bool stopping;
};

static void queue_next(struct queue *q);

struct job *job_new(const char *text, size_t len, enum msgframe_route route, uint32_t tag, unsigned gen,
		    const char *task_id)
{
	struct job *j = calloc(1, sizeof(*j));
	char *copy = malloc(len + 1);
	if (!j || !copy) {
		free(j);
		free(copy);
		return NULL;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	*j = (struct job){ .text = copy, .len = len, .route = route, .tag = tag, .gen = gen };
	snprintf(j->task_id, sizeof(j->task_id), "%s", task_id);
	return j;
}

struct job *job_sweep_new(void)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j)
		j->sweep = true;
	return j;
}

void job_free(struct job *j)
{
	if (!j)
		return;
	if (j->text) {
		explicit_bzero(j->text, j->len);
		free(j->text);
	}
	free(j);
}

static void event_freep(struct event **ev)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
}

static void worker_clear(struct worker *w)
{
	link_free(w->link);
	w->link = NULL;
	event_freep(&w->timer);
	event_freep(&w->done_ev);
	if (w->out) {
		explicit_bzero(w->out, strlen(w->out));
		free(w->out);
	}
	w->out = NULL;
}

static void worker_kill(struct worker *w)
{
	if (w->pid <= 0)
		return;
	kill(w->pid, SIGKILL);
	while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
		;
	w->pid = 0;
}

/* -- the spare ------------------------------------------------------------
 * The next job skips the exec of kps-agent-tool (its libraries take some
 * 7 ms to load): a spare is started once a job has its result and is gone
 * after SPARE_LINGER_S without a job, so an idle daemon has none. It is a
 * fresh exec like any worker and holds nothing but the configuration, a
 * copy of which a new configuration makes stale: it goes then. */

static void spare_drop(struct queue *q)
{
	struct spare *s = &q->spare;
	if (s->linger)
		evtimer_del(s->linger);
	closep(&s->fd);
	if (s->pid > 0)
		kill(s->pid, SIGKILL);	/* reaped on SIGCHLD (queue_reaped) */
	s->pid = 0;
}

static void on_spare_linger(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	spare_drop(arg);
}

static void spare_start(struct queue *q)
{
	struct spare *s = &q->spare;
	struct timeval linger = { SPARE_LINGER_S, 0 };
	if (q->stopping || s->pid > 0)
		return;
	if (!s->linger)
		s->linger = evtimer_new(q->base, on_spare_linger, q);
	if (!s->linger || worker_spawn(q->tool_fd, "kps-agent-worker", log_debug_enabled(), NULL, 0, &s->pid, &s->fd) < 0) {
		s->pid = 0;
		return;
	}
	/* Into a fresh socketpair's buffer: the worker reads it once loaded. */
	if (msgframe_send(s->fd, MSGFRAME_CONFIG, q->cfg->settings.data, q->cfg->settings.len) < 0 ||
	    evtimer_add(s->linger, &linger) < 0)
		spare_drop(q);
}

/* The spare's pid and socket for a job, if there is one. */
static bool spare_take(struct queue *q, pid_t *pid, int *fd)
{
	struct spare *s = &q->spare;
	if (s->pid <= 0)
		return false;
	evtimer_del(s->linger);
	*pid = s->pid;
	*fd = s->fd;
	s->pid = 0;
	s->fd = -1;
	return true;
}

/* -- the worker in hand -------------------------------------------------- */

/* The worker ended: the monitor is told, and the next job starts. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded, see queue_next */
static void worker_end(struct queue *q)
{
	struct job *j = q->w.job;
	struct sweep_report sweep = q->w.sweep;
	bool swept = q->w.swept;
	worker_clear(&q->w);
	q->w = (struct worker){ 0 };
	q->ended(q->arg, j, swept ? &sweep : NULL);
	job_free(j);
	queue_next(q);
}

/* The job is done: its result (none for a sweep) to the monitor, then the
 * end of its worker. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded, see queue_next */
static void worker_finish(struct queue *q, const struct result *res, const char *json)
{
	if (res)
		q->done(q->arg, q->w.job, res, json);
	worker_end(q);
}

/* The worker's result, as soon as it came: the worker still sweeps expired
 * keys before it ends, and the next job waits for that, not the result. */
static void worker_answer(struct queue *q)
{
	struct worker *w = &q->w;
	struct result res;
	if (w->answered || !w->out || result_from_json(w->out, strlen(w->out), &res) < 0)
		return;
	w->answered = true;
	q->done(q->arg, w->job, &res, w->out);
	result_free(&res);
	spare_start(q);
}

/* A result made here, when no worker could give one. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded, see queue_next */
static void worker_finish_failed(struct queue *q, enum error_code code, const char *why)
{
	struct result res;
	if (q->w.job->sweep) {
		log_warnx("expired keys: %s", why);
		worker_finish(q, NULL, NULL);
		return;
	}
	_cleanup_free_ char *sid = config_server_id(q->cfg);
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", q->w.job->task_id);
	result_set_server_id(&res, sid ? sid : "");
	result_fail(&res, code, "%s", why);
	_cleanup_free_ char *json = result_to_json(&res);
	worker_finish(q, &res, json ? json : "");
	result_free(&res);
}

static void worker_frame(void *arg, const struct msgframe *f, const char *payload, int fd)
{
	struct queue *q = arg;
	closep(&fd);
	if (f->type == MSGFRAME_RESULT && !q->w.out && !q->w.job->sweep) {
		q->w.out = strndup(payload, f->len);
		worker_answer(q);
	}
	if (f->type == MSGFRAME_SWEPT && f->len == 12 && !q->w.swept) {
		uint32_t status = msgframe_get32(payload);
		q->w.swept = true;
		q->w.sweep.status = status <= 4095 ? -(int)status : -EPROTO;
		q->w.sweep.next = (int64_t)((uint64_t)msgframe_get32(payload + 4) << 32 | msgframe_get32(payload + 8));
	}
}

/* Handled from the loop: the link may not be freed inside its callback. */
static void worker_closed(void *arg, int err)
{
	struct queue *q = arg;
	if (err)
		log_warnx("task %s: the worker's answer was refused: %s", q->w.job->task_id, strerror(-err));
	event_active(q->w.done_ev, EV_TIMEOUT, 0);
}

static void worker_timeout(evutil_socket_t fd, short what, void *arg);
static void worker_done(evutil_socket_t fd, short what, void *arg);

static int worker_launch(struct queue *q, enum msgframe_type type, const void *head, size_t head_len,
			 const char *text, size_t len, int limit_s)
{
	struct worker *w = &q->w;
	int fd, r = 0;
	bool configured = spare_take(q, &w->pid, &fd);
	if (!configured)
		r = worker_spawn(q->tool_fd, "kps-agent-worker", log_debug_enabled(), NULL, 0, &w->pid, &fd);
	if (r < 0)
		return r;
	w->link = link_new(q->base, fd, 1U << MSGFRAME_RESULT | 1U << MSGFRAME_SWEPT, 0, WORKER_RESULT_MAX, worker_frame,
			   worker_closed, q);
	w->timer = evtimer_new(q->base, worker_timeout, q);
	w->done_ev = event_new(q->base, -1, 0, worker_done, q);
	struct timeval limit = { limit_s, 0 };
	if (!w->link || !w->timer || !w->done_ev || evtimer_add(w->timer, &limit) < 0)
		return -ENOMEM;
	if (!configured)
		r = link_send(w->link, MSGFRAME_CONFIG, q->cfg->settings.data, q->cfg->settings.len, NULL, 0, -1);
	if (r == 0)
		r = link_send(w->link, type, head, head_len, text, len, -1);
	return r;
}

/* The worker died or ran out of time without a result: a fresh one rolls
 * back what it left and records the failure, so that the task is
 * reported exactly once. */
static void worker_recover(struct queue *q, enum error_code code, const char *why)
{
	struct worker *w = &q->w;
	struct job *j = w->job;
	worker_kill(w);
	if (w->answered) {
		/* The result is recorded and delivered; only the sweep is cut. */
		log_warnx("task %s: the worker was stopped after its result, in the sweep of expired keys", j->task_id);
		worker_end(q);
		return;
	}
	worker_clear(w);
	if (j->sweep) {
		worker_finish_failed(q, code, "the sweep's worker was stopped");
		return;
	}
	log_warnx("task %s: %s", j->task_id[0] ? j->task_id : "-", why);
	if (w->recovering) {
		worker_finish_failed(q, code, why);
		return;
	}
	w->recovering = true;
	w->code = code;
	snprintf(w->why, sizeof(w->why), "%s", why);
	uint8_t head[8];
	msgframe_put32(head, j->route == MSGFRAME_ROUTE_CONTROL_PLANE ? APPLY_OUTBOX : 0);
	msgframe_put32(head + 4, (uint32_t)code);
	_cleanup_(buf_free) struct buf rest = { 0 };
	int r = buf_append(&rest, j->task_id, strlen(j->task_id) + 1);
	if (r == 0)
		r = buf_puts(&rest, why);
	if (r == 0)
		r = worker_launch(q, MSGFRAME_RECOVER, head, sizeof(head), rest.data, rest.len, RECOVER_LIMIT_S);
	if (r < 0) {
		log_warnx("cannot start a worker to roll task %s back: %s", j->task_id, strerror(-r));
		worker_kill(w);
		worker_clear(w);
		worker_finish_failed(q, code, why);
	}
}

static void worker_done(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	struct worker *w = &q->w;
	struct result res;
	(void)fd;
	(void)what;
	if (w->job->sweep) {
		if (!w->swept)
			log_warnx("expired keys: the sweep's worker ended without an answer");
		worker_finish(q, NULL, NULL);
		return;
	}
	if (w->answered) {
		worker_end(q);
		return;
	}
	if (w->out && result_from_json(w->out, strlen(w->out), &res) == 0) {
		_cleanup_free_ char *json = strdup(w->out);
		worker_finish(q, &res, json ? json : "");
		result_free(&res);
		return;
	}
	if (w->recovering)
		worker_finish_failed(q, w->code, w->why);
	else
		worker_recover(q, ERR_IO_ERROR, "the worker applying this task died; what it changed was rolled back");
}

static void worker_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	(void)fd;
	(void)what;
	if (q->w.recovering)
		worker_recover(q, q->w.code, "the rollback ran past its time limit; its backups are kept");
	else
		worker_recover(q, ERR_TIMEOUT, "task ran past its time limit; what it changed was rolled back");
}

static int worker_start(struct queue *q, struct job *j)
{
	uint8_t head[8];
	q->w = (struct worker){ .job = j };
	int r;
	if (j->sweep)
		return worker_launch(q, MSGFRAME_SWEEP, NULL, 0, NULL, 0, SWEEP_LIMIT_S);
	if (j->route) {
		msgframe_put32(head, j->route == MSGFRAME_ROUTE_CONTROL_PLANE ? APPLY_OUTBOX : 0);
		r = worker_launch(q, MSGFRAME_TASK, head, 4, j->text, j->len, q->cfg->task_timeout_s + WORKER_GRACE_S);
	} else {
		/* The rollback at start: whichever task the backups are of. */
		q->w.recovering = true;
		q->w.code = ERR_IO_ERROR;
		snprintf(q->w.why, sizeof(q->w.why), "%s", j->text + 1);
		msgframe_put32(head, q->cfg->url[0] ? APPLY_OUTBOX : 0);
		msgframe_put32(head + 4, (uint32_t)ERR_IO_ERROR);
		r = worker_launch(q, MSGFRAME_RECOVER, head, sizeof(head), j->text, j->len, RECOVER_LIMIT_S);
	}
	/* The link has its copy, wiped once written; this one goes now. */
	explicit_bzero(j->text, j->len);
	return r;
}

/* A worker that cannot start fails its job, and worker_finish calls this
 * again for the next: each level takes one job off the queue, which holds
 * at most QUEUE_MAX. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded by QUEUE_MAX */
static void queue_next(struct queue *q)
{
	if (q->w.job || !q->head || q->stopping)
		return;
	struct job *j = q->head;
	q->head = j->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	j->next = NULL;
	int r = worker_start(q, j);
	if (r == 0)
		return;
	log_warnx("cannot start a worker: %s", strerror(-r));
	worker_kill(&q->w);
	worker_clear(&q->w);
	worker_finish_failed(q, ERR_IO_ERROR, "the agent could not start a worker for this task");
}

int queue_push(struct queue *q, struct job *j)
{
	if (q->stopping || q->n >= QUEUE_MAX)
		return -ENOBUFS;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
	queue_next(q);
	return 0;
}

bool queue_has(const struct queue *q, const char *task_id)
{
	if (q->w.job && streq(q->w.job->task_id, task_id))
		return true;
	for (const struct job *j = q->head; j; j = j->next)
		if (streq(j->task_id, task_id))
			return true;
	return false;
}

bool queue_idle(const struct queue *q)
{
	return !q->w.job && !q->head;
}

size_t queue_length(const struct queue *q)
{
	return q->n;
}

bool queue_reaped(struct queue *q, pid_t pid)
{
	if (pid > 0 && pid == q->spare.pid) {
		/* A spare that died waiting: the next job spawns its own. */
		q->spare.pid = 0;
		spare_drop(q);
		return true;
	}
	if (pid <= 0 || pid != q->w.pid)
		return false;
	q->w.pid = 0;
	return true;
}

void queue_set_config(struct queue *q, const struct config *cfg)
{
	q->cfg = cfg;
	spare_drop(q);
}

static void queue_drop(struct queue *q)
{
	while (q->head) {
		struct job *j = q->head;
		q->head = j->next;
		job_free(j);
	}
	q->tail = NULL;
	q->n = 0;
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	(void)fd;
	(void)what;
	if (q->w.job && (q->w.job->sweep || q->w.answered)) {
		worker_recover(q, ERR_TIMEOUT, "stopping");
	} else if (q->w.job && !q->w.recovering) {
		log_warnx("stopping: the task in hand did not finish in time; rolling it back");
		worker_recover(q, ERR_TIMEOUT, "the agent was stopped during this task; it was rolled back");
	}
}

void queue_stop(struct queue *q, unsigned grace_ms)
{
	q->stopping = true;
	queue_drop(q);
	spare_drop(q);
	struct timeval grace = { grace_ms / 1000, (suseconds_t)(grace_ms % 1000) * 1000 };
	if (!q->stop_timer)
		q->stop_timer = evtimer_new(q->base, on_stop_timer, q);
	if (q->stop_timer)
		evtimer_add(q->stop_timer, &grace);
}

struct queue *queue_new(struct event_base *base, const struct config *cfg, int tool_fd, queue_done_fn *done,
			queue_ended_fn *ended, void *arg)
{
	struct queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	*q = (struct queue){ .base = base, .cfg = cfg, .tool_fd = tool_fd, .done = done, .ended = ended, .arg = arg };
	q->spare.fd = -1;
	return q;
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	worker_kill(&q->w);
	job_free(q->w.job);
	worker_clear(&q->w);
	queue_drop(q);
	pid_t spare = q->spare.pid;
	spare_drop(q);
	while (spare > 0 && waitpid(spare, NULL, 0) < 0 && errno == EINTR)
		;
	event_freep(&q->spare.linger);
	event_freep(&q->stop_timer);
	free(q);
}
