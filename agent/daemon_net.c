/* The monitor's side of the network side (daemon_int.h): starts it as a
 * fresh exec, restarts it when it ends, and takes from it only what it
 * would take from anyone: a frame of a known type and size, a task it
 * parses itself, an acknowledgement of a result it handed over, a request
 * to open the one device the configuration names. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "chansock.h"
#include "daemon_int.h"
#include "log.h"
#include "netside.h"
#include "worker.h"

#define NET_RESTART_MAX_S 30		/* the restart's backoff after crashes */
#define NET_DEVICE_EVERY_MS 200		/* the device is opened at most this often */
#define NET_STOP_WAIT_MS 2000		/* SIGTERM, then SIGKILL */
#define NET_FRAME_MAX ((size_t)TASK_MAX_BYTES + 8)

static void net_start_cb(evutil_socket_t fd, short what, void *arg);
static void net_closed_cb(evutil_socket_t fd, short what, void *arg);

void daemon_net_init(struct daemon *d)
{
	d->net = (struct daemon_net){ .listen_fd = -1, .pid = 0 };
}

static void net_answer_refusal(struct daemon *d, uint32_t tag, const char *task_id, enum error_code code,
			       const char *msg)
{
	struct result res;
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", task_id);
	result_set_server_id(&res, d->server_id ? d->server_id : "");
	result_fail(&res, code, "%s", msg);
	_cleanup_free_ char *json = result_to_json(&res);
	result_free(&res);
	struct job j = { .route = MSGFRAME_ROUTE_CHANNEL, .tag = tag, .gen = d->net.gen };
	daemon_net_answer(d, &j, json ? json : "");
}

static void net_task(struct daemon *d, const char *payload, size_t len)
{
	if (len < 8) {
		log_warnx("network side: a task frame without its route; dropped");
		return;
	}
	enum msgframe_route route = (enum msgframe_route)msgframe_get32(payload);
	uint32_t tag = msgframe_get32(payload + 4);
	const char *text = payload + 8;
	size_t tlen = len - 8;
	if (route != MSGFRAME_ROUTE_CONTROL_PLANE && route != MSGFRAME_ROUTE_CHANNEL) {
		log_warnx("network side: a task on route %u, which does not exist; dropped", (unsigned)route);
		return;
	}
	char id[TASK_ID_MAX + 1];
	/* For matching the same task delivered again and for reporting a
	 * worker that never answered; the worker parses the whole task. */
	task_peek_id(text, tlen, id);
	/* Delivered again while queued or in hand: one run, one result. */
	if (route == MSGFRAME_ROUTE_CONTROL_PLANE && id[0] && queue_has(d->queue, id)) {
		log_debug("control plane: task %s is already queued", id);
		return;
	}
	struct job *j = job_new(text, tlen, route, tag, d->net.gen, id);
	if (!j) {
		if (route == MSGFRAME_ROUTE_CHANNEL)
			net_answer_refusal(d, tag, id, ERR_IO_ERROR, "the agent could not queue this task");
		return;
	}
	if (queue_push(d->queue, j) == 0) {
		d->net.queue_full = false;
		return;
	}
	job_free(j);
	if (!d->net.queue_full)
		log_warnx("the task queue is full; refusing tasks until it drains");
	d->net.queue_full = true;
	if (route == MSGFRAME_ROUTE_CHANNEL)
		net_answer_refusal(d, tag, id, ERR_IO_ERROR, "the agent's queue is full");
}

/* Only an acknowledgement of a result handed over takes one out. */
static void net_posted(struct daemon *d, const char *id, size_t len)
{
	for (size_t i = 0; i < DAEMON_POSTS_MAX; i++) {
		if (!d->net.posted[i][0] || strlen(d->net.posted[i]) != len || memcmp(d->net.posted[i], id, len) != 0)
			continue;
		int r = journal_outbox_remove(&d->journal, d->net.posted[i]);
		if (r < 0 && r != -ENOENT)
			log_warnx("cannot remove the result of task %s from the outbox: %s", d->net.posted[i],
				  strerror(-r));
		d->net.posted[i][0] = '\0';
		daemon_net_feed(d);
		return;
	}
	log_warnx("network side: acknowledged a result it was not given; ignored");
}

