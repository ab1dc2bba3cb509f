/* Requests the loop answers later: delayed by --delay-ms, or long polls.
 *
 * evhttp stops reading a connection once it has read a request, so it would
 * not notice a client that goes away while its request is held; the answer
 * would go to a dead socket and, for a poll, its tasks would be lost until
 * redelivery. While a request is held the connection is read with no read
 * callback: an EOF reaches evhttp's event callback, which detaches the
 * request and frees the connection, calling the close callback set here.
 * Bytes the client sends meanwhile wait in the input buffer (bounded by a
 * watermark) for evhttp to read once the answer is out. */
#include <event2/bufferevent.h>

#include "emulator.h"

#define HOLD_INPUT_MAX (BODY_MAX + HEADERS_MAX)

struct hold {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct event *timer;
	hold_fn fire;
	hold_fn gone;
	void *data;
	/* the bufferevent as evhttp had it */
	bufferevent_data_cb readcb;
	bufferevent_data_cb writecb;
	bufferevent_event_cb eventcb;
	void *cbarg;
	short enabled;
	size_t lowmark;
	size_t highmark;
	TAILQ_ENTRY(hold) link;
};

static TAILQ_HEAD(, hold) holds = TAILQ_HEAD_INITIALIZER(holds);

static void hold_free(struct hold *h)
{
	TAILQ_REMOVE(&holds, h, link);
	event_free(h->timer);
	free(h);
}

static void hold_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hold *h = arg;
	(void)fd;
	(void)what;
	h->fire(h);
}

static void hold_closed(struct evhttp_connection *evcon, void *arg)
{
	struct hold *h = arg;
	(void)evcon;
	if (h->gone)
		h->gone(h);
	/* When the client went away, evhttp detached the request and left it
	 * to us; otherwise (evhttp_free) it frees the request itself. */
	if (!evhttp_request_get_connection(h->req))
		evhttp_request_free(h->req);
	hold_free(h);
}

struct hold *hold_new(struct evhttp_request *req, hold_fn fire, hold_fn gone, void *data)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	if (!evcon)
		return NULL;
	struct hold *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->timer = evtimer_new(emu.base, hold_timer_cb, h);
	if (!h->timer) {
		free(h);
		return NULL;
	}
	h->req = req;
	h->evcon = evcon;
	h->fire = fire;
	h->gone = gone;
	h->data = data;
	TAILQ_INSERT_TAIL(&holds, h, link);

	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	bufferevent_getcb(bev, &h->readcb, &h->writecb, &h->eventcb, &h->cbarg);
	h->enabled = bufferevent_get_enabled(bev);
	bufferevent_getwatermark(bev, EV_READ, &h->lowmark, &h->highmark);
	bufferevent_setcb(bev, NULL, h->writecb, h->eventcb, h->cbarg);
	bufferevent_setwatermark(bev, EV_READ, 0, HOLD_INPUT_MAX);
	bufferevent_enable(bev, EV_READ);
	evhttp_connection_set_closecb(evcon, hold_closed, h);
	return h;
}

void *hold_data(const struct hold *h)
{
	return h->data;
}

int hold_arm(struct hold *h, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	return evtimer_add(h->timer, &tv) < 0 ? -ENOMEM : 0;
}

struct evhttp_request *hold_release(struct hold *h)
{
	struct evhttp_request *req = h->req;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(h->evcon);
	evhttp_connection_set_closecb(h->evcon, NULL, NULL);
	bufferevent_setwatermark(bev, EV_READ, h->lowmark, h->highmark);
	bufferevent_setcb(bev, h->readcb, h->writecb, h->eventcb, h->cbarg);
	if (!(h->enabled & EV_READ))
		bufferevent_disable(bev, EV_READ);
	hold_free(h);
	return req;
}

void hold_drop_all(void)
{
	struct hold *h;
	while ((h = TAILQ_FIRST(&holds))) {
		if (h->gone)
			h->gone(h);
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		hold_free(h);
	}
}
