/* kps-agent run: one libevent loop. Tasks from the control plane and the
 * local channel go through one bounded FIFO and are applied one at a time
 * in a worker process (the loop keeps serving, and a task past its time
 * limit can be killed and rolled back). */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "apply.h"
#include "channel.h"
#include "cli.h"
#include "controlplane.h"
#include "daemon.h"
#include "journal.h"
#include "log.h"
#include "managed.h"
#include "version.h"

#define WORKER_GRACE_S 10	/* past task_timeout before the worker is killed */
#define STOP_GRACE_MS 5000	/* SIGTERM: how long the task in hand may finish */
#define WORKER_OUTPUT_MAX ((size_t)64 * 1024)
#define READY_WAIT_S 60		/* READY=1 at the latest, whatever the control plane does */

struct job {
	struct job *next;
	char *text;
	size_t len;
	enum task_source source;
	daemon_done_fn done;
	void *arg;
};

struct worker {
	struct job *job;
	pid_t pid;
	int fd;
	struct event *read_ev;
	struct event *timer;
	struct buf out;
	char task_id[TASK_ID_MAX + 1];
};

struct daemon {
	struct config cfg;
	const char *config_path;
	char *server_id;
	struct event_base *base;
	struct event *signals[4];
	struct event *watchdog;
	struct event *stop_timer;
	struct job *head, *tail;
	size_t queued;
	struct worker worker;
	struct controlplane *cp;
	struct channel *ch;
	unsigned long applied, failed;
	bool stopping;
	bool ready;		/* READY=1 sent */
	bool waiting_source;	/* READY=1 waits for the control plane's first poll */
	struct event *ready_timer;
	struct event *expiry_timer;	/* the next key_expires_at, when one is ahead */
	int mark_fd;			/* the state dir's daemon.lock, for status */
};

static void daemon_next(struct daemon *d);

struct event_base *daemon_base(struct daemon *d)
{
	return d->base;
}

const struct config *daemon_config(struct daemon *d)
{
	return &d->cfg;
}

const char *daemon_server_id(struct daemon *d)
{
	return d->server_id;
}

static void event_freep(struct event **ev)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	if (j->text) {
		explicit_bzero(j->text, j->len);
		free(j->text);
	}
	free(j);
}

static void daemon_status(struct daemon *d)
{
	sd_notifyf(0, "STATUS=%s; %lu applied, %lu failed, %zu queued",
		   d->stopping ? "stopping" : d->worker.job ? "applying a task" : "waiting for tasks", d->applied,
		   d->failed, d->queued);
}

int daemon_submit(struct daemon *d, const char *text, size_t len, enum task_source source, daemon_done_fn done,
		  void *arg)
{
	if (d->stopping || d->queued >= DAEMON_QUEUE_MAX)
		return -ENOBUFS;
	struct job *j = calloc(1, sizeof(*j));
	char *copy = malloc(len + 1);
	if (!j || !copy) {
		free(j);
		free(copy);
		return -ENOMEM;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	*j = (struct job){ .text = copy, .len = len, .source = source, .done = done, .arg = arg };
	if (d->tail)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->queued++;
	daemon_next(d);
	return 0;
}

void daemon_detach(struct daemon *d, const void *arg)
{
	for (struct job *j = d->head; j; j = j->next)
		if (j->arg == arg)
			j->done = NULL;
	if (d->worker.job && d->worker.job->arg == arg)
		d->worker.job->done = NULL;
}

/* Closes every descriptor from 3 on but keep_a and keep_b (-1: none). */
static void daemon_close_others(int keep_a, int keep_b)
{
	int lo = keep_a < keep_b ? keep_a : keep_b;
	int hi = keep_a < keep_b ? keep_b : keep_a;
	unsigned from = 3;
	const int keep[] = { lo, hi };
	for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
		if (keep[i] < (int)from)
			continue;
		if ((unsigned)keep[i] > from)
			close_range(from, (unsigned)keep[i] - 1, 0);
		from = (unsigned)keep[i] + 1;
	}
	close_range(from, ~0U, 0);
}