static void net_device(struct daemon *d)
{
	uint8_t err[4];
	int64_t now = now_ms();
	int fd = -1, e = 0;
	if (!d->cfg.device[0])
		e = ENODEV;
	else if (now - d->net.device_opened_ms < NET_DEVICE_EVERY_MS)
		e = EAGAIN;
	else if ((fd = open(d->cfg.device, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		e = errno;
	d->net.device_opened_ms = now;
	msgframe_put32(err, (uint32_t)e);
	int r = link_send(d->net.link, MSGFRAME_MON_DEVICE, err, sizeof(err), NULL, 0, fd);
	if (r < 0)
		log_warnx("cannot hand %s to the network side: %s", d->cfg.device, strerror(-r));
	closep(&fd);
}

static void net_frame(void *arg, const struct msgframe *f, const char *payload, int fd)
{
	struct daemon *d = arg;
	closep(&fd);
	switch (f->type) {
	case MSGFRAME_NET_TASK:
		net_task(d, payload, f->len);
		break;
	case MSGFRAME_NET_SETTLED:
		if (d->waiting_source) {
			d->waiting_source = false;
			daemon_check_ready(d);
		}
		break;
	case MSGFRAME_NET_POSTED:
		net_posted(d, payload, f->len);
		break;
	case MSGFRAME_NET_DEVICE:
		net_device(d);
		break;
	default:
		break;
	}
}

static void net_closed(void *arg, int err)
{
	struct daemon *d = arg;
	if (d->stopping || d->net.restart_now)
		;
	else if (err)
		log_warnx("network side: %s; starting a new one",
			  err == -EBADMSG ? "sent a frame it may not send" :
			  err == -EMSGSIZE ? "sent a frame over the size limit" :
			  err == -ECONNRESET ? "ended its link inside a frame (cut short)" : strerror(-err));
	else
		log_warnx("network side: closed its link; starting a new one");
	d->net.ended = true;
	event_active(d->net.closed_ev, EV_TIMEOUT, 0);
}

/* From the loop: the link is not freed inside its own callback. */
static void net_closed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	link_free(d->net.link);
	d->net.link = NULL;
	if (d->net.pid > 0)
		kill(d->net.pid, SIGTERM);
}

static int net_spawn(struct daemon *d)
{
	struct daemon_net *n = &d->net;
	int fd;
	/* OpenSSL only for an https control plane (helper.h). */
	int exe = strncmp(d->cfg.url, "https://", 8) == 0 ? d->net_tls_fd : d->net_fd;
	int r = worker_spawn(exe, "kps-agent-net", log_debug_enabled(), &n->listen_fd, n->listen_fd >= 0 ? 1 : 0,
			     &n->pid, &fd);
	if (r < 0)
		return r;
	unsigned types = 1U << MSGFRAME_NET_TASK | 1U << MSGFRAME_NET_SETTLED | 1U << MSGFRAME_NET_POSTED |
			 1U << MSGFRAME_NET_DEVICE;
	n->link = link_new(d->base, fd, types, 0, NET_FRAME_MAX, net_frame, net_closed, d);
	if (!n->link)
		return -ENOMEM;
	r = link_send(n->link, MSGFRAME_CONFIG, d->cfg.settings.data, d->cfg.settings.len, NULL, 0, -1);
	if (r < 0)
		return r;
	n->gen++;
	n->ended = false;
	memset(n->posted, 0, sizeof(n->posted));
	daemon_net_feed(d);
	return 0;
}

static void net_schedule(struct daemon *d, unsigned s)
{
	struct timeval tv = { s, 0 };
	if (evtimer_add(d->net.restart_timer, &tv) < 0)
		log_warnx("network side: cannot arm the restart timer");
}

static void net_start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->stopping || d->net.pid > 0)
		return;
	int r = net_spawn(d);
	if (r < 0) {
		log_warnx("cannot start the network side: %s", strerror(-r));
		net_schedule(d, NET_RESTART_MAX_S);
	}
}

static void net_open_socket(struct daemon *d)
{
	struct daemon_net *n = &d->net;
	bool bound;
	if (!d->cfg.socket[0])
		return;
	n->listen_fd = chansock_open(d->cfg.socket, &bound);
	if (n->listen_fd < 0) {
		log_warnx("channel: cannot listen on %s: %s", d->cfg.socket, chansock_strerror(n->listen_fd));
		n->listen_fd = -1;
		return;
	}
	if (bound)
		n->bound_path = strdup(d->cfg.socket);
	log_info("channel: listening on %s%s", d->cfg.socket, bound ? "" : " (socket activation)");
}

static void net_close_socket(struct daemon *d)
{
	struct daemon_net *n = &d->net;
	closep(&n->listen_fd);
	n->listen_fd = -1;
	if (n->bound_path)
		unlink(n->bound_path);
	free(n->bound_path);
	n->bound_path = NULL;
}

