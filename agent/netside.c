/* The network side (netside.h): sources in, frames to the monitor out. */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>

#include <event2/event.h>

#include "channel.h"
#include "controlplane.h"
#include "link.h"
#include "log.h"
#include "netside.h"
#include "privdrop.h"
#include "source.h"
#include "task.h"
#include "worker.h"

/* What the monitor sends: a result line, a result to post (its task_id
 * first), the device. */
#define NETSIDE_DRAIN_S 10	/* stopping: how long a channel line may wait for its result */
#define NETSIDE_FRAME_MAX ((size_t)CHANNEL_RESULT_MAX + TASK_ID_MAX + 1)

struct netside {
	struct config cfg;
	char *server_id;
	struct event_base *base;
	struct link *link;
	struct source src;	/* what the sources are handed */
	struct channel *ch;
	struct controlplane *cp;
	struct event *signals[3];
	struct event *drain;	/* stopping: until the channel's lines are answered */
	int64_t drain_until_ms;
	int listen_fd;
};

static int netside_submit(void *arg, enum msgframe_route route, uint32_t tag, const char *text, size_t len)
{
	struct netside *n = arg;
	uint8_t head[8];
	if (len > (size_t)TASK_MAX_BYTES)
		return -EMSGSIZE;
	msgframe_put32(head, (uint32_t)route);
	msgframe_put32(head + 4, tag);
	return link_send(n->link, MSGFRAME_NET_TASK, head, sizeof(head), text, len, -1);
}

static void netside_settled(void *arg)
{
	struct netside *n = arg;
	int r = link_send(n->link, MSGFRAME_NET_SETTLED, NULL, 0, NULL, 0, -1);
	if (r < 0)
		log_warnx("cannot tell the monitor the control plane answered: %s", strerror(-r));
}

static void netside_posted(void *arg, const char *task_id)
{
	struct netside *n = arg;
	int r = link_send(n->link, MSGFRAME_NET_POSTED, task_id, strlen(task_id), NULL, 0, -1);
	if (r < 0)
		log_warnx("cannot tell the monitor task %s's result was posted: %s", task_id, strerror(-r));
}

static int netside_open_device(void *arg)
{
	struct netside *n = arg;
	return link_send(n->link, MSGFRAME_NET_DEVICE, NULL, 0, NULL, 0, -1);
}

static void netside_post(struct netside *n, const char *payload, size_t len)
{
	size_t id_len = strnlen(payload, len);
	if (id_len == len || !str_is_token(payload, TASK_ID_MAX)) {
		log_warnx("the monitor sent a result to post without a task id; dropped");
		return;
	}
	if (!n->cp)
		return;	/* not polling: the outbox waits for a control plane */
	int r = controlplane_post(n->cp, payload, payload + id_len + 1, len - id_len - 1);
	if (r < 0)
		log_warnx("control plane: cannot queue the result of task %s: %s", payload, strerror(-r));
}

static void netside_frame(void *arg, const struct msgframe *f, const char *payload, int fd)
{
	struct netside *n = arg;
	if (f->type == MSGFRAME_MON_DEVICE) {
		int err = f->len >= 4 ? (int)msgframe_get32(payload) : EPROTO;
		if (n->ch)
			channel_device_opened(n->ch, err ? -1 : fd, err ? -err : 0);
		else if (fd >= 0)
			close(fd);
		if (err && fd >= 0)
			close(fd);
		return;
	}
	if (f->len < 4)
		return;
	if (f->type == MSGFRAME_MON_RESULT && n->ch)
		channel_result(n->ch, msgframe_get32(payload), payload + 4, f->len - 4);
	else if (f->type == MSGFRAME_MON_POST)
		netside_post(n, payload, f->len);
}

static void netside_closed(void *arg, int err)
{
	struct netside *n = arg;
	if (err)
		log_warnx("the link to the monitor failed: %s; stopping", strerror(-err));
	event_base_loopexit(n->base, NULL);
}