/* The worker: a child that applies one task and writes its result line. */
static void worker_child(struct daemon *d, const struct job *j, int fd)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD };
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		signal(sigs[i], SIG_DFL);
	/* The loop's sockets and the listeners are the parent's business; the
	 * result pipe and the journal's socket (log_fd) stay. */
	daemon_close_others(fd, log_fd());
	struct result res;
	unsigned flags = j->source == SOURCE_CONTROL_PLANE ? APPLY_OUTBOX : 0;
	apply_text(&d->cfg, j->text, j->len, flags, &res);
	explicit_bzero(j->text, j->len);
	char *json = result_to_json(&res);
	if (json) {
		size_t n = strlen(json);
		json[n] = '\n';
		for (size_t off = 0; off <= n;) {
			ssize_t w = write(fd, json + off, n + 1 - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	_exit(0);
}

/* NOLINTNEXTLINE(misc-no-recursion): bounded, see daemon_next */
static void worker_finish(struct daemon *d, struct result *res, const char *json)
{
	struct job *j = d->worker.job;
	if (res->code == ERR_NONE)
		d->applied++;
	else
		d->failed++;
	if (j->done)
		j->done(res, json, j->arg);
	/* Also when the poller that submitted it was replaced (SIGHUP). */
	else if (j->source == SOURCE_CONTROL_PLANE && d->cp)
		controlplane_outbox_kick(d->cp);
	job_free(j);
	event_freep(&d->worker.read_ev);
	event_freep(&d->worker.timer);
	closep(&d->worker.fd);
	buf_wipe(&d->worker.out);
	d->worker = (struct worker){ .fd = -1 };
	daemon_status(d);
	daemon_next(d);
}

/* The worker died or was killed without a result: roll back what it left
 * and record the failure, so the task is reported exactly once. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded, see daemon_next */
static void worker_failed(struct daemon *d, enum error_code code, const char *why)
{
	struct worker *w = &d->worker;
	struct journal j;
	struct result res;
	char msg[256] = "";
	unsigned flags = w->job->source == SOURCE_CONTROL_PLANE ? APPLY_OUTBOX : 0;
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", w->task_id);
	result_set_server_id(&res, d->server_id ? d->server_id : "");
	if (journal_open(d->cfg.state_dir, d->cfg.results_keep, &j, msg, sizeof(msg)) == 0 && journal_lock(&j, 30000) == 0) {
		apply_recover(&d->cfg, &j, flags, code, why);
		if (!w->task_id[0] || journal_lookup(&j, w->task_id, &res) < 0) {
			result_fail(&res, code, "%s", why);
			if (w->task_id[0]) {
				journal_record(&j, &res);
				if (flags)
					journal_outbox_put(&j, &res);
			}
		}
	} else {
		result_fail(&res, code, "%s", why);
	}
	journal_close(&j);
	log_warnx("task %s: %s", w->task_id[0] ? w->task_id : "-", why);
	_cleanup_free_ char *json = result_to_json(&res);
	worker_finish(d, &res, json ? json : "");
	result_free(&res);
}

static void worker_reap(struct daemon *d, bool kill_it)
{
	if (d->worker.pid <= 0)
		return;
	if (kill_it)
		kill(d->worker.pid, SIGKILL);
	while (waitpid(d->worker.pid, NULL, 0) < 0 && errno == EINTR)
		;
	d->worker.pid = 0;
}

static void worker_read(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct worker *w = &d->worker;
	char chunk[4096];
	(void)what;
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && w->out.len + (size_t)n <= WORKER_OUTPUT_MAX) {
		buf_append(&w->out, chunk, (size_t)n);
		return;
	}
	worker_reap(d, n != 0);
	struct result res;
	if (w->out.len && w->out.data[w->out.len - 1] == '\n' &&
	    result_from_json(w->out.data, w->out.len - 1, &res) == 0) {
		w->out.data[w->out.len - 1] = '\0';
		_cleanup_free_ char *json = strdup(w->out.data);
		worker_finish(d, &res, json ? json : "");
		result_free(&res);
		return;
	}
	worker_failed(d, ERR_IO_ERROR, "the worker applying this task died; what it changed was rolled back");
}

static void worker_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	worker_reap(d, true);
	worker_failed(d, ERR_TIMEOUT, "task ran past its time limit; what it changed was rolled back");
}

