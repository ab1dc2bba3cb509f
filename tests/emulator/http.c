/* The HTTP edge: every request comes in here (held first for --delay-ms),
 * is routed by its path, and leaves through http_reply(). Bodies are read
 * once, bounded, and wiped from libevent's buffers after the copy, as they
 * may carry a password or a private key. */
#include <stdarg.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "emulator.h"

#define PATH_SEGS_MAX 8

/* The strings of j, its siblings after it and everything below them. */
static void http_json_wipe_tree(cJSON *j)
{
	for (cJSON *c = j; c; c = c->next) {
		if (c->type & cJSON_IsReference)
			continue;
		http_json_wipe_tree(c->child);
		if (c->valuestring)
			explicit_bzero(c->valuestring, strlen(c->valuestring));
		if (c->string && !(c->type & cJSON_StringIsConst))
			explicit_bzero(c->string, strlen(c->string));
	}
}

void http_json_wipe(cJSON *j)
{
	if (!j)
		return;
	http_json_wipe_tree(j);
	cJSON_Delete(j);
}

bool http_json_is_name(const cJSON *j)
{
	return cJSON_IsString(j) && str_is_token(j->valuestring, NAME_MAX_LEN);
}

bool http_parse_ulong(const char *s, unsigned long max, unsigned long *ret)
{
	if (!s || !*s || strlen(s) > 20)
		return false;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		unsigned long d = (unsigned long)(*p - '0');
		if (d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*ret = v;
	return true;
}

int http_query(struct evhttp_request *req, struct evkeyvalq *q)
{
	TAILQ_INIT(q);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	if (!query || !*query)
		return 0;
	return evhttp_parse_query_str(query, q) < 0 ? -EINVAL : 0;
}

bool http_token_equal(const char *got, const char *want)
{
	if (!got)
		return false;
	size_t n = strlen(want);
	if (strlen(got) != n)
		return false;
	unsigned char diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(got[i] ^ want[i]);
	return diff == 0;
}

/* Overwrites what evbuffer holds, then empties it. */
static void http_wipe_input(struct evbuffer *in)
{
	int n = evbuffer_peek(in, -1, NULL, NULL, 0);
	if (n > 0) {
		struct iovec *v = calloc((size_t)n, sizeof(*v));
		if (v) {
			n = evbuffer_peek(in, -1, NULL, v, n);
			for (int i = 0; i < n; i++)
				explicit_bzero(v[i].iov_base, v[i].iov_len);
			free(v);
		}
	}
	evbuffer_drain(in, evbuffer_get_length(in));
}

int http_body_text(struct evhttp_request *req, struct buf *b)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	int r = len > BODY_MAX ? -EINVAL : buf_reserve(b, len);
	if (r == 0 && evbuffer_copyout(in, b->data, len) != (ev_ssize_t)len)
		r = -EIO;
	http_wipe_input(in);
	if (r < 0)
		return r;
	b->len = len;
	b->data[len] = '\0';
	return memchr(b->data, '\0', len) ? -EINVAL : 0;
}

int http_body_peek(struct evhttp_request *req, struct buf *b)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	int r = len > BODY_MAX ? -EINVAL : buf_reserve(b, len);
	if (r == 0 && evbuffer_copyout(in, b->data, len) != (ev_ssize_t)len)
		r = -EIO;
	if (r < 0)
		return r;
	b->len = len;
	b->data[len] = '\0';
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* -EINVAL when an object in j (or a sibling after it) names a member
 * twice: the emulator and the agent could each read a different one. */
static int json_check_unique(const cJSON *j)
{
	for (const cJSON *c = j; c; c = c->next) {
		size_t n = 0;
		for (const cJSON *m = c->child; cJSON_IsObject(c) && m; m = m->next)
			n++;
		if (n > 1) {
			const char **names = calloc(n, sizeof(*names));
			if (!names)
				return -ENOMEM;
			size_t i = 0;
			for (const cJSON *m = c->child; m; m = m->next)
				names[i++] = m->string ? m->string : "";
			qsort(names, n, sizeof(*names), name_cmp);
			bool dup = false;
			for (i = 1; i < n && !dup; i++)
				dup = streq(names[i - 1], names[i]);
			free(names);
			if (dup)
				return -EINVAL;
		}
		int r = json_check_unique(c->child);
		if (r < 0)
			return r;
	}
	return 0;
}

