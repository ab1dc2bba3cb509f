/* One kind of request to the control plane (the poll, or the result sender):
 * a fresh HTTP(S) connection per request under a deadline for the whole
 * request, and the pacing between attempts (backoff with full jitter,
 * Retry-After, backpressure logged once per episode). */
#pragma once

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/types.h>

#include "util.h"

#define CPHTTP_ERR_MAX 256
#define CPHTTP_RETRY_AFTER_MAX_S 600	/* a Retry-After past this is taken as this */

/* What the slots of one control plane share. */
struct cphttp_peer {
	struct event_base *base;
	struct evdns_base *dns;		/* NULL when the host is an IP literal */
	SSL_CTX *ssl_ctx;		/* NULL for http */
	const char *host;		/* connect, SNI, verification: no brackets */
	const char *host_header;
	bool host_is_ip;
	int port;
	const struct secret *auth;	/* "Bearer <token>"; empty without a token */
	unsigned jitter_pct;		/* spreads Retry-After like the poll cycle */
	unsigned backoff_cap_ms;	/* the backoff window's cap */
};

struct cphttp_slot;
/* The answer (req NULL, code 0 when there is none: see cphttp_describe). */
typedef void (*cphttp_done_fn)(struct cphttp_slot *s, struct evhttp_request *req, int code);

struct cphttp_slot {
	const struct cphttp_peer *peer;
	const char *what;			/* "polling for tasks": for the log */
	void *arg;
	cphttp_done_fn done;
	struct event *timer;			/* the next attempt */
	struct event *deadline;			/* the whole request in flight */
	struct evhttp_connection *conn;		/* the last request's; freed before the next */
	struct evhttp_request *req;		/* in flight */
	int64_t started_ms;
	int timeout_s;
	unsigned failures;			/* in a row: the backoff exponent */
	int64_t hold_until_ms;			/* Retry-After: no attempt before */
	int code;				/* HTTP status of the last answer; 0: none */
	unsigned retry_after_ms;		/* of the last answer, capped; 0: none */
	bool busy;				/* in a run of 429/503 answers */
	bool expired;				/* the deadline ended the last request */
	bool has_http_err;
	enum evhttp_request_error http_err;
	char tls_err[CPHTTP_ERR_MAX];		/* why the peer's certificate was refused */
	char last_err[CPHTTP_ERR_MAX];		/* repeated errors are logged once */
};

/* A client context for https: verification against ca_file (or the
 * system's CAs), TLS 1.2 or later, plaintext wiped after reading. */
int cphttp_tls_ctx(const char *ca_file, SSL_CTX **ret);
void cphttp_tls_free(SSL_CTX *ctx);
/* TLS (cptls.c, or none: cpnotls.c): a connecting OpenSSL bufferevent for
 * the slot's peer, NULL when out of memory; the first OpenSSL error it
 * queued (0: none) and its text. */
struct bufferevent *cphttp_tls_bufferevent(struct cphttp_slot *s);
unsigned long cphttp_tls_error(struct bufferevent *bev);
void cphttp_tls_error_string(unsigned long e, char *buf, size_t size);
/* run is the timer's callback (arg: arg). */
int cphttp_slot_init(struct cphttp_slot *s, const struct cphttp_peer *peer, const char *what,
		     event_callback_fn run, cphttp_done_fn done, void *arg);
/* Drops a request in flight without calling back. */
void cphttp_slot_free(struct cphttp_slot *s);
void cphttp_schedule(struct cphttp_slot *s, unsigned ms);
bool cphttp_scheduled(const struct cphttp_slot *s);
/* One request; done runs exactly once for it (unless the slot is freed),
 * at the latest timeout_s after this call. */
int cphttp_request(struct cphttp_slot *s, enum evhttp_cmd_type type, const char *uri, const char *body,
		   size_t len, int timeout_s, ev_ssize_t max_body);
/* A failed attempt: logged when the error is new, the next one scheduled
 * after the backoff or the server's Retry-After. */
void cphttp_failed(struct cphttp_slot *s, const char *what, const char *err);
void cphttp_succeeded(struct cphttp_slot *s);
/* Why the last request failed, for the log. */
void cphttp_describe(struct cphttp_slot *s, struct evhttp_request *req, char *err, size_t size);
/* Exponential backoff with full jitter: uniform in [0, min(cap, 1 s * 2^(n-1))]. */
unsigned cphttp_backoff_ms(unsigned failures, unsigned cap_ms);
/* Uniform in [0, max_ms]. */
unsigned cphttp_random_ms(unsigned max_ms);
/* Retry-After (delta-seconds or an HTTP-date) in ms from now, capped;
 * -EINVAL when it is neither. */
int64_t cphttp_retry_after_ms(const char *value, time_t now);
/* Appends seg to b as one path segment: percent-encoded past the unreserved
 * characters, and "." or ".." encoded whole, so that no server or proxy
 * takes it for a step up the path. */
int cphttp_append_segment(struct buf *b, const char *seg);
