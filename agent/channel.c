/* The local channel: a unix socket for root and a virtio-serial port for
 * the host. Both speak newline-delimited JSON, one task per line in and one
 * result per line out, in the order the lines came. Lines may carry a
 * password or a private key, so every byte that leaves an input buffer is
 * wiped where it was. */
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "channel.h"
#include "devport.h"
#include "evwipe.h"
#include "framing.h"
#include "log.h"
#include "source.h"
#include "task.h"

#define CHANNEL_CLIENTS_MAX 64
/* Past this a client is not read until it takes its results: a client that
 * never reads cannot make the agent hold an unbounded backlog. Above the
 * monitor's queue, so one client can still find that queue full. */
#define CHANNEL_SLOTS_MAX ((size_t)2048)
#define CHANNEL_OUTPUT_MAX ((size_t)1024 * 1024)
#define CHANNEL_RETRY_S 1
#define CHANNEL_LINE_MAX ((size_t)TASK_MAX_BYTES + 2)	/* "\r\n" */

/* Used when even a result line cannot be allocated: the client still gets
 * one line per task, in order. */
static const char channel_nomem[] = "{\"task_id\":\"\",\"server_id\":\"\",\"status\":\"FAILED\","
				    "\"error_code\":\"KPS.AGENT.IO_ERROR\",\"error_msg\":\"the agent is out of memory\"}";

/* One task line of a client: pending until its result arrives. */
struct channel_slot {
	struct channel_slot *next;
	struct channel_client *cl;
	uint32_t tag;		/* the monitor's answer names it */
	char *json;		/* NULL while pending; may be channel_nomem */
};

/* Lines in the order they came. */
struct channel_queue {
	struct channel_slot *head, *tail;
	size_t n;
};

struct channel_client {
	struct channel_client *next;
	struct channel *c;
	struct bufferevent *bev;
	struct channel_queue q;
	struct framer framer;
	bool paused;
	bool eof;		/* a socket client half-closed: answer, then close */
	bool device;
	bool seen_input;
	char name[96];
};

struct channel {
	const struct source *src;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *accept_timer;
	uint32_t last_tag;
	struct channel_client *clients;
	size_t nclients;
	char *line;
	char *device;		/* owned: a SIGHUP frees the config it came from */
	struct devport *dev;
	/* The host's lines still unanswered when its reader ended: a port
	 * has one peer, whatever reader is on it, so the next reader takes
	 * them over and answers them in order. */
	struct channel_queue dev_kept;
	bool queue_full;	/* logged once per episode */
	bool quiet;		/* stopping: no new client, no new line */
};

static void channel_slot_free(struct channel_slot *s)
{
	if (s->json != channel_nomem)
		free(s->json);
	free(s);
}

static void channel_queue_pop(struct channel_queue *q)
{
	struct channel_slot *s = q->head;
	q->head = s->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	channel_slot_free(s);
}

static void channel_queue_push(struct channel_queue *q, struct channel_slot *s)
{
	if (q->tail)
		q->tail->next = s;
	else
		q->head = s;
	q->tail = s;
	q->n++;
}

/* Moves every line of from to the end of to. */
static void channel_queue_move(struct channel_queue *to, struct channel_queue *from)
{
	if (!from->head)
		return;
	if (to->tail)
		to->tail->next = from->head;
	else
		to->head = from->head;
	to->tail = from->tail;
	to->n += from->n;
	*from = (struct channel_queue){ 0 };
}

static void channel_slot_set(struct channel_slot *s, const char *json, size_t len)
{
	s->json = json ? strndup(json, len) : NULL;
	if (!s->json)
		s->json = (char *)channel_nomem;
}

static bool channel_client_full(const struct channel_client *cl)
{
	return cl->q.n >= CHANNEL_SLOTS_MAX ||
	       evbuffer_get_length(bufferevent_get_output(cl->bev)) > CHANNEL_OUTPUT_MAX;
}

