/* The control plane: a long poll for tasks and a sender for the outbox of
 * results, over HTTP or HTTPS (evhttp on an OpenSSL bufferevent). Each kind
 * of request has its own slot: one request in flight at a time, one timer
 * for the next attempt, its own backoff. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/random.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "controlplane.h"
#include "framing.h"
#include "journal.h"
#include "log.h"
#include "version.h"

#define CP_BACKOFF_BASE_MS 1000U
#define CP_BACKOFF_CAP_MS 60000U
#define CP_TOKEN_MAX 4096
#define CP_POLL_SLACK_S 15		/* past the long poll's wait before we give up on it */
#define CP_POST_TIMEOUT_S 30
#define CP_POLL_BODY_MAX (4L * 1024 * 1024)
#define CP_POST_BODY_MAX (64L * 1024)
#define CP_HEADERS_MAX (64L * 1024)
#define CP_EMPTY_POLL_MIN_MS 1000	/* spacing of empty answers that did not wait */
#define CP_ERR_MAX 256

struct controlplane;

/* One kind of request (the poll, or the result sender). */
struct cp_slot {
	struct controlplane *p;
	struct event *timer;			/* the next attempt */
	struct evhttp_connection *conn;		/* the last request's; freed before the next */
	struct evhttp_request *req;		/* in flight */
	int64_t started_ms;
	unsigned failures;			/* in a row: the backoff exponent */
	bool reached;				/* one request of this kind succeeded */
	bool has_http_err;
	enum evhttp_request_error http_err;
	char tls_err[CP_ERR_MAX];		/* why the peer's certificate was refused */
	char last_err[CP_ERR_MAX];		/* repeated errors are logged once */
};

struct controlplane {
	struct daemon *d;
	struct event_base *base;
	struct evdns_base *dns;			/* NULL when the host is an IP literal */
	SSL_CTX *ssl_ctx;			/* NULL for http */
	char *host;				/* connect, SNI, verification: no brackets */
	char *host_header;
	bool host_is_ip;
	int port;
	char *prefix;				/* the URL's path, no trailing slash */
	char *server_id;
	int poll_wait_s;
	bool settled;				/* the first poll has answered or failed */
	struct secret auth;			/* "Bearer <token>"; empty without a token */
	struct journal journal;
	bool journal_open;			/* journal needs journal_close */
	struct cp_slot poll;
	struct cp_slot send;
	struct strv ids;			/* the outbox as last listed, oldest first */
	size_t next;				/* the entry of ids in hand */
};

static void controlplane_freep(struct controlplane **p)
{
	controlplane_free(*p);
}

static uint32_t random_u32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	/* Jitter only has to spread agents apart, not be unpredictable. */
	return (uint32_t)now_ms() ^ ((uint32_t)getpid() << 16);
}

/* Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^n)],
 * so that a fleet that lost the control plane together does not come back
 * in step. */
static unsigned backoff_ms(unsigned failures)
{
	unsigned shift = failures > 0 ? failures - 1 : 0;
	uint64_t window = shift >= 16 ? CP_BACKOFF_CAP_MS : (uint64_t)CP_BACKOFF_BASE_MS << shift;
	if (window > CP_BACKOFF_CAP_MS)
		window = CP_BACKOFF_CAP_MS;
	return (unsigned)(random_u32() % (window + 1));
}

static void slot_schedule(struct cp_slot *s, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	if (evtimer_add(s->timer, &tv) < 0)
		log_warnx("control plane: cannot arm a timer");
}

/* The connection of the last request is freed here, from a timer, never
 * from its own callback (evhttp still touches it after calling us). */
static void slot_reset(struct cp_slot *s)
{
	if (s->conn)
		evhttp_connection_free(s->conn);
	s->conn = NULL;
	s->req = NULL;
	s->has_http_err = false;
	s->tls_err[0] = '\0';
}

static void slot_free(struct cp_slot *s)
{
	slot_reset(s);
	if (s->timer)
		event_free(s->timer);
	s->timer = NULL;
}

/* One line per change of state: a run of the same error is logged once. */
static void slot_failed(struct cp_slot *s, const char *what, const char *err)
{
	s->failures++;
	unsigned ms = backoff_ms(s->failures);
	if (s->failures == 1 || !streq(s->last_err, err))
		log_warnx("control plane: %s: %s; next attempt in %u.%03u s", what, err, ms / 1000, ms % 1000);
	else
		log_debug("control plane: %s: %s (%u in a row); next attempt in %u.%03u s", what, err, s->failures,
			  ms / 1000, ms % 1000);
	snprintf(s->last_err, sizeof(s->last_err), "%s", err);
	slot_schedule(s, ms);
}

