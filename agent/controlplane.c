/* The control plane: a long poll for tasks and a sender for the outbox of
 * results, each a request slot (cphttp.c) over HTTP or HTTPS.
 *
 * Pacing, for a fleet of thousands on one control plane: an idle agent asks
 * once per poll_wait (the server holds the poll that long), then pauses a
 * random part of poll_jitter percent of it; the first poll after start
 * waits such a part too. Agents started in the same second thus drift
 * apart instead of polling in step, and none asks more than once per
 * poll_wait. Failures back off with full jitter; a Retry-After is obeyed. */
#include <arpa/inet.h>
#include <fcntl.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>

#include "controlplane.h"
#include "cphttp.h"
#include "framing.h"
#include "log.h"
#include "source.h"
#include "task.h"

#define CP_TOKEN_MAX 4096
#define CP_POLL_SLACK_S 15		/* past the long poll's wait: the whole request's deadline */
#define CP_POST_TIMEOUT_S 30		/* a result post, start to end */
#define CP_POLL_BODY_MAX (4L * 1024 * 1024)
#define CP_POST_BODY_MAX (64L * 1024)
#define CP_BACKOFF_CAP_MIN_MS 60000U
#define CP_POSTS_MAX 64			/* results held here; the monitor keeps the rest */

/* A result to post, as the monitor sent it. */
struct cp_post {
	struct cp_post *next;
	char id[TASK_ID_MAX + 1];
	char *json;
	size_t len;
};

struct controlplane {
	const struct source *src;
	struct cphttp_peer peer;
	char *host;
	char *host_header;
	char *prefix;				/* the URL's path, no trailing slash */
	char *server_id;
	int poll_wait_s;
	bool settled;				/* the first poll has answered or failed */
	bool reached;				/* a poll succeeded */
	struct secret auth;			/* "Bearer <token>"; empty without a token */
	struct cphttp_slot poll;
	struct cphttp_slot send;
	struct cp_post *head, *tail;		/* oldest first; head is in hand */
	size_t n_posts;
};

static void controlplane_freep(struct controlplane **p)
{
	controlplane_free(*p);
}

/* A random part of poll_jitter percent of poll_wait. */
static unsigned poll_jitter_ms(const struct controlplane *p)
{
	return cphttp_random_ms((unsigned)p->poll_wait_s * 10U * p->peer.jitter_pct);
}

/* {prefix}/v1/servers/{server_id}/tasks[/{task_id}/result], each id one
 * percent-encoded segment. */
static int task_uri(const struct controlplane *p, const char *task_id, struct buf *uri)
{
	int r = buf_puts(uri, p->prefix);
	if (r == 0)
		r = buf_puts(uri, "/v1/servers/");
	if (r == 0)
		r = cphttp_append_segment(uri, p->server_id);
	if (r == 0)
		r = buf_puts(uri, "/tasks");
	if (r == 0 && task_id) {
		r = buf_puts(uri, "/");
		if (r == 0)
			r = cphttp_append_segment(uri, task_id);
		if (r == 0)
			r = buf_puts(uri, "/result");
	}
	return r;
}

/* Copies the body out and wipes libevent's copy: a task may carry a
 * password or a private key. */
static int take_body(struct evbuffer *in, struct buf *out)
{
	size_t len = evbuffer_get_length(in);
	int r = buf_reserve(out, len);
	if (r == 0 && evbuffer_copyout(in, out->data, len) == (ev_ssize_t)len) {
		out->len = len;
		out->data[len] = '\0';
	} else if (r == 0) {
		r = -EIO;
	}
	int n = evbuffer_peek(in, -1, NULL, NULL, 0);
	struct evbuffer_iovec *v = n > 0 ? calloc((size_t)n, sizeof(*v)) : NULL;
	if (v) {
		n = evbuffer_peek(in, -1, NULL, v, n);
		for (int i = 0; i < n; i++)
			explicit_bzero(v[i].iov_base, v[i].iov_len);
		free(v);
	}
	return r;
}