/* Reading starts again from the loop, never from here: this may run while
 * the client's own lines are being taken. */
static void channel_client_resume(struct channel_client *cl)
{
	if (!cl->paused || channel_client_full(cl) || cl->c->quiet)
		return;
	cl->paused = false;
	if (!cl->eof)
		bufferevent_enable(cl->bev, EV_READ);
	if (cl->eof || evbuffer_get_length(bufferevent_get_input(cl->bev)) > 0)
		bufferevent_trigger(cl->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Results leave strictly from the head, so a reply known at once waits
 * behind the client's earlier tasks. */
static void channel_client_flush(struct channel_client *cl)
{
	struct channel_slot *s;
	while ((s = cl->q.head) && s->json) {
		if (bufferevent_write(cl->bev, s->json, strlen(s->json)) < 0 || bufferevent_write(cl->bev, "\n", 1) < 0)
			log_warnx("channel: %s: a result could not be queued for sending", cl->name);
		channel_queue_pop(&cl->q);
	}
	channel_client_resume(cl);
}

/* The monitor's answer to one line: the slot it names, wherever its
 * client is; a client that went away is not answered. A line of the
 * monitor's that is not one result line is not passed on. */
void channel_result(struct channel *c, uint32_t tag, const char *json, size_t len)
{
	if (memchr(json, '\n', len) || memchr(json, '\0', len)) {
		log_warnx("channel: the monitor's result for line %u is not one line; dropped", (unsigned)tag);
		return;
	}
	for (struct channel_client *cl = c->clients; cl; cl = cl->next)
		for (struct channel_slot *s = cl->q.head; s; s = s->next)
			if (s->tag == tag && !s->json) {
				channel_slot_set(s, json, len);
				channel_client_flush(cl);
				return;
			}
	for (struct channel_slot *s = c->dev_kept.head; s; s = s->next)
		if (s->tag == tag && !s->json) {
			channel_slot_set(s, json, len);
			return;
		}
}

/* A port's reader ends with lines in flight: they wait for the next. */
static void channel_device_keep(struct channel *c, struct channel_client *cl)
{
	for (struct channel_slot *s = cl->q.head; s; s = s->next)
		s->cl = NULL;
	channel_queue_move(&c->dev_kept, &cl->q);
	while (c->dev_kept.n > CHANNEL_SLOTS_MAX && c->dev_kept.head)
		channel_queue_pop(&c->dev_kept);
}

/* The next reader of the port answers what the last one could not. */
static void channel_device_adopt(struct channel *c, struct channel_client *cl)
{
	if (!c->dev_kept.head)
		return;
	log_debug("channel: %s: %zu line%s of the last session still to answer", cl->name, c->dev_kept.n,
		  c->dev_kept.n == 1 ? "" : "s");
	for (struct channel_slot *s = c->dev_kept.head; s; s = s->next)
		s->cl = cl;
	channel_queue_move(&cl->q, &c->dev_kept);
	channel_client_flush(cl);
}

static struct channel_slot *channel_slot_new(struct channel_client *cl)
{
	struct channel_slot *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cl = cl;
	channel_queue_push(&cl->q, s);
	return s;
}

/* A refusal made here, before the monitor saw the line. */
static void channel_reply(struct channel_client *cl, struct channel_slot *s, enum error_code code, const char *msg)
{
	struct result res;
	result_init(&res);
	const char *sid = cl->c->src->server_id;
	result_set_server_id(&res, sid ? sid : "");
	result_fail(&res, code, "%s", msg);
	_cleanup_free_ char *json = result_to_json(&res);
	result_free(&res);
	channel_slot_set(s, json, json ? strlen(json) : 0);
}

static int channel_client_too_long(struct channel_client *cl)
{
	char msg[64];
	struct channel_slot *s = channel_slot_new(cl);
	if (!s)
		return -ENOMEM;
	log_warnx("channel: %s: refused a task longer than %d bytes", cl->name, TASK_MAX_BYTES);
	snprintf(msg, sizeof(msg), "task longer than %d bytes", TASK_MAX_BYTES);
	channel_reply(cl, s, ERR_INVALID_TASK, msg);
	channel_client_flush(cl);
	return 0;
}

static int channel_client_submit(struct channel_client *cl, const char *line, size_t len)
{
	struct channel *c = cl->c;
	struct channel_slot *s = channel_slot_new(cl);
	if (!s)
		return -ENOMEM;
	if (++c->last_tag == 0)
		c->last_tag = 1;
	s->tag = c->last_tag;
	int r = c->src->submit(c->src->arg, MSGFRAME_ROUTE_CHANNEL, s->tag, line, len);
	if (r == 0) {
		c->queue_full = false;
		return 0;
	}
	if (r == -ENOBUFS) {
		if (!c->queue_full)
			log_warnx("channel: the agent's queue is full; refusing tasks until it drains");
		c->queue_full = true;
		channel_reply(cl, s, ERR_IO_ERROR, "the agent's queue is full");
	} else {
		channel_reply(cl, s, ERR_IO_ERROR, "the agent could not queue this task");
	}
	channel_client_flush(cl);
	return 0;
}

/* One line at the head of input: its task is the first len of n bytes. */
static int channel_client_line(struct channel_client *cl, struct evbuffer *in, size_t n, size_t len)
{
	char *line = cl->c->line;
	evwipe_take(in, line, n);
	int r = channel_client_submit(cl, line, len);
	explicit_bzero(line, n);
	return r;
}

/* Takes every complete line, until the client has too much in flight. */
static int channel_client_lines(struct channel_client *cl)
{
	struct evbuffer *in = bufferevent_get_input(cl->bev);
	while (!channel_client_full(cl)) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return 0;
		struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
		/* Only the line's last two bytes are copied out: making the
		 * buffer contiguous would copy the task and free the old chunks
		 * unwiped. */
		char tail[2] = "";
		size_t end = framer_line_end(avail, eol.pos);
		size_t n = end < 2 ? 1 : 2;
		struct evbuffer_ptr at;
		if (evbuffer_ptr_set(in, &at, end - n, EVBUFFER_PTR_SET) < 0 ||
		    evbuffer_copyout_from(in, &at, tail + 2 - n, n) != (ev_ssize_t)n)
			return -EIO;
		struct frame f = framer_next(&cl->framer, tail, avail, eol.pos, cl->eof);
		explicit_bzero(tail, sizeof(tail));
		int r = 0;
		switch (f.kind) {
		case FRAME_NEED_MORE:
			return 0;
		case FRAME_LINE:
			r = channel_client_line(cl, in, f.take, f.len);
			break;
		case FRAME_TOO_LONG:
			evwipe_take(in, NULL, f.take);
			r = channel_client_too_long(cl);
			break;
		case FRAME_EMPTY:
		case FRAME_SKIP:
			evwipe_take(in, NULL, f.take);
			break;
		}
		if (r < 0)
			return r;
	}
	cl->paused = true;
	bufferevent_disable(cl->bev, EV_READ);
	return 0;
}

static void channel_client_free(struct channel_client *cl)
{
	struct channel *c = cl->c;
	if (cl->device)
		channel_device_keep(c, cl);
	while (cl->q.head)
		channel_queue_pop(&cl->q);
	struct evbuffer *in = bufferevent_get_input(cl->bev);
	evwipe_take(in, NULL, evbuffer_get_length(in));
	bufferevent_free(cl->bev);
	struct channel_client **p = &c->clients;
	while (*p != cl)
		p = &(*p)->next;
	*p = cl->next;
	c->nclients--;
	free(cl);
}

static void channel_client_close(struct channel_client *cl, const char *why, bool eof)
{
	if (cl->device)
		devport_lost(cl->c->dev, bufferevent_getfd(cl->bev), eof, cl->seen_input);
	else
		log_debug("channel: %s: closed (%s)", cl->name, why);
	channel_client_free(cl);
}

/* Only from the loop's own callbacks, where nothing of cl is in use. */
static void channel_client_finish(struct channel_client *cl)
{
	if (cl->eof && !cl->paused && cl->q.n == 0 && evbuffer_get_length(bufferevent_get_input(cl->bev)) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(cl->bev)) == 0)
		channel_client_close(cl, "all answered", false);
}