static void netside_drain(evutil_socket_t fd, short what, void *arg)
{
	struct netside *n = arg;
	(void)fd;
	(void)what;
	if (!channel_busy(n->ch))
		event_base_loopexit(n->base, NULL);
	else if (now_ms() >= n->drain_until_ms) {
		log_warnx("network side: stopping with channel lines unanswered after %d s", NETSIDE_DRAIN_S);
		event_base_loopexit(n->base, NULL);
	}
}

/* SIGTERM (a reload or a stop): nothing new is taken, neither a poll nor
 * a client nor a line, but a line already handed over still gets its
 * result, for NETSIDE_DRAIN_S at most. The monitor starts the next
 * network side once this one has ended, so no line is lost between them. */
static void netside_signal(evutil_socket_t sig, short what, void *arg)
{
	struct netside *n = arg;
	static const struct timeval tick = { 0, 50000 };	/* 50 ms */
	(void)what;
	/* The monitor reloads by starting a new network side. */
	if (sig == SIGHUP || n->drain)
		return;
	controlplane_free(n->cp);
	n->cp = NULL;
	channel_quiesce(n->ch);
	n->drain_until_ms = now_ms() + (int64_t)NETSIDE_DRAIN_S * 1000;
	n->drain = event_new(n->base, -1, EV_PERSIST, netside_drain, n);
	if (!n->drain || event_add(n->drain, &tick) < 0)
		event_base_loopexit(n->base, NULL);
	else
		netside_drain(-1, 0, n);
}

static int netside_setup(struct netside *n)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
		n->signals[i] = evsignal_new(n->base, sigs[i], netside_signal, n);
		if (!n->signals[i] || evsignal_add(n->signals[i], NULL) < 0)
			return -ENOMEM;
	}
	unsigned types = 1U << MSGFRAME_MON_RESULT | 1U << MSGFRAME_MON_POST | 1U << MSGFRAME_MON_DEVICE;
	n->link = link_new(n->base, NETSIDE_LINK_FD, types, 1U << MSGFRAME_MON_DEVICE, NETSIDE_FRAME_MAX,
			   netside_frame, netside_closed, n);
	if (!n->link)
		return -ENOMEM;
	/* Everything that needs a file is opened now: the token, the CA
	 * bundle, the resolver's files. After the drop there is no file. */
	n->src = (struct source){ .base = n->base, .cfg = &n->cfg, .server_id = n->server_id, .arg = n,
				  .submit = netside_submit, .settled = netside_settled, .posted = netside_posted,
				  .open_device = netside_open_device };
	n->ch = channel_new(&n->src, TAKE_FD(n->listen_fd));
	n->cp = controlplane_new(&n->src);
	return 0;
}

static void netside_free(struct netside *n)
{
	controlplane_free(n->cp);
	channel_free(n->ch);
	link_free(n->link);
	if (n->drain)
		event_free(n->drain);
	for (size_t i = 0; i < ELEMENTSOF(n->signals); i++)
		if (n->signals[i])
			event_free(n->signals[i]);
	if (n->base)
		event_base_free(n->base);
	closep(&n->listen_fd);
	free(n->server_id);
	config_free(&n->cfg);
}

int netside_main(void)
{
	struct netside n = { .listen_fd = -1 };
	prctl(PR_SET_NAME, "kps-agent-net", 0, 0, 0);
	/* What the monitor runs on, not what the file says now. */
	int r = worker_config(NETSIDE_LINK_FD, &n.cfg);
	if (r < 0) {
		config_free(&n.cfg);
		return 2;
	}
	if (fcntl(NETSIDE_LISTEN_FD, F_GETFD) >= 0)
		n.listen_fd = NETSIDE_LISTEN_FD;
	n.server_id = config_server_id(&n.cfg);
	n.base = event_base_new();
	r = n.base ? netside_setup(&n) : -ENOMEM;
	if (r == 0)
		r = privdrop_network_side(n.cfg.unprivileged_user);
	if (r < 0) {
		log_warnx("network side: cannot start: %s", strerror(-r));
		netside_free(&n);
		return 2;
	}
	event_base_dispatch(n.base);
	netside_free(&n);
	return 0;
}
