/* The control plane's requests, one kind per slot: one request in flight
 * at a time, on a fresh connection, under a deadline for the whole request
 * (a peer that trickles a byte at a time never resets it, as it would an
 * inactivity timeout); one timer for the next attempt, its own backoff. */
#include <sys/random.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/keyvalq_struct.h>

#include "cphttp.h"
#include "log.h"
#include "version.h"

#define CPHTTP_BACKOFF_BASE_MS 1000U
#define CPHTTP_HEADERS_MAX (64L * 1024)

static uint32_t random_u32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	/* Jitter only has to spread agents apart, not be unpredictable. */
	return (uint32_t)now_ms() ^ ((uint32_t)getpid() << 16);
}

unsigned cphttp_random_ms(unsigned max_ms)
{
	return max_ms ? (unsigned)(random_u32() % ((uint64_t)max_ms + 1)) : 0;
}

/* Full jitter, so that a fleet that lost the control plane together does
 * not come back in step. */
unsigned cphttp_backoff_ms(unsigned failures, unsigned cap_ms)
{
	unsigned shift = failures > 0 ? failures - 1 : 0;
	uint64_t window = shift >= 20 ? cap_ms : (uint64_t)CPHTTP_BACKOFF_BASE_MS << shift;
	if (window > cap_ms)
		window = cap_ms;
	return cphttp_random_ms((unsigned)window);
}

int64_t cphttp_retry_after_ms(const char *value, time_t now)
{
	const int64_t cap = (int64_t)CPHTTP_RETRY_AFTER_MAX_S * 1000;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value >= '0' && *value <= '9') {
		int64_t s = 0;
		for (; *value >= '0' && *value <= '9'; value++)
			if (s <= CPHTTP_RETRY_AFTER_MAX_S)
				s = s * 10 + (*value - '0');
		while (*value == ' ' || *value == '\t')
			value++;
		if (*value)
			return -EINVAL;
		return s * 1000 < cap ? s * 1000 : cap;
	}
	struct tm tm = { 0 };
	const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -EINVAL;
	time_t at = timegm(&tm);
	if (at <= now)
		return 0;
	return (int64_t)(at - now) * 1000 < cap ? (int64_t)(at - now) * 1000 : cap;
}

int cphttp_append_segment(struct buf *b, const char *seg)
{
	static const char hex[] = "0123456789ABCDEF";
	bool dots = streq(seg, ".") || streq(seg, "..");
	int r = 0;
	for (const unsigned char *c = (const unsigned char *)seg; r == 0 && *c; c++) {
		bool plain = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
			     *c == '-' || *c == '_' || *c == '~' || (*c == '.' && !dots);
		char esc[3] = { '%', hex[*c >> 4], hex[*c & 15] };
		r = plain ? buf_append(b, c, 1) : buf_append(b, esc, sizeof(esc));
	}
	return r;
}

void cphttp_schedule(struct cphttp_slot *s, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	if (evtimer_add(s->timer, &tv) < 0)
		log_warnx("control plane: cannot arm a timer");
}

bool cphttp_scheduled(const struct cphttp_slot *s)
{
	return evtimer_pending(s->timer, NULL);
}

/* The connection of the last request is freed here, from a timer, never
 * from its own callback (evhttp still touches it after calling us).
 * Freeing it drops a request still in flight without calling back. */
static void slot_reset(struct cphttp_slot *s)
{
	if (s->conn)
		evhttp_connection_free(s->conn);
	s->conn = NULL;
	s->req = NULL;
	s->has_http_err = false;
	s->expired = false;
	s->code = 0;
	s->retry_after_ms = 0;
	s->tls_err[0] = '\0';
	if (s->deadline)
		evtimer_del(s->deadline);
}

/* The whole request took too long: it goes, and its slot hears of it as
 * of any other failure. */
static void slot_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct cphttp_slot *s = arg;
	(void)fd;
	(void)what;
	if (!s->req)
		return;
	slot_reset(s);
	s->expired = true;
	s->done(s, NULL, 0);
}