static void channel_client_read(struct bufferevent *bev, void *arg)
{
	struct channel_client *cl = arg;
	(void)bev;
	cl->seen_input = true;
	if (channel_client_lines(cl) < 0)
		channel_client_close(cl, "out of memory", false);
	else
		channel_client_finish(cl);
}

static void channel_client_written(struct bufferevent *bev, void *arg)
{
	struct channel_client *cl = arg;
	(void)bev;
	channel_client_resume(cl);
	channel_client_finish(cl);
}

/* A socket client that shuts down its side (echo TASK | socat ...) still
 * gets its results; a device at end of file has lost its host. */
static void channel_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct channel_client *cl = arg;
	if (what & BEV_EVENT_ERROR) {
		channel_client_close(cl, strerror(EVUTIL_SOCKET_ERROR()), false);
	} else if ((what & BEV_EVENT_EOF) && cl->device) {
		channel_client_close(cl, "end of file", true);
	} else if (what & BEV_EVENT_EOF) {
		cl->eof = true;
		channel_client_read(bev, cl);
	}
}

/* Takes fd over, closing it on failure. */
static int channel_client_new(struct channel *c, int fd, bool device, const char *name)
{
	struct channel_client *cl = calloc(1, sizeof(*cl));
	struct bufferevent *bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!cl || !bev) {
		free(cl);
		if (bev)
			bufferevent_free(bev);
		else
			close(fd);
		return -ENOMEM;
	}
	*cl = (struct channel_client){ .next = c->clients, .c = c, .bev = bev, .device = device,
				       .framer = { .line_max = CHANNEL_LINE_MAX } };
	snprintf(cl->name, sizeof(cl->name), "%s", name);
	bufferevent_setcb(bev, channel_client_read, channel_client_written, channel_client_event, cl);
	bufferevent_setwatermark(bev, EV_WRITE, CHANNEL_OUTPUT_MAX / 2, 0);
	c->clients = cl;
	c->nclients++;
	/* epoll refuses some files (a regular file named as the device). */
	if (bufferevent_enable(bev, EV_READ) < 0) {
		channel_client_free(cl);
		return -EPERM;
	}
	if (device)
		channel_device_adopt(c, cl);
	return 0;
}