int daemon_net_start(struct daemon *d, bool open_socket)
{
	struct daemon_net *n = &d->net;
	n->restart_timer = evtimer_new(d->base, net_start_cb, d);
	n->closed_ev = event_new(d->base, -1, 0, net_closed_cb, d);
	if (!n->restart_timer || !n->closed_ev)
		return -ENOMEM;
	if (open_socket)
		net_open_socket(d);
	int r = net_spawn(d);
	if (r < 0)
		log_warnx("cannot start the network side: %s", strerror(-r));
	return r;
}

void daemon_net_restart(struct daemon *d, bool new_socket)
{
	if (new_socket) {
		net_close_socket(d);
		net_open_socket(d);
	}
	d->net.restart_now = true;
	if (d->net.pid > 0)
		kill(d->net.pid, SIGTERM);
	else
		net_schedule(d, 0);
}

void daemon_net_exited(struct daemon *d, int status)
{
	struct daemon_net *n = &d->net;
	n->pid = 0;
	if (n->link) {
		link_free(n->link);
		n->link = NULL;
	}
	if (d->stopping)
		return;
	bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (n->restart_now) {
		n->restart_now = false;
		n->crashes = 0;
		net_schedule(d, 0);
		return;
	}
	/* Killed by us after its link ended: that was logged. */
	bool ours = n->ended && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
	if (WIFSIGNALED(status) && !ours)
		log_warnx("network side: killed by signal %d%s; starting a new one", WTERMSIG(status),
			  WTERMSIG(status) == SIGSYS ? " (a system call its filter does not allow)" : "");
	else if (!clean)
		log_warnx("network side: exited with status %d; starting a new one", WEXITSTATUS(status));
	else if (!n->ended)
		log_warnx("network side: exited without being asked to; starting a new one");
	unsigned s = n->crashes ? 1U << (n->crashes < 5 ? n->crashes : 5) : 1;
	n->crashes++;
	net_schedule(d, s < NET_RESTART_MAX_S ? s : NET_RESTART_MAX_S);
}

void daemon_net_stop(struct daemon *d)
{
	struct daemon_net *n = &d->net;
	if (n->link) {
		link_free(n->link);
		n->link = NULL;
	}
	if (n->pid > 0) {
		kill(n->pid, SIGTERM);
		int status;
		for (int waited = 0; waitpid(n->pid, &status, WNOHANG) == 0; waited += 10) {
			if (waited >= NET_STOP_WAIT_MS) {
				kill(n->pid, SIGKILL);
				waitpid(n->pid, &status, 0);
				break;
			}
			usleep(10000);
		}
		n->pid = 0;
	}
	net_close_socket(d);
}

void daemon_net_free(struct daemon *d)
{
	daemon_event_free(&d->net.restart_timer);
	daemon_event_free(&d->net.closed_ev);
}

void daemon_net_answer(struct daemon *d, const struct job *j, const char *json)
{
	uint8_t tag[4];
	if (!d->net.link || j->gen != d->net.gen)
		return;	/* its client went with the network side that took it */
	msgframe_put32(tag, j->tag);
	int r = link_send(d->net.link, MSGFRAME_MON_RESULT, tag, sizeof(tag), json, strlen(json), -1);
	if (r < 0)
		log_warnx("cannot hand task %s's result to the network side: %s", j->task_id, strerror(-r));
}

static bool net_is_posted(const struct daemon *d, const char *id)
{
	for (size_t i = 0; i < DAEMON_POSTS_MAX; i++)
		if (streq(d->net.posted[i], id))
			return true;
	return false;
}

void daemon_net_feed(struct daemon *d)
{
	_cleanup_strv_ struct strv ids = { 0 };
	if (!d->net.link || d->stopping || !d->cfg.url[0])
		return;
	int r = journal_outbox_list(&d->journal, &ids);
	if (r < 0) {
		log_warnx("cannot list the outbox: %s", strerror(-r));
		return;
	}
	for (size_t i = 0, slot = 0; i < ids.n; i++) {
		if (!str_is_token(ids.v[i], TASK_ID_MAX) || net_is_posted(d, ids.v[i]))
			continue;
		while (slot < DAEMON_POSTS_MAX && d->net.posted[slot][0])
			slot++;
		if (slot == DAEMON_POSTS_MAX)
			return;
		_cleanup_free_ char *json = NULL;
		size_t len = 0;
		if (journal_outbox_get(&d->journal, ids.v[i], &json, &len) < 0)
			continue;
		r = link_send(d->net.link, MSGFRAME_MON_POST, ids.v[i], strlen(ids.v[i]) + 1, json, len, -1);
		if (r < 0)
			return;
		snprintf(d->net.posted[slot], sizeof(d->net.posted[slot]), "%s", ids.v[i]);
	}
}
