/* kps-agent run: the monitor (daemon.h). One libevent loop: the network
 * side's tasks (daemon_net.c) go into the queue (queue.c), each result
 * back by the route its task came; READY=1, the watchdog, signals, the
 * key expiry timer. */
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

#define STOP_GRACE_MS 5000	/* SIGTERM: how long the task in hand may finish */
#define READY_WAIT_S 60		/* READY=1 at the latest, whatever the control plane does */

static void daemon_expiry(struct daemon *d);

void daemon_event_free(struct event **ev)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
}

static void daemon_status(struct daemon *d)
{
	sd_notifyf(0, "STATUS=%s; %lu applied, %lu failed, %zu queued",
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
	daemon_status(d);
	if (d->stopping && queue_idle(d->queue))
		event_base_loopexit(d->base, NULL);
	event_active(d->idle_ev, EV_TIMEOUT, 0);
}

/* After each job, and when the queue empties: ready, expiry. */
static void daemon_idle_check(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (!queue_idle(d->queue))
		return;
	daemon_check_ready(d);
	daemon_expiry(d);
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
 * refuses them already): a timer for the next one, none while none is
 * ahead. Runs between tasks: daemon_idle_check calls it again after each. */
static void daemon_expiry(struct daemon *d)
{
	int64_t now = (int64_t)time(NULL), next = 0;
	if (!queue_idle(d->queue) || d->stopping || !d->expiry_timer)
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

static void daemon_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
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
	sd_notify(0, "RELOADING=1");
	bool same_socket = streq(cfg.socket, d->cfg.socket);
	config_free(&d->cfg);
	d->cfg = cfg;
	free(d->server_id);
	d->server_id = config_server_id(&d->cfg);
	queue_set_config(d->queue, &d->cfg);
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
	/* The rollback's frame: no task_id (the worker finds it in the
	 * backups), then the message. */
	static const char why[] = "\0the agent stopped in the middle of this task; it was rolled back";
	struct job *j = job_new(why, sizeof(why) - 1, 0, 0, 0, "");
	if (!j)
		return -ENOMEM;
	return queue_push(d->queue, j);
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
	d->idle_ev = event_new(d->base, -1, 0, daemon_idle_check, d);
	d->queue = queue_new(d->base, &d->cfg, d->self_fd, daemon_done, d);
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
