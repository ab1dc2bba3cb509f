/* kps-agent run: the monitor (daemon.h). One libevent loop; tasks from the
 * network side go through one bounded FIFO and are applied one at a time,
 * each in a freshly exec'd worker; a worker that dies or runs past its
 * time is killed and its task rolled back by another fresh worker, while
 * the loop goes on taking tasks. The network side is daemon_net.c's. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "apply.h"
#include "cli.h"
#include "daemon_int.h"
#include "log.h"
#include "managed.h"
#include "version.h"
#include "worker.h"

#define WORKER_GRACE_S 10	/* past task_timeout before the worker is killed */
#define RECOVER_LIMIT_S 90	/* a rollback's worker: the lock wait, a reload, the probes */
#define STOP_GRACE_MS 5000	/* SIGTERM: how long the task in hand may finish */
#define READY_WAIT_S 60		/* READY=1 at the latest, whatever the control plane does */

static void daemon_next(struct daemon *d);

void event_freep(struct event **ev)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
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

void daemon_status(struct daemon *d)
{
	sd_notifyf(0, "STATUS=%s; %lu applied, %lu failed, %zu queued",
		   d->stopping ? "stopping" : d->worker.job ? "applying a task" : "waiting for tasks", d->applied,
		   d->failed, d->queued);
}

bool daemon_has_task(const struct daemon *d, const char *task_id)
{
	if (d->worker.job && streq(d->worker.job->task_id, task_id))
		return true;
	for (const struct job *j = d->head; j; j = j->next)
		if (streq(j->task_id, task_id))
			return true;
	return false;
}

int daemon_queue(struct daemon *d, struct job *j)
{
	if (d->stopping || d->queued >= DAEMON_QUEUE_MAX)
		return -ENOBUFS;
	if (d->tail)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->queued++;
	daemon_next(d);
	return 0;
}

static void worker_clear(struct daemon *d)
{
	struct worker *w = &d->worker;
	link_free(w->link);
	event_freep(&w->timer);
	event_freep(&w->done_ev);
	if (w->out) {
		explicit_bzero(w->out, strlen(w->out));
		free(w->out);
	}
	w->link = NULL;
	w->out = NULL;
}

static void worker_kill(struct daemon *d)
{
	if (d->worker.pid <= 0)
		return;
	kill(d->worker.pid, SIGKILL);
	while (waitpid(d->worker.pid, NULL, 0) < 0 && errno == EINTR)
		;
	d->worker.pid = 0;
}

/* The job is done: its result goes back by the route it came. */
static void worker_finish(struct daemon *d, const struct result *res, const char *json)
{
	struct job *j = d->worker.job;
	if (j->route) {
		if (res->code == ERR_NONE)
			d->applied++;
		else
			d->failed++;
	}
	if (j->route == MSGFRAME_ROUTE_CHANNEL)
		daemon_net_answer(d, j, json);
	else
		daemon_net_feed(d);
	job_free(j);
	worker_clear(d);
	d->worker = (struct worker){ 0 };
	daemon_status(d);
	daemon_next(d);
	daemon_check_stopped(d);
}

/* A result made here, when no worker could give one. */
static void worker_finish_failed(struct daemon *d, enum error_code code, const char *why)
{
	struct result res;
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", d->worker.job->task_id);
	result_set_server_id(&res, d->server_id ? d->server_id : "");
	result_fail(&res, code, "%s", why);
	_cleanup_free_ char *json = result_to_json(&res);
	worker_finish(d, &res, json ? json : "");
	result_free(&res);
}

static int worker_launch(struct daemon *d, enum msgframe_type type, const void *head, size_t head_len,
			 const char *text, size_t len, int limit_s);

/* The worker died or ran out of time without a result: a fresh one rolls
 * back what it left and records the failure, so that the task is
 * reported exactly once. */