int http_body_json(struct evhttp_request *req, cJSON **ret)
{
	_cleanup_(buf_wipe) struct buf b = { 0 };
	int r = http_body_text(req, &b);
	if (r < 0)
		return r;
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(b.data, b.len + 1, &end, true);
	if (!j)
		return -EINVAL;
	r = json_check_unique(j);
	if (r < 0) {
		http_json_wipe(j);
		return r;
	}
	*ret = j;
	return 0;
}

static void wipe_free_cb(const void *data, size_t len, void *arg)
{
	(void)arg;
	explicit_bzero((void *)data, len);
	free((void *)data);
}

void http_reply(struct evhttp_request *req, int code, cJSON *json)
{
	/* a body no handler read (refused early) goes the same way */
	http_wipe_input(evhttp_request_get_input_buffer(req));
	char *text = json ? cJSON_PrintUnformatted(json) : NULL;
	cJSON_Delete(json);
	if (json && !text) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (!text) {
		evhttp_send_reply(req, code, NULL, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", "application/json");
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	size_t len = strlen(text);
	if (evbuffer_add_reference(out, text, len, wipe_free_cb, NULL) < 0) {
		wipe_free_cb(text, len, NULL);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_send_reply(req, code, NULL, NULL);
}

int api_fault(struct api_fault *f, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
	f->code = code;
	return -EINVAL;
}

void http_kps_error(struct evhttp_request *req, int code, const char *error_code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON *j = cJSON_CreateObject();
	if (j && (!cJSON_AddStringToObject(j, "error_code", error_code) ||
		  !cJSON_AddStringToObject(j, "error_msg", msg))) {
		cJSON_Delete(j);
		j = NULL;
	}
	if (!j) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	http_reply(req, code, j);
}

/* "/a/b/c" into {"a", "b", "c"}, each segment percent-decoded as a server
 * does ("%2E" is "."); -EINVAL for an empty segment, or one that decodes
 * to a '/' or a NUL. */
static int path_split(const char *path, struct strv *segs)
{
	if (!path || path[0] != '/')
		return -EINVAL;
	const char *p = path + 1;
	if (!*p)
		return 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || segs->n >= PATH_SEGS_MAX)
			return -EINVAL;
		_cleanup_free_ char *raw = strndup(p, n);
		if (!raw)
			return -ENOMEM;
		size_t len = 0;
		_cleanup_free_ char *s = evhttp_uridecode(raw, 0, &len);
		if (!s)
			return -ENOMEM;
		if (len == 0 || len != strlen(s) || strchr(s, '/'))
			return -EINVAL;
		int r = strv_push_take(segs, TAKE_PTR(s));
		if (r < 0)
			return r;
		if (!slash)
			return 0;
		p = slash + 1;
	}
}

static void http_route(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	_cleanup_strv_ struct strv segs = { 0 };
	if (path_split(path, &segs) < 0)
		goto not_found;
	if (segs.n == 0 || (segs.n == 2 && streq(segs.v[0], "v2") && streq(segs.v[1], "index.php"))) {
		tencent_handle(req);
		return;
	}
	if (streq(segs.v[0], "v3")) {
		huawei_handle(req, &segs);
		return;
	}
	if (streq(segs.v[0], "v1")) {
		agentapi_handle(req, &segs);
		return;
	}
not_found:
	http_kps_error(req, 404, KPS_NO_PATH, "no such path");
}

static void delay_fire(struct hold *h)
{
	http_route(hold_release(h));
}

void http_request_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	if (emu.opt.delay_ms == 0) {
		http_route(req);
		return;
	}
	/* The whole request waits, so a long poll picks its tasks only once
	 * the delay is over and none go to a client that left meanwhile. */
	struct hold *h = hold_new(req, delay_fire, NULL, NULL);
	if (!h || hold_arm(h, emu.opt.delay_ms) < 0) {
		if (h)
			req = hold_release(h);
		http_route(req);
	}
}
