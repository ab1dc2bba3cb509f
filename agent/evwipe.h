/* Taking bytes out of a libevent buffer without leaving them in its
 * chunks: tasks carry passwords and private keys. */
#pragma once

#include <stddef.h>

struct evbuffer;

/* Moves n bytes out of in into dst (NULL: drops them), wiping them in
 * libevent's own chunks first, since draining alone only frees them. */
void evwipe_take(struct evbuffer *in, char *dst, size_t n);
