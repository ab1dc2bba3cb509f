/* Taking bytes out of a libevent buffer, wiped (evwipe.h). */
#include <event2/buffer.h>

#include "evwipe.h"
#include "util.h"

/* Moves n bytes out of the buffer into dst (NULL: drops them), wiping them
 * in libevent's own chunks first, since draining alone only frees them. */
void evwipe_take(struct evbuffer *in, char *dst, size_t n)
{
	struct evbuffer_iovec v[16];
	while (n > 0) {
		int k = evbuffer_peek(in, (ev_ssize_t)n, NULL, v, (int)ELEMENTSOF(v));
		size_t done = 0;
		for (int i = 0; i < k && i < (int)ELEMENTSOF(v) && done < n; i++) {
			size_t len = v[i].iov_len < n - done ? v[i].iov_len : n - done;
			if (dst)
				memcpy(dst + done, v[i].iov_base, len);
			explicit_bzero(v[i].iov_base, len);
			done += len;
		}
		if (done == 0)
			return;
		evbuffer_drain(in, done);
		n -= done;
		if (dst)
			dst += done;
	}
}