static void worker_recover(struct daemon *d, enum error_code code, const char *why)
{
	struct worker *w = &d->worker;
	struct job *j = w->job;
	log_warnx("task %s: %s", j->task_id[0] ? j->task_id : "-", why);
	worker_kill(d);
	worker_clear(d);
	if (w->recovering) {
		worker_finish_failed(d, code, why);
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
		r = worker_launch(d, MSGFRAME_RECOVER, head, sizeof(head), rest.data, rest.len, RECOVER_LIMIT_S);
	if (r < 0) {
		log_warnx("cannot start a worker to roll task %s back: %s", j->task_id, strerror(-r));
		worker_finish_failed(d, code, why);
	}
}

static void worker_done(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct worker *w = &d->worker;
	struct result res;
	(void)fd;
	(void)what;
	if (w->out && result_from_json(w->out, strlen(w->out), &res) == 0) {
		_cleanup_free_ char *json = strdup(w->out);
		worker_finish(d, &res, json ? json : "");
		result_free(&res);
		return;
	}
	if (w->recovering)
		worker_finish_failed(d, w->code, w->why);
	else
		worker_recover(d, ERR_IO_ERROR, "the worker applying this task died; what it changed was rolled back");
}

static void worker_frame(void *arg, const struct msgframe *f, const char *payload, int fd)
{
	struct daemon *d = arg;
	(void)fd;
	if (f->type == MSGFRAME_RESULT && !d->worker.out)
		d->worker.out = strndup(payload, f->len);
}

/* Handled from the loop: the link may not be freed inside its callback. */
static void worker_closed(void *arg, int err)
{
	struct daemon *d = arg;
	if (err)
		log_warnx("task %s: the worker's answer was refused: %s", d->worker.job->task_id, strerror(-err));
	event_active(d->worker.done_ev, EV_TIMEOUT, 0);
}

static void worker_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->worker.recovering)
		worker_recover(d, d->worker.code, "the rollback ran past its time limit; its backups are kept");
	else
		worker_recover(d, ERR_TIMEOUT, "task ran past its time limit; what it changed was rolled back");
}

static int worker_launch(struct daemon *d, enum msgframe_type type, const void *head, size_t head_len,
			 const char *text, size_t len, int limit_s)
{
	struct worker *w = &d->worker;
	int fd;
	int r = worker_spawn(d->self_fd, "kps-agent-worker", d->config_path, log_debug_enabled(), NULL, 0, &w->pid,
			     &fd);
	if (r < 0)
		return r;
	w->link = link_new(d->base, fd, 1U << MSGFRAME_RESULT, 0, WORKER_RESULT_MAX, worker_frame, worker_closed, d);
	w->timer = evtimer_new(d->base, worker_timeout, d);
	w->done_ev = event_new(d->base, -1, 0, worker_done, d);
	struct timeval limit = { limit_s, 0 };
	if (!w->link || !w->timer || !w->done_ev || evtimer_add(w->timer, &limit) < 0)
		return -ENOMEM;
	return link_send(w->link, type, head, head_len, text, len, -1);
}

static int worker_start(struct daemon *d, struct job *j)
{
	uint8_t head[8];
	d->worker = (struct worker){ .job = j };
	int r;
	if (j->route) {
		msgframe_put32(head, j->route == MSGFRAME_ROUTE_CONTROL_PLANE ? APPLY_OUTBOX : 0);
		r = worker_launch(d, MSGFRAME_TASK, head, 4, j->text, j->len, d->cfg.task_timeout_s + WORKER_GRACE_S);
	} else {
		/* The rollback at start: whichever task the backups are of. */
		msgframe_put32(head, d->cfg.url[0] ? APPLY_OUTBOX : 0);
		msgframe_put32(head + 4, (uint32_t)ERR_IO_ERROR);
		r = worker_launch(d, MSGFRAME_RECOVER, head, sizeof(head), j->text, j->len, RECOVER_LIMIT_S);
	}
	/* The link has its copy, wiped once written; this one goes now. */
	explicit_bzero(j->text, j->len);
	if (!j->route)
		d->worker.recovering = true;
	return r;
}

static void daemon_ready(struct daemon *d)
{
	if (d->ready)
		return;
	d->ready = true;
	sd_notify(0, "READY=1");
	daemon_status(d);
}

/* Ready once nothing that was waiting at boot is left to apply. */
void daemon_check_ready(struct daemon *d)
{
	if (!d->ready && !d->waiting_source && !d->worker.job && !d->head)
		daemon_ready(d);
}

static void on_ready_timer(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (!d->ready)
		log_warnx("ready after %d s without the control plane's tasks applied", READY_WAIT_S);
	daemon_ready(d);
}