static void channel_accept_again(evutil_socket_t fd, short what, void *arg)
{
	struct channel *c = arg;
	(void)fd;
	(void)what;
	if (!c->quiet)
		evconnlistener_enable(c->listener);
}

void channel_quiesce(struct channel *c)
{
	if (!c)
		return;
	c->quiet = true;
	if (c->listener)
		evconnlistener_disable(c->listener);
	evtimer_del(c->accept_timer);
	for (struct channel_client *cl = c->clients; cl; cl = cl->next)
		bufferevent_disable(cl->bev, EV_READ);
}

bool channel_busy(const struct channel *c)
{
	for (const struct channel_client *cl = c ? c->clients : NULL; cl; cl = cl->next)
		if (cl->q.head || evbuffer_get_length(bufferevent_get_output(cl->bev)) > 0)
			return true;
	return false;
}

/* Out of descriptors: accept would fail at once on every turn of the loop. */
static void channel_accept_error(struct evconnlistener *l, void *arg)
{
	struct channel *c = arg;
	int e = EVUTIL_SOCKET_ERROR();
	log_warnx("channel: accept: %s; pausing for a second", strerror(e));
	struct timeval tv = { CHANNEL_RETRY_S, 0 };
	evconnlistener_disable(l);
	if (evtimer_add(c->accept_timer, &tv) < 0)
		evconnlistener_enable(l);
}