static void slot_succeeded(struct cp_slot *s, const char *what)
{
	if (s->failures > 0)
		log_info("control plane: %s works again after %u failed attempts", what, s->failures);
	s->failures = 0;
	s->last_err[0] = '\0';
}

/* Keeps OpenSSL's verdict; only notes why, for the log line. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	if (ok)
		return 1;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct cp_slot *s = ssl ? SSL_get_app_data(ssl) : NULL;
	if (s && !s->tls_err[0])
		snprintf(s->tls_err, sizeof(s->tls_err), "TLS: certificate verification failed at depth %d: %s",
			 X509_STORE_CTX_get_error_depth(x), X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
	return 0;
}

static void slot_http_error(enum evhttp_request_error err, void *arg)
{
	struct cp_slot *s = arg;
	s->has_http_err = true;
	s->http_err = err;
}

/* Why a request failed, for the log. Certificate errors first: they are the
 * ones an operator must not miss. errno is of no use here: evhttp has shut
 * the socket down by the time it calls back. */
static void slot_describe(struct cp_slot *s, struct evhttp_request *req, char *err, size_t size)
{
	static const char *const why[] = {
		[EVREQ_HTTP_TIMEOUT] = "no answer in time",
		[EVREQ_HTTP_EOF] = "connection closed before a complete answer",
		[EVREQ_HTTP_INVALID_HEADER] = "invalid answer header",
		[EVREQ_HTTP_BUFFER_ERROR] = "connection error",
		[EVREQ_HTTP_REQUEST_CANCEL] = "cancelled",
		[EVREQ_HTTP_DATA_TOO_LONG] = "answer too large",
	};
	struct controlplane *p = s->p;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	struct bufferevent *bev = s->conn ? evhttp_connection_get_bufferevent(s->conn) : NULL;
	int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
	unsigned long tls = 0;
	/* The first error OpenSSL queued; small values are bare SSL_get_error()
	 * codes (a socket error during the handshake), not OpenSSL errors. */
	for (unsigned long e; p->ssl_ctx && bev && (e = bufferevent_get_openssl_error(bev));)
		if (!tls && ERR_GET_LIB(e) != 0)
			tls = e;
	if (code > 0) {
		snprintf(err, size, "HTTP %d", code);
	} else if (s->tls_err[0]) {
		snprintf(err, size, "%s", s->tls_err);
	} else if (dns) {
		snprintf(err, size, "cannot resolve %s: %s", p->host, evutil_gai_strerror(dns));
	} else if (tls && size > 5) {
		snprintf(err, size, "TLS: ");
		ERR_error_string_n(tls, err + 5, size - 5);
	} else if (s->has_http_err && (unsigned)s->http_err < ELEMENTSOF(why) && why[s->http_err]) {
		snprintf(err, size, "%s", why[s->http_err]);
	} else {
		snprintf(err, size, "cannot connect to %s port %d%s", p->host, p->port,
			 p->ssl_ctx ? " or the TLS handshake failed" : "");
	}
}

static SSL *slot_ssl(struct cp_slot *s)
{
	struct controlplane *p = s->p;
	SSL *ssl = SSL_new(p->ssl_ctx);
	if (!ssl)
		return NULL;
	SSL_set_app_data(ssl, s);
	int ok;
	if (p->host_is_ip)
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), p->host);
	else
		ok = SSL_set_tlsext_host_name(ssl, p->host) && SSL_set1_host(ssl, p->host);
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!ok) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* A fresh connection per request: an OpenSSL bufferevent cannot be
 * reconnected once its session is over, and one handshake per long poll
 * costs nothing worth saving. */