int cphttp_slot_init(struct cphttp_slot *s, const struct cphttp_peer *peer, const char *what,
		     event_callback_fn run, cphttp_done_fn done, void *arg)
{
	*s = (struct cphttp_slot){ .peer = peer, .what = what, .arg = arg, .done = done };
	s->timer = evtimer_new(peer->base, run, arg);
	s->deadline = evtimer_new(peer->base, slot_deadline, s);
	return s->timer && s->deadline ? 0 : -ENOMEM;
}

void cphttp_slot_free(struct cphttp_slot *s)
{
	slot_reset(s);
	if (s->timer)
		event_free(s->timer);
	if (s->deadline)
		event_free(s->deadline);
	s->timer = s->deadline = NULL;
}

static bool code_is_busy(int code)
{
	return code == 429 || code == 503;
}

/* One line per change of state: a run of the same error is logged once,
 * and a run of 429/503 (backpressure) once when it starts. */
void cphttp_failed(struct cphttp_slot *s, const char *what, const char *err)
{
	bool busy = code_is_busy(s->code);
	s->failures++;
	unsigned ms = cphttp_backoff_ms(s->failures, s->peer->backoff_cap_ms);
	if (s->retry_after_ms) {
		/* Obeyed, and spread as the poll cycle is: a fleet told the
		 * same Retry-After does not come back in the same second. */
		ms = s->retry_after_ms + cphttp_random_ms(s->retry_after_ms / 100 * s->peer->jitter_pct);
		s->hold_until_ms = now_ms() + s->retry_after_ms;
	}
	bool quiet = s->failures > 1 && (streq(s->last_err, err) || (busy && s->busy));
	if (busy && !quiet)
		log_warnx("control plane: busy (%s) while %s; backing off%s, next attempt in %u.%03u s", err, s->what,
			  s->retry_after_ms ? " as its Retry-After asks" : "", ms / 1000, ms % 1000);
	else if (!quiet)
		log_warnx("control plane: %s: %s; next attempt in %u.%03u s", what, err, ms / 1000, ms % 1000);
	else
		log_debug("control plane: %s: %s (%u in a row); next attempt in %u.%03u s", what, err, s->failures,
			  ms / 1000, ms % 1000);
	s->busy = busy;
	snprintf(s->last_err, sizeof(s->last_err), "%s", err);
	cphttp_schedule(s, ms);
}

void cphttp_succeeded(struct cphttp_slot *s)
{
	if (s->busy)
		log_info("control plane: no longer busy; %s works again after %u attempts", s->what, s->failures);
	else if (s->failures > 0)
		log_info("control plane: %s works again after %u failed attempts", s->what, s->failures);
	s->failures = 0;
	s->busy = false;
	s->hold_until_ms = 0;
	s->last_err[0] = '\0';
}

static void slot_http_error(enum evhttp_request_error err, void *arg)
{
	struct cphttp_slot *s = arg;
	s->has_http_err = true;
	s->http_err = err;
}

/* Certificate errors first: they are the ones an operator must not miss.
 * errno is of no use here: evhttp has shut the socket down by the time it
 * calls back. */
void cphttp_describe(struct cphttp_slot *s, struct evhttp_request *req, char *err, size_t size)
{
	static const char *const why[] = {
		[EVREQ_HTTP_TIMEOUT] = "no answer in time",
		[EVREQ_HTTP_EOF] = "connection closed before a complete answer",
		[EVREQ_HTTP_INVALID_HEADER] = "invalid answer header",
		[EVREQ_HTTP_BUFFER_ERROR] = "connection error",
		[EVREQ_HTTP_REQUEST_CANCEL] = "cancelled",
		[EVREQ_HTTP_DATA_TOO_LONG] = "answer too large",
	};
	const struct cphttp_peer *p = s->peer;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	struct bufferevent *bev = s->conn ? evhttp_connection_get_bufferevent(s->conn) : NULL;
	int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
	unsigned long tls = p->ssl_ctx && bev ? cphttp_tls_error(bev) : 0;
	if (s->expired) {
		snprintf(err, size, "no complete answer within %d s", s->timeout_s);
	} else if (code > 0) {
		snprintf(err, size, "HTTP %d", code);
	} else if (s->tls_err[0]) {
		snprintf(err, size, "%s", s->tls_err);
	} else if (dns) {
		snprintf(err, size, "cannot resolve %s: %s", p->host, evutil_gai_strerror(dns));
	} else if (tls && size > 5) {
		snprintf(err, size, "TLS: ");
		cphttp_tls_error_string(tls, err + 5, size - 5);
	} else if (s->has_http_err && (unsigned)s->http_err < ELEMENTSOF(why) && why[s->http_err]) {
		snprintf(err, size, "%s", why[s->http_err]);
	} else {
		snprintf(err, size, "cannot connect to %s port %d%s", p->host, p->port,
			 p->ssl_ctx ? " or the TLS handshake failed" : "");
	}
}