static void channel_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct channel *c = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char name[96];
	(void)l;
	(void)sa;
	(void)salen;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("channel: SO_PEERCRED");
		close(fd);
		return;
	}
	if (cred.uid != 0) {
		log_warnx("channel: refused a peer that is not root (pid %d, uid %u)", (int)cred.pid,
			  (unsigned)cred.uid);
		close(fd);
		return;
	}
	if (c->nclients >= CHANNEL_CLIENTS_MAX) {
		log_warnx("channel: refused pid %d: already %d clients", (int)cred.pid, CHANNEL_CLIENTS_MAX);
		close(fd);
		return;
	}
	snprintf(name, sizeof(name), "client pid %d", (int)cred.pid);
	if (channel_client_new(c, fd, false, name) < 0)
		log_warnx("channel: cannot take %s: out of memory", name);
	else
		log_debug("channel: %s connected", name);
}

static int channel_device_attach(void *arg, int fd)
{
	struct channel *c = arg;
	return channel_client_new(c, fd, true, c->device);
}

/* Opening the port is the monitor's: this side cannot. */
static int channel_device_request(void *arg)
{
	struct channel *c = arg;
	return c->src->open_device(c->src->arg);
}

void channel_device_opened(struct channel *c, int fd, int err)
{
	if (c->dev)
		devport_opened(c->dev, fd, err);
	else if (fd >= 0)
		close(fd);
}

/* The listener the monitor made (bound 0600, or systemd's). */
static int channel_listen(struct channel *c, const char *path, int fd)
{
	c->listener = evconnlistener_new(c->base, channel_accept, c, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, 0,
					 fd);
	if (!c->listener) {
		int e = errno ? errno : ENOMEM;
		close(fd);
		return -e;
	}
	evconnlistener_set_error_cb(c->listener, channel_accept_error);
	log_debug("channel: serving %s", path);
	return 0;
}

void channel_free(struct channel *c)
{
	if (!c)
		return;
	for (struct channel_client *cl = c->clients, *next; cl; cl = next) {
		next = cl->next;
		channel_client_free(cl);
	}
	if (c->listener)
		evconnlistener_free(c->listener);
	while (c->dev_kept.head)
		channel_queue_pop(&c->dev_kept);
	free(c->device);
	if (c->accept_timer)
		event_free(c->accept_timer);
	devport_free(c->dev);
	if (c->line) {
		explicit_bzero(c->line, CHANNEL_LINE_MAX);
		free(c->line);
	}
	free(c);
}

struct channel *channel_new(const struct source *src, int listen_fd)
{
	const struct config *cfg = src->cfg;
	if (!cfg->socket[0] && !cfg->device[0]) {
		closep(&listen_fd);
		return NULL;
	}
	struct channel *c = calloc(1, sizeof(*c));
	if (!c) {
		log_warnx("channel: out of memory");
		closep(&listen_fd);
		return NULL;
	}
	c->src = src;
	c->base = src->base;
	c->device = strdup(cfg->device);
	c->line = malloc(CHANNEL_LINE_MAX);
	c->accept_timer = evtimer_new(c->base, channel_accept_again, c);
	if (!c->device || !c->line || !c->accept_timer) {
		log_warnx("channel: out of memory");
		closep(&listen_fd);
		channel_free(c);
		return NULL;
	}
	/* The device first: once the socket exists, both are served. */
	if (cfg->device[0] &&
	    !(c->dev = devport_new(c->base, cfg->device, channel_device_request, channel_device_attach, c))) {
		log_warnx("channel: out of memory");
		closep(&listen_fd);
		channel_free(c);
		return NULL;
	}
	if (listen_fd >= 0 && channel_listen(c, cfg->socket, listen_fd) < 0) {
		log_warnx("channel: cannot serve %s: %s", cfg->socket, strerror(errno));
		channel_free(c);
		return NULL;
	}
	return c;
}
