/* kps-agent run: the monitor (daemon.h). One libevent loop: the network
 * side's tasks (daemon_net.c) go into the queue (queue.c), each result
 * back by the route its task came; READY=1, the watchdog, signals, the
 * key expiry timer. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "applyflags.h"
#include "daemon_int.h"
#include "helper.h"
#include "log.h"
#include "managed.h"
#include "sdnotify.h"
#include "version.h"

#define STOP_GRACE_MS 5000	/* SIGTERM: how long the task in hand may finish */
#define READY_WAIT_S 60		/* READY=1 at the latest, whatever the control plane does */
#define EXPIRY_RETRY_S 60	/* a sweep that did not answer: the next try */

static void daemon_expiry(struct daemon *d, const struct sweep_report *swept);

void daemon_event_free(struct event **ev)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
}

static void daemon_status(struct daemon *d)
{
	sdnotify_sendf("STATUS=%s; %lu applied, %lu failed, %zu queued",
		   d->stopping ? "stopping" : !queue_idle(d->queue) ? "applying a task" : "waiting for tasks",
		   d->applied, d->failed, queue_length(d->queue));
}

/* A job is done: its result goes back by the route it came (a channel's
 * line, or the outbox for the control plane). */
static void daemon_done(void *arg, const struct job *j, const struct result *res, const char *json)
{
	struct daemon *d = arg;
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
}

/* A job's worker ended: the next expiry, ready, stop. */
static void daemon_ended(void *arg, const struct job *j, const struct sweep_report *swept)
{
	struct daemon *d = arg;
	(void)j;
	daemon_expiry(d, swept);
	daemon_status(d);
	if (d->stopping && queue_idle(d->queue))
		event_base_loopexit(d->base, NULL);
	event_active(d->idle_ev, EV_TIMEOUT, 0);
}

/* After each job, and when the queue empties: ready. */
static void daemon_idle_check(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (queue_idle(d->queue))
		daemon_check_ready(d);
}

static void daemon_ready(struct daemon *d)
{
	if (d->ready)
		return;
	d->ready = true;
	sdnotify_send("READY=1");
	daemon_status(d);
}

/* Ready once nothing that was waiting at boot is left to apply. */
void daemon_check_ready(struct daemon *d)
{
	if (!d->ready && !d->waiting_source && queue_idle(d->queue))
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
 * refuses them already). The monitor never reads a user's file: every
 * worker sweeps after its task and says when the next key expires (swept),
 * and this timer queues a sweep of its own for then. swept is NULL when the
 * worker said nothing: look again later. */
static void daemon_expiry(struct daemon *d, const struct sweep_report *swept)
{
	int64_t now = (int64_t)time(NULL), at;
	if (d->stopping || !d->expiry_timer)
		return;
	if (swept && swept->status == 0)
		at = swept->next;
	else if (swept && swept->status == -EBUSY)
		at = now + 1;	/* an apply from the command line held the lock */
	else
		at = now + EXPIRY_RETRY_S;
	evtimer_del(d->expiry_timer);
	if (at <= 0)
		return;
	struct timeval tv = { (time_t)(at > now ? at - now + 1 : 1), 0 };
	if (evtimer_add(d->expiry_timer, &tv) < 0)
		log_warnx("expired keys: cannot arm the timer");
}

/* At start: a sweep soon when the index names anyone (a key may have
 * expired while the agent was down), none otherwise. */
static void daemon_expiry_start(struct daemon *d)
{
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/%s", d->cfg.state_dir, MANAGED_INDEX_DIR);
	DIR *dir = opendir(path);
	if (!dir)
		return;
	struct dirent *de;
	bool any = false;
	while (!any && (de = readdir(dir)))
		any = de->d_name[0] != '.';
	closedir(dir);
	struct timeval soon = { 1, 0 };
	if (any && evtimer_add(d->expiry_timer, &soon) < 0)
		log_warnx("expired keys: cannot arm the timer");
}

/* The task in hand, if any, sweeps after it anyway. */
static void on_expiry_timer(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->stopping || !queue_idle(d->queue))
		return;
	struct job *j = job_sweep_new();
	if (!j || queue_push(d->queue, j) < 0) {
		job_free(j);
		daemon_expiry(d, NULL);
	}
}

