/* The local channel: a unix socket (root peers only) and a virtio-serial
 * port, newline-delimited JSON, one task per line in, one result per line
 * out, in order. */
#pragma once

#include "daemon.h"

struct channel;

/* Opens [channel] socket and device as configured (each may be off).
 * NULL with a log line when an enabled one cannot be opened. */
struct channel *channel_new(struct daemon *d);
void channel_free(struct channel *c);