/* Hands each task of {"tasks": [...]} to the monitor: it parses them,
 * this side only splits the answer. Every text made here is wiped;
 * cJSON's own frees are wiped by the process-wide hook. */
struct poll_batch {
	struct controlplane *p;
	unsigned n;
};

static int poll_submit_one(const char *text, size_t len, unsigned index, void *arg)
{
	struct poll_batch *b = arg;
	if (!text) {
		log_warnx("control plane: element %u of \"tasks\" is not an object; skipped", index);
		return 0;
	}
	if (len > (size_t)TASK_MAX_BYTES) {
		log_warnx("control plane: element %u of \"tasks\" is longer than %d bytes; skipped", index,
			  TASK_MAX_BYTES);
		return 0;
	}
	/* The monitor does not keep up: the rest stays with the control
	 * plane, which delivers again what has no result. */
	int r = b->p->src->submit(b->p->src->arg, MSGFRAME_ROUTE_CONTROL_PLANE, 0, text, len);
	if (r < 0)
		return r;
	b->n++;
	return 0;
}

static int poll_submit(struct controlplane *p, const char *body, size_t len, unsigned *n)
{
	struct poll_batch b = { .p = p };
	int r = tasklist_parse(body, len, poll_submit_one, &b);
	*n = b.n;
	return r;
}

/* A sender backing off from a failure tries now, the control plane being
 * back, unless it was told to wait (Retry-After). */
static void send_wake(struct controlplane *p)
{
	struct cphttp_slot *s = &p->send;
	if (s->req || s->hold_until_ms > now_ms())
		return;
	if (!cphttp_scheduled(s) || s->failures > 0)
		cphttp_schedule(s, 0);
}

static void poll_ok(struct controlplane *p, unsigned n)
{
	struct cphttp_slot *s = &p->poll;
	if (!p->reached) {
		log_info("control plane: connected to %s port %d, waiting for tasks", p->host, p->peer.port);
		p->reached = true;
	}
	cphttp_succeeded(s);
	if (n)
		log_info("control plane: %u task%s received", n, n == 1 ? "" : "s");
	send_wake(p);
	/* After tasks, and after the first poll (it did not wait), at once.
	 * Otherwise the next poll starts poll_wait after this one did, even
	 * when the server answered sooner, and a jitter later. */
	unsigned ms = 0;
	int64_t took = now_ms() - s->started_ms, cycle = (int64_t)p->poll_wait_s * 1000;
	if (n == 0 && p->settled) {
		ms = poll_jitter_ms(p);
		if (took < cycle)
			ms += (unsigned)(cycle - took);
	}
	log_debug("control plane: next poll in %u.%03u s", ms / 1000, ms % 1000);
	cphttp_schedule(s, ms);
}

static void poll_settle(struct controlplane *p)
{
	if (p->settled)
		return;
	p->settled = true;
	p->src->settled(p->src->arg);
}

static void poll_done(struct cphttp_slot *s, struct evhttp_request *req, int code)
{
	struct controlplane *p = s->arg;
	char err[CPHTTP_ERR_MAX];
	if (code == 204) {
		poll_ok(p, 0);
		poll_settle(p);
		return;
	}
	if (code != 200) {
		cphttp_describe(s, req, err, sizeof(err));
		cphttp_failed(s, "polling for tasks failed", err);
		poll_settle(p);
		return;
	}
	_cleanup_(buf_wipe) struct buf body = { 0 };
	unsigned n = 0;
	int r = take_body(evhttp_request_get_input_buffer(req), &body);
	if (r == 0)
		r = poll_submit(p, body.data, body.len, &n);
	if (r == 0) {
		poll_ok(p, n);
		poll_settle(p);
		return;
	}
	if (r == -EBADMSG)
		snprintf(err, sizeof(err), "the answer is not {\"tasks\": [...]}");
	else if (r == -ENOBUFS)
		snprintf(err, sizeof(err), "the agent's queue is full after %u new task%s", n, n == 1 ? "" : "s");
	else
		snprintf(err, sizeof(err), "%s", strerror(-r));
	cphttp_failed(s, "polling for tasks failed", err);
	poll_settle(p);
}