static void daemon_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	sdnotify_send("STOPPING=1");
	log_info("stopping");
	daemon_status(d);
	daemon_net_stop(d);
	queue_stop(d->queue, STOP_GRACE_MS);
	if (queue_idle(d->queue))
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
	sdnotify_send("RELOADING=1");
	bool same_socket = streq(cfg.socket, d->cfg.socket);
	config_free(&d->cfg);
	d->cfg = cfg;
	free(d->server_id);
	d->server_id = config_server_id(&d->cfg);
	queue_set_config(d->queue, &d->cfg);
	daemon_net_restart(d, !same_socket);
	log_info("configuration reloaded from %s", path);
	sdnotify_send("READY=1");
	daemon_status(d);
}

static void daemon_reap(struct daemon *d)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == d->net.pid)
			daemon_net_exited(d, status);
		else
			queue_reaped(d->queue, pid);
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
	sdnotify_send("WATCHDOG=1");
}

static int daemon_watchdog(struct daemon *d)
{
	uint64_t usec = sdnotify_watchdog_usec();
	if (usec == 0)
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
	/* The rollback's frame: no task_id (the worker finds it in the
	 * backups), then the message. */
	static const char why[] = "\0the agent stopped in the middle of this task; it was rolled back";
	struct job *j = job_new(why, sizeof(why) - 1, 0, 0, 0, "");
	if (!j)
		return -ENOMEM;
	return queue_push(d->queue, j);
}

/* The running daemon marks itself with a lock in the state dir that
 * `status` tests; the fd stays open for the daemon's life. */
static int daemon_mark(const struct config *cfg)
{
	char path[CONFIG_PATH_MAX + 32], pid[32];
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, DAEMON_LOCK);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void daemon_free(struct daemon *d)
{
	daemon_net_stop(d);
	queue_free(d->queue);
	daemon_net_free(d);
	for (size_t i = 0; i < ELEMENTSOF(d->signals); i++)
		daemon_event_free(&d->signals[i]);
	daemon_event_free(&d->watchdog);
	daemon_event_free(&d->ready_timer);
	daemon_event_free(&d->expiry_timer);
	daemon_event_free(&d->idle_ev);
	closep(&d->mark_fd);
	closep(&d->tool_fd);
	closep(&d->net_fd);
	closep(&d->net_tls_fd);
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
	/* Workers and network sides are these very files, even once a
	 * package upgrade replaced them on disk. */
	d->tool_fd = helper_open(HELPER_TOOL);
	if (d->tool_fd < 0) {
		log_warnx("cannot find %s: %s", HELPER_TOOL, strerror(-d->tool_fd));
		return d->tool_fd;
	}
	d->net_fd = helper_open(HELPER_NET);
	if (d->net_fd < 0) {
		log_warnx("cannot find %s: %s", HELPER_NET, strerror(-d->net_fd));
		return d->net_fd;
	}
	d->net_tls_fd = helper_open(HELPER_NET_TLS);
	if (d->net_tls_fd < 0) {
		log_warnx("cannot find %s: %s", HELPER_NET_TLS, strerror(-d->net_tls_fd));
		return d->net_tls_fd;
	}
	d->base = event_base_new();
	if (!d->base)
		return -ENOMEM;
	d->idle_ev = event_new(d->base, -1, 0, daemon_idle_check, d);
	d->queue = queue_new(d->base, &d->cfg, d->tool_fd, daemon_done, daemon_ended, d);
	if (!d->idle_ev || !d->queue)
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
	d->mark_fd = daemon_mark(&d->cfg);
	if (d->mark_fd == -EBUSY)
		log_warnx("another kps-agent daemon runs on %s", d->cfg.state_dir);
	return daemon_net_start(d, true);
}

int daemon_run(struct config *cfg, const char *config_path)
{
	struct daemon d = { .config_path = config_path, .mark_fd = -1, .tool_fd = -1, .net_fd = -1, .net_tls_fd = -1 };
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
	daemon_expiry_start(&d);
	event_base_dispatch(d.base);
	log_info("stopped: %lu applied, %lu failed", d.applied, d.failed);
	daemon_free(&d);
	return 0;
}