static int slot_connect(struct cp_slot *s, int timeout_s, ev_ssize_t max_body)
{
	struct controlplane *p = s->p;
	struct bufferevent *bev = NULL;
	if (p->ssl_ctx) {
		SSL *ssl = slot_ssl(s);
		if (!ssl)
			return -ENOMEM;
		bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
						     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (!bev) {
			SSL_free(ssl);
			return -ENOMEM;
		}
		/* The body is delimited by Content-Length: a server that closes
		 * without close_notify loses nothing. */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	}
	s->conn = evhttp_connection_base_bufferevent_new(p->base, p->dns, bev, p->host, (unsigned short)p->port);
	if (!s->conn) {
		if (bev)
			bufferevent_free(bev);
		return -ENOMEM;
	}
	evhttp_connection_set_timeout(s->conn, timeout_s);
	evhttp_connection_set_max_body_size(s->conn, max_body);
	evhttp_connection_set_max_headers_size(s->conn, CP_HEADERS_MAX);
	evhttp_connection_set_retries(s->conn, 0);
	return 0;
}

static int slot_request(struct cp_slot *s, enum evhttp_cmd_type type, const char *uri, const char *body, size_t len,
			void (*done)(struct evhttp_request *, void *))
{
	struct controlplane *p = s->p;
	slot_reset(s);
	int r = slot_connect(s, type == EVHTTP_REQ_GET ? p->poll_wait_s + CP_POLL_SLACK_S : CP_POST_TIMEOUT_S,
			     type == EVHTTP_REQ_GET ? CP_POLL_BODY_MAX : CP_POST_BODY_MAX);
	if (r < 0)
		return r;
	struct evhttp_request *req = evhttp_request_new(done, s);
	if (!req)
		return -ENOMEM;
	evhttp_request_set_error_cb(req, slot_http_error);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	r = evhttp_add_header(h, "Host", p->host_header) | evhttp_add_header(h, "Accept", "application/json") |
	    evhttp_add_header(h, "User-Agent", "kps-agent/" PACKAGE_VERSION) |
	    evhttp_add_header(h, "Connection", "close");
	if (p->auth.len)
		r |= evhttp_add_header(h, "Authorization", p->auth.data);
	if (body) {
		r |= evhttp_add_header(h, "Content-Type", "application/json");
		r |= evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	}
	if (r != 0) {
		evhttp_request_free(req);
		return -ENOMEM;
	}
	/* done may run before evhttp_make_request returns (a refused
	 * connection): it clears s->req itself. */
	s->req = req;
	s->started_ms = now_ms();
	if (evhttp_make_request(s->conn, req, type, uri) < 0) {
		s->req = NULL;
		return -EIO;
	}
	return 0;
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

static void controlplane_task_done(const struct result *res, const char *json, void *arg)
{
	(void)json;
	log_debug("control plane: task %s finished; posting its result", res->task_id);
	controlplane_outbox_kick(arg);
}

/* Hands each task of {"tasks": [...]} to the daemon. Every text made here
 * is wiped; cJSON's own frees are wiped by the process-wide hook. */
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
	/* Queue full: the rest stays with the control plane, which delivers
	 * again what has no result. */
	int r = daemon_submit(b->p->d, text, len, SOURCE_CONTROL_PLANE, controlplane_task_done, b->p);
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

/* Results whose task finished under an earlier poller (SIGHUP) or that the
 * daemon recorded without calling back: a look at the outbox per poll. */
static void send_wake(struct controlplane *p)
{
	if (!p->send.req && !evtimer_pending(p->send.timer, NULL))
		slot_schedule(&p->send, 0);
}

static void poll_ok(struct controlplane *p, unsigned n)
{
	struct cp_slot *s = &p->poll;
	int64_t took = now_ms() - s->started_ms;
	if (!s->reached) {
		log_info("control plane: connected to %s port %d, waiting for tasks", p->host, p->port);
		s->reached = true;
		/* The URL is proven now: a result held back by a 404 may go. */
		controlplane_outbox_kick(p);
	}
	slot_succeeded(s, "polling");
	if (n)
		log_info("control plane: %u task%s received", n, n == 1 ? "" : "s");
	send_wake(p);
	/* A server (or a proxy) that answers "nothing" without waiting would
	 * otherwise have every agent of a fleet poll it in a tight loop. The
	 * first poll asks not to wait (poll_run): its quick answer is due. */
	if (n == 0 && p->settled && took < CP_EMPTY_POLL_MIN_MS) {
		log_debug("control plane: empty answer after %lld ms; polling again in 1 s", (long long)took);
		slot_schedule(s, CP_EMPTY_POLL_MIN_MS);
		return;
	}
	slot_schedule(s, 0);
}

static void poll_settle(struct controlplane *p)
{
	if (p->settled)
		return;
	p->settled = true;
	daemon_source_settled(p->d);
}

static void poll_done(struct evhttp_request *req, void *arg)
{
	struct cp_slot *s = arg;
	struct controlplane *p = s->p;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	char err[CP_ERR_MAX];
	s->req = NULL;
	if (code == 204) {
		poll_ok(p, 0);
		poll_settle(p);
		return;
	}
	if (code != 200) {
		slot_describe(s, req, err, sizeof(err));
		slot_failed(s, "polling for tasks failed", err);
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
		snprintf(err, sizeof(err), "the task queue is full after %u new task%s", n, n == 1 ? "" : "s");
	else
		snprintf(err, sizeof(err), "%s", strerror(-r));
	slot_failed(s, "polling for tasks failed", err);
	poll_settle(p);
}

static void poll_run(evutil_socket_t fd, short what, void *arg)
{
	struct controlplane *p = arg;
	char uri[4096];
	(void)fd;
	(void)what;
	/* The first poll does not wait: what is queued is picked up at once,
	 * and the daemon tells systemd it is ready after applying it. */
	snprintf(uri, sizeof(uri), "%s/v1/servers/%s/tasks?wait=%d", p->prefix, p->server_id,
		 p->settled ? p->poll_wait_s : 0);
	int r = slot_request(&p->poll, EVHTTP_REQ_GET, uri, NULL, 0, poll_done);
	if (r < 0)
		slot_failed(&p->poll, "cannot start polling", strerror(-r));
}

/* The outbox entry in hand is done with: acknowledged or refused for good. */
static void send_forget(struct controlplane *p)
{
	const char *id = p->ids.v[p->next];
	int r = journal_outbox_remove(&p->journal, id);
	if (r < 0 && r != -ENOENT)
		log_warnx("control plane: cannot remove the result of task %s from the outbox: %s", id,
			  strerror(-r));
	p->next++;
	slot_schedule(&p->send, 0);
}

static void send_done(struct evhttp_request *req, void *arg)
{
	struct cp_slot *s = arg;
	struct controlplane *p = s->p;
	const char *id = p->ids.v[p->next];
	int code = req ? evhttp_request_get_response_code(req) : 0;
	char err[CP_ERR_MAX], what[TASK_ID_MAX + 64];
	s->req = NULL;
	if (code >= 200 && code < 300) {
		slot_succeeded(s, "posting results");
		log_info("control plane: result of task %s posted", id);
		send_forget(p);
		return;
	}
	/* The control plane does not know the task: retrying would never end.
	 * Unless no poll succeeded yet: then the URL itself may be wrong. */
	if ((code == 404 || code == 410) && p->poll.reached) {
		log_warnx("control plane: does not know task %s (HTTP %d); its result is dropped from the outbox", id,
			  code);
		slot_succeeded(s, "posting results");
		send_forget(p);
		return;
	}
	slot_describe(s, req, err, sizeof(err));
	snprintf(what, sizeof(what), "posting the result of task %s failed", id);
	slot_failed(s, what, err);
}

/* Posts the next outbox entry, oldest first. The outbox is listed again
 * once the last listing is used up, so results added meanwhile follow. */
static void send_run(evutil_socket_t fd, short what, void *arg)
{
	struct controlplane *p = arg;
	bool listed = false;
	(void)fd;
	(void)what;
	slot_reset(&p->send);
	for (;;) {
		if (p->next >= p->ids.n) {
			if (listed)
				return;	/* idle until kicked */
			strv_free(&p->ids);
			p->next = 0;
			int r = journal_outbox_list(&p->journal, &p->ids);
			if (r < 0) {
				slot_failed(&p->send, "cannot list the outbox", strerror(-r));
				return;
			}
			listed = true;
			continue;
		}
		const char *id = p->ids.v[p->next];
		_cleanup_free_ char *json = NULL;
		size_t len = 0;
		int r = str_is_token(id, TASK_ID_MAX) ? journal_outbox_get(&p->journal, id, &json, &len) : -EINVAL;
		if (r < 0) {
			if (r != -ENOENT)
				log_warnx("control plane: skipping outbox entry %s: %s", id, strerror(-r));
			p->next++;
			continue;
		}
		char uri[4096];
		snprintf(uri, sizeof(uri), "%s/v1/servers/%s/tasks/%s/result", p->prefix, p->server_id, id);
		r = slot_request(&p->send, EVHTTP_REQ_POST, uri, json, len, send_done);
		if (r < 0)
			slot_failed(&p->send, "cannot start posting a result", strerror(-r));
		return;
	}
}

void controlplane_outbox_kick(struct controlplane *p)
{
	/* A request in flight lists the outbox again when it is done. */
	if (p && !p->send.req)
		slot_schedule(&p->send, 0);
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
	p->port = port > 0 ? port : https ? 443 : 80;
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
	p->host_is_ip = inet_pton(AF_INET, p->host, addr) == 1 || inet_pton(AF_INET6, p->host, addr) == 1;
	r = https ? 1 : 0;
out:
	evhttp_uri_free(u);
	return r;
}

static int setup_tls(struct controlplane *p, const char *ca_file)
{
	char err[CP_ERR_MAX];
	p->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (!p->ssl_ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(p->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(p->ssl_ctx, SSL_VERIFY_PEER, verify_cb);
	int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(p->ssl_ctx, ca_file, NULL)
				     : SSL_CTX_set_default_verify_paths(p->ssl_ctx);
	if (ok == 1)
		return 0;
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	ERR_clear_error();
	log_warnx("control plane: cannot load the CA %s%s: %s", ca_file && *ca_file ? "file " : "certificates",
		  ca_file && *ca_file ? ca_file : "", err);
	return -EINVAL;
}

static int setup_transport(struct controlplane *p, const struct config *cfg)
{
	int https = parse_url(p, cfg->url);
	if (https < 0) {
		log_warnx("control plane: %s is not a usable http(s) URL (no user, query or fragment)", cfg->url);
		return https;
	}
	if (https && setup_tls(p, cfg->ca_file) < 0)
		return -EINVAL;
	if (!https && p->auth.len)
		log_warnx("control plane: the bearer token goes over plain http to %s", p->host);
	/* Without a resolver of our own, evhttp resolves with a blocking
	 * getaddrinfo() on the loop. */
	if (!p->host_is_ip) {
		p->dns = evdns_base_new(p->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!p->dns)
			return -ENOMEM;
	}
	return 0;
}

struct controlplane *controlplane_new(struct daemon *d)
{
	const struct config *cfg = daemon_config(d);
	char msg[256] = "";
	if (!cfg->url || !cfg->url[0]) {
		log_debug("control plane: no url; not polling");
		return NULL;
	}
	const char *sid = daemon_server_id(d);
	if (!sid || !*sid) {
		log_warnx("control plane: this VM's server id is unknown (set [control_plane] server_id); not polling");
		return NULL;
	}
	_cleanup_(controlplane_freep) struct controlplane *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	*p = (struct controlplane){ .d = d, .base = daemon_base(d), .poll_wait_s = cfg->poll_wait_s,
				    .poll = { .p = p }, .send = { .p = p } };
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
	/* journal_open initialises the struct first: closing it is right
	 * even after a failure, which leaves what it opened open. */
	p->journal_open = true;
	if (journal_open(cfg->state_dir, cfg->results_keep, &p->journal, msg, sizeof(msg)) < 0) {
		log_warnx("control plane: %s; not polling", msg);
		return NULL;
	}
	p->poll.timer = evtimer_new(p->base, poll_run, p);
	p->send.timer = evtimer_new(p->base, send_run, p);
	if (!p->poll.timer || !p->send.timer)
		return NULL;
	log_info("control plane: polling %s for server %s (wait %d s)", cfg->url, p->server_id, p->poll_wait_s);
	slot_schedule(&p->poll, 0);
	/* Results kept across a restart (or a SIGHUP) are sent from the start. */
	slot_schedule(&p->send, 0);
	return TAKE_PTR(p);
}

void controlplane_free(struct controlplane *p)
{
	if (!p)
		return;
	/* Freeing a connection drops its request without calling back. */
	slot_free(&p->poll);
	slot_free(&p->send);
	if (p->dns)
		evdns_base_free(p->dns, 0);
	SSL_CTX_free(p->ssl_ctx);
	if (p->journal_open)
		journal_close(&p->journal);
	strv_free(&p->ids);
	secret_wipe(&p->auth);
	free(p->host);
	free(p->host_header);
	free(p->prefix);
	free(p->server_id);
	free(p);
}