/* A fresh connection per request: an OpenSSL bufferevent cannot be
 * reconnected once its session is over, and one handshake per long poll
 * costs nothing worth saving. */
static int slot_connect(struct cphttp_slot *s, ev_ssize_t max_body)
{
	const struct cphttp_peer *p = s->peer;
	struct bufferevent *bev = NULL;
	if (p->ssl_ctx) {
		bev = cphttp_tls_bufferevent(s);
		if (!bev)
			return -ENOMEM;
	}
	s->conn = evhttp_connection_base_bufferevent_new(p->base, p->dns, bev, p->host, (unsigned short)p->port);
	if (!s->conn) {
		if (bev)
			bufferevent_free(bev);
		return -ENOMEM;
	}
	evhttp_connection_set_timeout(s->conn, s->timeout_s);
	evhttp_connection_set_max_body_size(s->conn, max_body);
	evhttp_connection_set_max_headers_size(s->conn, CPHTTP_HEADERS_MAX);
	evhttp_connection_set_retries(s->conn, 0);
	return 0;
}

static void slot_answered(struct evhttp_request *req, void *arg)
{
	struct cphttp_slot *s = arg;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	const char *ra = req ? evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After") : NULL;
	int64_t ms = ra && code >= 300 ? cphttp_retry_after_ms(ra, time(NULL)) : -1;
	s->req = NULL;
	evtimer_del(s->deadline);
	s->retry_after_ms = ms > 0 ? (unsigned)ms : 0;
	s->code = code;
	s->done(s, req, code);
}

int cphttp_request(struct cphttp_slot *s, enum evhttp_cmd_type type, const char *uri, const char *body,
		   size_t len, int timeout_s, ev_ssize_t max_body)
{
	const struct cphttp_peer *p = s->peer;
	slot_reset(s);
	s->timeout_s = timeout_s;
	int r = slot_connect(s, max_body);
	if (r < 0)
		return r;
	struct evhttp_request *req = evhttp_request_new(slot_answered, s);
	if (!req)
		return -ENOMEM;
	evhttp_request_set_error_cb(req, slot_http_error);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	r = evhttp_add_header(h, "Host", p->host_header) | evhttp_add_header(h, "Accept", "application/json") |
	    evhttp_add_header(h, "User-Agent", "kps-agent/" PACKAGE_VERSION) |
	    evhttp_add_header(h, "Connection", "close");
	if (p->auth->len)
		r |= evhttp_add_header(h, "Authorization", p->auth->data);
	if (body) {
		r |= evhttp_add_header(h, "Content-Type", "application/json");
		r |= evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	}
	if (r != 0) {
		evhttp_request_free(req);
		return -ENOMEM;
	}
	struct timeval limit = { timeout_s, 0 };
	if (evtimer_add(s->deadline, &limit) < 0) {
		evhttp_request_free(req);
		return -ENOMEM;
	}
	/* The answer may come before evhttp_make_request returns (a refused
	 * connection): slot_answered clears s->req itself. */
	s->req = req;
	s->started_ms = now_ms();
	if (evhttp_make_request(s->conn, req, type, uri) < 0) {
		s->req = NULL;
		evtimer_del(s->deadline);
		return -EIO;
	}
	return 0;
}
