/* Buffers, string vectors, secrets and time: the helpers under every module. */
#include <stdarg.h>
#include <time.h>

#include <sys/mman.h>

#include "util.h"

int buf_read_fd(struct buf *b, int fd, size_t max)
{
	for (;;) {
		int r = buf_reserve(b, 65536);
		if (r < 0)
			return r;
		ssize_t n = read(fd, b->data + b->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		b->len += (size_t)n;
		if (b->len > max)
			return -EFBIG;
	}
	b->data[b->len] = '\0';
	return 0;
}

int buf_reserve(struct buf *b, size_t more)
{
	if (b->data && b->len + more + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	/* Not realloc: a buffer may hold a task read off the network, and
	 * realloc would leave the old copy in the heap unwiped. */
	char *n = malloc(cap);
	if (!n)
		return -ENOMEM;
	if (b->data) {
		memcpy(n, b->data, b->len + 1 <= b->cap ? b->len + 1 : b->cap);
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	b->data = n;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int r = buf_reserve(b, len);
	if (r < 0)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	*b = (struct buf){ 0 };
}

void buf_wipe(struct buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->cap);
	buf_free(b);
}

char *buf_steal(struct buf *b, size_t *len)
{
	if (!b->data) {
		if (buf_reserve(b, 0) < 0)
			return NULL;
		b->data[0] = '\0';
	}
	if (len)
		*len = b->len;
	char *d = b->data;
	*b = (struct buf){ 0 };
	return d;
}

int strv_push_take(struct strv *s, char *str)
{
	if (!str)
		return -ENOMEM;
	char **n = realloc(s->v, (s->n + 2) * sizeof(char *));
	if (!n) {
		free(str);
		return -ENOMEM;
	}
	s->v = n;
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

int strv_push(struct strv *s, const char *str)
{
	return strv_push_take(s, strdup(str));
}

bool strv_contains(const struct strv *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq(s->v[i], str))
			return true;
	return false;
}

void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){ 0 };
}

/* Pages of their own: never next to other data in a heap chunk that
 * realloc could copy, locked out of swap, left out of core dumps. */
static size_t secret_span(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (len + 1 + page - 1) / page * page;
}

int secret_set(struct secret *s, const char *src, size_t len)
{
	secret_wipe(s);
	if (len > SECRET_MAX)
		return -E2BIG;
	size_t span = secret_span(len);
	void *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* Both are best effort: a failure leaves a secret that is still wiped. */
	(void)madvise(p, span, MADV_DONTDUMP);
	(void)mlock(p, span);
	s->data = p;
	memcpy(s->data, src, len);
	s->data[len] = '\0';
	s->len = len;
	return 0;
}

void secret_wipe(struct secret *s)
{
	if (s->data) {
		size_t span = secret_span(s->len);
		explicit_bzero(s->data, span);
		munlock(s->data, span);
		munmap(s->data, span);
	}
	*s = (struct secret){ 0 };
}

void wipe_string(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool str_has_ctrl(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

bool str_is_token(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}