/* The task_id, for reporting a worker that never answered. */
static void job_task_id(const struct job *j, char *id, size_t size)
{
	struct task t = { 0 };
	struct result res;
	result_init(&res);
	task_parse(j->text, j->len, &t, &res);
	snprintf(id, size, "%s", res.task_id);
	task_free(&t);
	result_free(&res);
}

static int worker_start(struct daemon *d, struct job *j)
{
	int p[2];
	struct worker *w = &d->worker;
	*w = (struct worker){ .job = j, .fd = -1 };
	job_task_id(j, w->task_id, sizeof(w->task_id));
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	w->fd = p[0];
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		worker_child(d, j, p[1]);
	}
	close(p[1]);
	if (pid < 0)
		return -errno;
	w->pid = pid;
	/* The child has its copy; this one goes now. */
	explicit_bzero(j->text, j->len);
	evutil_make_socket_nonblocking(w->fd);
	w->read_ev = event_new(d->base, w->fd, EV_READ | EV_PERSIST, worker_read, d);
	w->timer = evtimer_new(d->base, worker_timeout, d);
	struct timeval limit = { d->cfg.task_timeout_s + WORKER_GRACE_S, 0 };
	if (!w->read_ev || !w->timer || event_add(w->read_ev, NULL) < 0 || evtimer_add(w->timer, &limit) < 0)
		return -ENOMEM;
	return 0;
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
static void daemon_check_ready(struct daemon *d)
{
	if (!d->ready && !d->waiting_source && !d->worker.job && !d->head)
		daemon_ready(d);
}

void daemon_source_settled(struct daemon *d)
{
	d->waiting_source = false;
	daemon_check_ready(d);
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
 * at most DAEMON_QUEUE_MAX (about 1.6 KiB of stack a level). */
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
		worker_reap(d, true);
		worker_failed(d, ERR_IO_ERROR, "the agent could not start a worker for this task");
	}
	daemon_check_ready(d);
	daemon_expiry(d);
}

static void daemon_sources_stop(struct daemon *d)
{
	if (d->cp) {
		daemon_detach(d, d->cp);
		controlplane_free(d->cp);
		d->cp = NULL;
	}
	if (d->ch) {
		channel_free(d->ch);
		d->ch = NULL;
	}
}

static void daemon_sources_start(struct daemon *d)
{
	d->ch = channel_new(d);
	d->cp = controlplane_new(d);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->worker.job) {
		log_warnx("stopping: the task in hand did not finish in time; rolling it back");
		worker_reap(d, true);
		worker_failed(d, ERR_TIMEOUT, "the agent was stopped during this task; it was rolled back");
	}
	event_base_loopexit(d->base, NULL);
}