static void poll_run(evutil_socket_t fd, short what, void *arg)
{
	struct controlplane *p = arg;
	_cleanup_(buf_free) struct buf uri = { 0 };
	(void)fd;
	(void)what;
	/* The first poll does not wait: what is queued is picked up at once,
	 * and the monitor tells systemd it is ready after applying it. */
	int wait = p->settled ? p->poll_wait_s : 0;
	int r = task_uri(p, NULL, &uri);
	if (r == 0)
		r = buf_printf(&uri, "?wait=%d", wait);
	if (r == 0)
		r = cphttp_request(&p->poll, EVHTTP_REQ_GET, uri.data, NULL, 0, wait + CP_POLL_SLACK_S,
				   CP_POLL_BODY_MAX);
	if (r < 0)
		cphttp_failed(&p->poll, "cannot start polling", strerror(-r));
}

/* The result in hand is done with: acknowledged or refused for good. The
 * monitor takes it out of the outbox and sends the next. */
static void send_forget(struct controlplane *p)
{
	struct cp_post *o = p->head;
	p->head = o->next;
	if (!p->head)
		p->tail = NULL;
	p->n_posts--;
	p->src->posted(p->src->arg, o->id);
	free(o->json);
	free(o);
	cphttp_schedule(&p->send, 0);
}

static void send_done(struct cphttp_slot *s, struct evhttp_request *req, int code)
{
	struct controlplane *p = s->arg;
	const char *id = p->head->id;
	char err[CPHTTP_ERR_MAX], what[TASK_ID_MAX + 64];
	if (code >= 200 && code < 300) {
		cphttp_succeeded(s);
		log_info("control plane: result of task %s posted", id);
		send_forget(p);
		return;
	}
	/* The control plane does not know the task: retrying would never end.
	 * Unless no poll succeeded yet: then the URL itself may be wrong. */
	if ((code == 404 || code == 410) && p->reached) {
		log_warnx("control plane: does not know task %s (HTTP %d); its result is dropped from the outbox", id,
			  code);
		cphttp_succeeded(s);
		send_forget(p);
		return;
	}
	cphttp_describe(s, req, err, sizeof(err));
	snprintf(what, sizeof(what), "posting the result of task %s failed", id);
	cphttp_failed(s, what, err);
}

/* Posts the oldest result held; idle when none is. */
static void send_run(evutil_socket_t fd, short what, void *arg)
{
	struct controlplane *p = arg;
	(void)fd;
	(void)what;
	if (!p->head || p->send.req)
		return;
	_cleanup_(buf_free) struct buf uri = { 0 };
	int r = task_uri(p, p->head->id, &uri);
	if (r == 0)
		r = cphttp_request(&p->send, EVHTTP_REQ_POST, uri.data, p->head->json, p->head->len, CP_POST_TIMEOUT_S,
				   CP_POST_BODY_MAX);
	if (r < 0)
		cphttp_failed(&p->send, "cannot start posting a result", strerror(-r));
}

/* A request in flight takes the next when it is done, and one backing off
 * keeps to its pace: a fleet's results do not come back in step with its
 * tasks. The same task again (the monitor sent the outbox over after a
 * restart) replaces what is held. */
