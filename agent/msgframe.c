/* The daemon's frames to and from its workers (msgframe.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "msgframe.h"

void msgframe_header(uint8_t hdr[MSGFRAME_HEADER], enum msgframe_type type, uint32_t len)
{
	hdr[0] = MSGFRAME_MAGIC & 0xff;
	hdr[1] = MSGFRAME_MAGIC >> 8;
	hdr[2] = (uint8_t)(type & 0xff);
	hdr[3] = (uint8_t)((unsigned)type >> 8);
	msgframe_put32(hdr + 4, len);
}

int msgframe_peek(const void *buf, size_t avail, unsigned types, size_t max, struct msgframe *f)
{
	const uint8_t *b = buf;
	if (avail < MSGFRAME_HEADER)
		return -EAGAIN;
	unsigned magic = b[0] | (unsigned)b[1] << 8;
	unsigned type = b[2] | (unsigned)b[3] << 8;
	uint32_t len = msgframe_get32(b + 4);
	if (magic != MSGFRAME_MAGIC || type == 0 || type >= 32 || !(types & (1U << type)))
		return -EBADMSG;
	if (len > max)
		return -EMSGSIZE;
	*f = (struct msgframe){ .type = (enum msgframe_type)type, .len = len };
	return 0;
}

/* Exactly n bytes, or -EBADMSG at EOF before them. */
static int read_full(int fd, void *buf, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t r = read(fd, (char *)buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EBADMSG;
		off += (size_t)r;
	}
	return 0;
}

int msgframe_recv(int fd, unsigned types, size_t max, struct msgframe *f, char **payload)
{
	uint8_t hdr[MSGFRAME_HEADER];
	*payload = NULL;
	int r = read_full(fd, hdr, sizeof(hdr));
	if (r == 0)
		r = msgframe_peek(hdr, sizeof(hdr), types, max, f);
	if (r < 0)
		return r;
	char *p = malloc(f->len + 1);
	if (!p)
		return -ENOMEM;
	r = read_full(fd, p, f->len);
	if (r < 0) {
		explicit_bzero(p, f->len);
		free(p);
		return r;
	}
	p[f->len] = '\0';
	*payload = p;
	return 0;
}

int msgframe_send(int fd, enum msgframe_type type, const void *payload, size_t len)
{
	uint8_t hdr[MSGFRAME_HEADER];
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	msgframe_header(hdr, type, (uint32_t)len);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	size_t left = sizeof(hdr) + len;
	int i = 0;
	while (left > 0) {
		ssize_t w = writev(fd, iov + i, 2 - i);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		left -= (size_t)w;
		for (size_t k = (size_t)w; k > 0;) {
			size_t step = k < iov[i].iov_len ? k : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + step;
			iov[i].iov_len -= step;
			k -= step;
			if (i < 1 && iov[i].iov_len == 0)
				i++;
		}
	}
	return 0;
}