static void daemon_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	log_info("stopping");
	daemon_status(d);
	daemon_sources_stop(d);
	/* Queued tasks were never started: the control plane sends them again. */
	while (d->head) {
		struct job *j = d->head;
		d->head = j->next;
		job_free(j);
	}
	d->tail = NULL;
	d->queued = 0;
	if (!d->worker.job) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	struct timeval grace = { STOP_GRACE_MS / 1000, (STOP_GRACE_MS % 1000) * 1000L };
	d->stop_timer = evtimer_new(d->base, on_stop_timer, d);
	if (d->stop_timer)
		evtimer_add(d->stop_timer, &grace);
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
	/* Clients of an unchanged channel keep their connection and results. */
	bool keep_channel = streq(cfg.socket, d->cfg.socket) && streq(cfg.device, d->cfg.device);
	if (d->cp) {
		daemon_detach(d, d->cp);
		controlplane_free(d->cp);
		d->cp = NULL;
	}
	if (!keep_channel && d->ch) {
		channel_free(d->ch);
		d->ch = NULL;
	}
	config_free(&d->cfg);
	d->cfg = cfg;
	free(d->server_id);
	d->server_id = config_server_id(&d->cfg);
	if (!keep_channel)
		d->ch = channel_new(d);
	d->cp = controlplane_new(d);
	log_info("configuration reloaded from %s", path);
	sd_notify(0, "READY=1");
	daemon_status(d);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	(void)what;
	if (sig == SIGHUP)
		daemon_reload(d);
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
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], on_signal, d);
		if (!d->signals[i] || evsignal_add(d->signals[i], NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* A task cut off by a crash or a kill is rolled back before anything new. */
static int daemon_recover(struct daemon *d)
{
	struct journal j;
	char msg[256] = "";
	int r = journal_open(d->cfg.state_dir, d->cfg.results_keep, &j, msg, sizeof(msg));
	if (r < 0) {
		log_warnx("%s", msg);
		journal_close(&j);
		return r;
	}
	r = journal_lock(&j, d->cfg.task_timeout_s * 1000);
	if (r == 0)
		r = apply_recover(&d->cfg, &j, d->cfg.url[0] ? APPLY_OUTBOX : 0, ERR_IO_ERROR,
				  "the agent stopped in the middle of this task; it was rolled back");
	journal_close(&j);
	return r;
}

static void daemon_free(struct daemon *d)
{
	daemon_sources_stop(d);
	worker_reap(d, true);
	if (d->worker.job)
		job_free(d->worker.job);
	event_freep(&d->worker.read_ev);
	event_freep(&d->worker.timer);
	closep(&d->worker.fd);
	buf_wipe(&d->worker.out);
	while (d->head) {
		struct job *j = d->head;
		d->head = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < ELEMENTSOF(d->signals); i++)
		event_freep(&d->signals[i]);
	event_freep(&d->watchdog);
	event_freep(&d->stop_timer);
	event_freep(&d->ready_timer);
	event_freep(&d->expiry_timer);
	closep(&d->mark_fd);
	if (d->base)
		event_base_free(d->base);
	free(d->server_id);
	config_free(&d->cfg);
}

int daemon_run(struct config *cfg, const char *config_path)
{
	struct daemon d = { .config_path = config_path, .worker = { .fd = -1 }, .mark_fd = -1 };
	/* The daemon owns the configuration from here: SIGHUP replaces it. */
	d.cfg = *cfg;
	*cfg = (struct config){ 0 };
	d.server_id = config_server_id(&d.cfg);
	d.base = event_base_new();
	int r = d.base ? daemon_signals(&d) : -ENOMEM;
	if (r == 0)
		r = daemon_watchdog(&d);
	if (r == 0 && daemon_recover(&d) < 0)
		log_warnx("an interrupted task could not be rolled back fully; its backups are kept");
	if (r == 0) {
		d.waiting_source = d.cfg.url[0] != '\0';
		daemon_sources_start(&d);
		if (!d.cp)
			d.waiting_source = false;
		struct timeval limit = { READY_WAIT_S, 0 };
		d.ready_timer = evtimer_new(d.base, on_ready_timer, &d);
		d.expiry_timer = evtimer_new(d.base, on_expiry_timer, &d);
		if (!d.ready_timer || !d.expiry_timer || evtimer_add(d.ready_timer, &limit) < 0)
			r = -ENOMEM;
		d.mark_fd = cli_daemon_mark(&d.cfg);
		if (d.mark_fd == -EBUSY)
			log_warnx("another kps-agent daemon runs on %s", d.cfg.state_dir);
	}
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