int controlplane_post(struct controlplane *p, const char *task_id, const char *json, size_t len)
{
	for (struct cp_post *o = p->head; o; o = o->next)
		if (streq(o->id, task_id))
			return 0;
	if (p->n_posts >= CP_POSTS_MAX)
		return -ENOBUFS;
	struct cp_post *o = calloc(1, sizeof(*o));
	char *copy = strndup(json, len);
	if (!o || !copy) {
		free(o);
		free(copy);
		return -ENOMEM;
	}
	*o = (struct cp_post){ .json = copy, .len = strlen(copy) };
	snprintf(o->id, sizeof(o->id), "%s", task_id);
	if (p->tail)
		p->tail->next = o;
	else
		p->head = o;
	p->tail = o;
	p->n_posts++;
	if (!p->send.req && p->send.failures == 0 && !cphttp_scheduled(&p->send))
		cphttp_schedule(&p->send, 0);
	return 0;
}

/* The bearer token: one line, at most CP_TOKEN_MAX bytes, never logged. */
static int read_token(const char *path, struct secret *out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	_cleanup_(buf_wipe) struct buf b = { 0 };
	int r = buf_reserve(&b, CP_TOKEN_MAX + 1);
	while (r == 0 && b.len <= CP_TOKEN_MAX) {
		ssize_t n = read(fd, b.data + b.len, CP_TOKEN_MAX + 1 - b.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		b.len += (size_t)n;
	}
	if (r < 0)
		return r;
	if (b.len > CP_TOKEN_MAX)
		return -EFBIG;
	size_t start = 0, end = b.len;
	while (start < end && strchr(" \t\r\n", b.data[start]))
		start++;
	while (end > start && strchr(" \t\r\n", b.data[end - 1]))
		end--;
	if (start == end)
		return -ENODATA;
	for (size_t i = start; i < end; i++)
		if ((unsigned char)b.data[i] <= ' ' || (unsigned char)b.data[i] >= 0x7f)
			return -EINVAL;
	_cleanup_(buf_wipe) struct buf h = { 0 };
	r = buf_puts(&h, "Bearer ");
	if (r == 0)
		r = buf_append(&h, b.data + start, end - start);
	if (r == 0)
		r = secret_set(out, h.data, h.len);
	return r;
}

static int parse_url(struct controlplane *p, const char *url)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	if (!u)
		return -EINVAL;
	const char *scheme = evhttp_uri_get_scheme(u), *host = evhttp_uri_get_host(u);
	const char *path = evhttp_uri_get_path(u);
	int port = evhttp_uri_get_port(u), r = -EINVAL;
	bool https = scheme && streq(scheme, "https");
	/* No credentials or query in the URL: it is logged, and paths are
	 * appended to it. */
	if (!scheme || (!https && !streq(scheme, "http")) || !host || !*host || evhttp_uri_get_userinfo(u) ||
	    evhttp_uri_get_query(u) || evhttp_uri_get_fragment(u) || port == 0 || port > 65535)
		goto out;
	size_t hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
		p->host = strndup(host + 1, hl - 2);
	else
		p->host = strdup(host);
	p->peer.port = port > 0 ? port : https ? 443 : 80;
	int n = port > 0 ? asprintf(&p->host_header, "%s:%d", host, port) : asprintf(&p->host_header, "%s", host);
	if (n < 0)
		p->host_header = NULL;
	p->prefix = strdup(path ? path : "");
	if (!p->host || !p->host_header || !p->prefix) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t l = strlen(p->prefix); l > 0 && p->prefix[l - 1] == '/'; l--)
		p->prefix[l - 1] = '\0';
	unsigned char addr[sizeof(struct in6_addr)];
	p->peer.host_is_ip = inet_pton(AF_INET, p->host, addr) == 1 || inet_pton(AF_INET6, p->host, addr) == 1;
	r = https ? 1 : 0;
out:
	evhttp_uri_free(u);
	return r;
}

/* The backoff's cap: 60 s, or two poll cycles when they are longer. A fleet
 * back from an outage returns spread over the window it had reached, and
 * its first second carries about 2 * N / cap requests (the residual wait
 * of a uniform draw): with two cycles, about the steady rate of N per
 * cycle, not more. */