/* Keys past their key_expires_at leave authorized_keys within 60 s (sshd
 * refuses them already): a timer for the next one, none while none is
 * ahead. Runs between tasks; daemon_next calls it again after each. */
static void daemon_expiry(struct daemon *d)
{
	int64_t now = (int64_t)time(NULL), next = 0;
	if (d->worker.job || d->stopping || !d->expiry_timer)
		return;
	int r = managed_sweep(&d->cfg, now, &next);
	if (r == -EBUSY)
		next = now + 1;	/* an apply from the command line holds the lock */
	else if (r < 0)
		log_warnx("expired keys: %s", strerror(-r));
	evtimer_del(d->expiry_timer);
	struct timeval tv = { (time_t)(next - now + 1), 0 };
	if (next > 0 && evtimer_add(d->expiry_timer, &tv) < 0)
		log_warnx("expired keys: cannot arm the timer");
}

static void on_expiry_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	daemon_expiry(arg);
}

/* A worker that cannot start fails its job, and worker_finish calls this
 * again for the next: each level takes one job off the queue, which holds
 * at most DAEMON_QUEUE_MAX. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded by DAEMON_QUEUE_MAX */
static void daemon_next(struct daemon *d)
{
	while (!d->worker.job && d->head && !d->stopping) {
		struct job *j = d->head;
		d->head = j->next;
		if (!d->head)
			d->tail = NULL;
		d->queued--;
		j->next = NULL;
		int r = worker_start(d, j);
		daemon_status(d);
		if (r == 0)
			return;
		log_warnx("cannot start a worker: %s", strerror(-r));
		worker_kill(d);
		worker_clear(d);
		worker_finish_failed(d, ERR_IO_ERROR, "the agent could not start a worker for this task");
		return;
	}
	daemon_check_ready(d);
	daemon_expiry(d);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->worker.job && !d->worker.recovering) {
		log_warnx("stopping: the task in hand did not finish in time; rolling it back");
		worker_recover(d, ERR_TIMEOUT, "the agent was stopped during this task; it was rolled back");
	}
}

/* Queued tasks were never started: the control plane sends them again. */
static void daemon_drop_queue(struct daemon *d)
{
	while (d->head) {
		struct job *j = d->head;
		d->head = j->next;
		job_free(j);
	}
	d->tail = NULL;
	d->queued = 0;
}

static void daemon_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	log_info("stopping");
	daemon_status(d);
	daemon_net_stop(d);
	daemon_drop_queue(d);
	struct timeval grace = { STOP_GRACE_MS / 1000, (STOP_GRACE_MS % 1000) * 1000L };
	d->stop_timer = evtimer_new(d->base, on_stop_timer, d);
	if (d->stop_timer)
		evtimer_add(d->stop_timer, &grace);
	daemon_check_stopped(d);
}

void daemon_check_stopped(struct daemon *d)
{
	if (d->stopping && !d->worker.job)
		event_base_loopexit(d->base, NULL);
}

static void daemon_reload(struct daemon *d)
{
	struct config cfg;
	char err[512] = "";
	const char *path = d->config_path ? d->config_path : DEFAULT_CONFIG;
	if (config_load(path, d->config_path != NULL, &cfg, err, sizeof(err)) < 0) {
		log_warnx("SIGHUP: keeping the old configuration: %s", err);
		config_free(&cfg);
		return;
	}
	sd_notify(0, "RELOADING=1");
	bool same_socket = streq(cfg.socket, d->cfg.socket);
	config_free(&d->cfg);
	d->cfg = cfg;
	free(d->server_id);
	d->server_id = config_server_id(&d->cfg);
	daemon_net_restart(d, !same_socket);
	log_info("configuration reloaded from %s", path);
	sd_notify(0, "READY=1");
	daemon_status(d);
}

static void daemon_reap(struct daemon *d)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == d->net.pid)
			daemon_net_exited(d, status);
		else if (pid == d->worker.pid)
			d->worker.pid = 0;
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	(void)what;
	if (sig == SIGHUP)
		daemon_reload(d);
	else if (sig == SIGCHLD)
		daemon_reap(d);
	else
		daemon_stop(d);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static int daemon_watchdog(struct daemon *d)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
	usec /= 2;
	struct timeval tv = { (time_t)(usec / 1000000), (suseconds_t)(usec % 1000000) };
	d->watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
	return d->watchdog && event_add(d->watchdog, &tv) == 0 ? 0 : -ENOMEM;
}