static unsigned backoff_cap_ms(int poll_wait_s)
{
	unsigned cycles = 2U * (unsigned)poll_wait_s * 1000U;
	return cycles > CP_BACKOFF_CAP_MIN_MS ? cycles : CP_BACKOFF_CAP_MIN_MS;
}

static int setup_transport(struct controlplane *p, const struct config *cfg)
{
	struct cphttp_peer *peer = &p->peer;
	int https = parse_url(p, cfg->url);
	if (https < 0) {
		log_warnx("control plane: %s is not a usable http(s) URL (no user, query or fragment)", cfg->url);
		return https;
	}
	*peer = (struct cphttp_peer){ .base = p->src->base, .host = p->host, .host_header = p->host_header,
				      .host_is_ip = peer->host_is_ip, .port = peer->port, .auth = &p->auth,
				      .jitter_pct = (unsigned)cfg->poll_jitter_pct,
				      .backoff_cap_ms = backoff_cap_ms(cfg->poll_wait_s) };
	if (https && cphttp_tls_ctx(cfg->ca_file, &peer->ssl_ctx) < 0)
		return -EINVAL;
	if (!https && p->auth.len)
		log_warnx("control plane: the bearer token goes over plain http to %s", p->host);
	/* Without a resolver of our own, evhttp resolves with a blocking
	 * getaddrinfo() on the loop. */
	if (!peer->host_is_ip) {
		peer->dns = evdns_base_new(peer->base,
					   EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!peer->dns)
			return -ENOMEM;
	}
	return 0;
}

struct controlplane *controlplane_new(const struct source *src)
{
	const struct config *cfg = src->cfg;
	if (!cfg->url || !cfg->url[0]) {
		log_debug("control plane: no url; not polling");
		return NULL;
	}
	const char *sid = src->server_id;
	if (!sid || !*sid) {
		log_warnx("control plane: this VM's server id is unknown (set [control_plane] server_id); not polling");
		return NULL;
	}
	_cleanup_(controlplane_freep) struct controlplane *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	*p = (struct controlplane){ .src = src, .poll_wait_s = cfg->poll_wait_s };
	p->server_id = strdup(sid);
	if (!p->server_id)
		return NULL;
	if (cfg->token_file && cfg->token_file[0]) {
		int r = read_token(cfg->token_file, &p->auth);
		if (r < 0) {
			log_warnx("control plane: cannot use the token in %s: %s; not polling", cfg->token_file,
				  r == -ENODATA ? "it is empty" : r == -EINVAL ? "it is not one line of printable characters"
				  : strerror(-r));
			return NULL;
		}
	}
	if (setup_transport(p, cfg) < 0)
		return NULL;
	if (cphttp_slot_init(&p->poll, &p->peer, "polling for tasks", poll_run, poll_done, p) < 0 ||
	    cphttp_slot_init(&p->send, &p->peer, "posting results", send_run, send_done, p) < 0)
		return NULL;
	unsigned first = poll_jitter_ms(p);
	log_info("control plane: polling %s for server %s (wait %d s, jitter %d%%; first poll in %u.%03u s)",
		 cfg->url, p->server_id, p->poll_wait_s, cfg->poll_jitter_pct, first / 1000, first % 1000);
	cphttp_schedule(&p->poll, first);
	return TAKE_PTR(p);
}

void controlplane_free(struct controlplane *p)
{
	if (!p)
		return;
	/* Freeing a connection drops its request without calling back. */
	cphttp_slot_free(&p->poll);
	cphttp_slot_free(&p->send);
	if (p->peer.dns)
		evdns_base_free(p->peer.dns, 0);
	cphttp_tls_free(p->peer.ssl_ctx);
	while (p->head) {
		struct cp_post *o = p->head;
		p->head = o->next;
		free(o->json);
		free(o);
	}
	secret_wipe(&p->auth);
	free(p->host);
	free(p->host_header);
	free(p->prefix);
	free(p->server_id);
	free(p);
}