static int daemon_signals(struct daemon *d)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], on_signal, d);
		if (!d->signals[i] || evsignal_add(d->signals[i], NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* A task cut off by a crash or a kill is rolled back before anything new,
 * by a worker like any rollback: the first job. */
static int daemon_recover(struct daemon *d)
{
	struct backup b = { 0 };
	int r = journal_backup_read(&d->journal, &b);
	backup_free(&b);
	if (r == -ENOENT)
		return 0;
	struct job *j = calloc(1, sizeof(*j));
	const char why[] = "the agent stopped in the middle of this task; it was rolled back";
	if (!j || !(j->text = malloc(sizeof(why) + 1))) {
		free(j);
		return -ENOMEM;
	}
	j->text[0] = '\0';
	memcpy(j->text + 1, why, sizeof(why));
	j->len = sizeof(why) + 1;
	return daemon_queue(d, j);
}

static void daemon_free(struct daemon *d)
{
	daemon_net_stop(d);
	worker_kill(d);
	job_free(d->worker.job);
	worker_clear(d);
	daemon_drop_queue(d);
	daemon_net_free(d);
	for (size_t i = 0; i < ELEMENTSOF(d->signals); i++)
		event_freep(&d->signals[i]);
	event_freep(&d->watchdog);
	event_freep(&d->stop_timer);
	event_freep(&d->ready_timer);
	event_freep(&d->expiry_timer);
	closep(&d->mark_fd);
	closep(&d->self_fd);
	journal_close(&d->journal);
	if (d->base)
		event_base_free(d->base);
	free(d->server_id);
	config_free(&d->cfg);
}

static int daemon_start(struct daemon *d)
{
	char msg[256] = "";
	int r = journal_open(d->cfg.state_dir, d->cfg.results_keep, &d->journal, msg, sizeof(msg));
	if (r < 0) {
		log_warnx("%s", msg);
		return r;
	}
	/* Workers are this very file, even once a package upgrade replaced
	 * it on disk. */
	d->self_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	if (d->self_fd < 0)
		return -errno;
	d->base = event_base_new();
	if (!d->base)
		return -ENOMEM;
	r = daemon_signals(d);
	if (r == 0)
		r = daemon_watchdog(d);
	if (r < 0)
		return r;
	d->waiting_source = d->cfg.url[0] != '\0';
	struct timeval limit = { READY_WAIT_S, 0 };
	d->ready_timer = evtimer_new(d->base, on_ready_timer, d);
	d->expiry_timer = evtimer_new(d->base, on_expiry_timer, d);
	if (!d->ready_timer || !d->expiry_timer || evtimer_add(d->ready_timer, &limit) < 0)
		return -ENOMEM;
	if (daemon_recover(d) < 0)
		log_warnx("an interrupted task could not be rolled back; its backups are kept");
	d->mark_fd = cli_daemon_mark(&d->cfg);
	if (d->mark_fd == -EBUSY)
		log_warnx("another kps-agent daemon runs on %s", d->cfg.state_dir);
	return daemon_net_start(d, true);
}

int daemon_run(struct config *cfg, const char *config_path)
{
	struct daemon d = { .config_path = config_path, .mark_fd = -1, .self_fd = -1 };
	/* The daemon owns the configuration from here: SIGHUP replaces it. */
	d.cfg = *cfg;
	*cfg = (struct config){ 0 };
	d.server_id = config_server_id(&d.cfg);
	daemon_net_init(&d);
	int r = daemon_start(&d);
	if (r < 0) {
		log_warnx("cannot start: %s", strerror(-r));
		daemon_free(&d);
		return 2;
	}
	log_info("running (server %s, control plane %s, socket %s, device %s)", d.server_id ? d.server_id : "unknown",
		 d.cfg.url[0] ? d.cfg.url : "off", d.cfg.socket[0] ? d.cfg.socket : "off",
		 d.cfg.device[0] ? d.cfg.device : "off");
	daemon_check_ready(&d);
	daemon_expiry(&d);
	event_base_dispatch(d.base);
	log_info("stopped: %lu applied, %lu failed", d.applied, d.failed);
	daemon_free(&d);
	return 0;
}
