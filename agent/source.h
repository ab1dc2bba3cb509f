/* What the network side hands each source of tasks (channel.c,
 * controlplane.c): the loop, the configuration, and the one way out for
 * what the source takes in. A source calls these and nothing of the
 * module that made it; answers come back as calls into the source
 * (channel_result, controlplane_post). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "msgframe.h"

struct source {
	struct event_base *base;
	const struct config *cfg;
	const char *server_id;		/* NULL when unknown */
	void *arg;
	/* One task line for the monitor; tag names a channel line (0 for the
	 * control plane). -ENOBUFS while the monitor does not keep up (the
	 * task is not taken), -EPIPE when it is gone. */
	int (*submit)(void *arg, enum msgframe_route route, uint32_t tag, const char *text, size_t len);
	/* The control plane's first poll answered or failed. */
	void (*settled)(void *arg);
	/* The control plane acknowledged (or refused for good) a result. */
	void (*posted)(void *arg, const char *task_id);
	/* Ask for [channel] device to be opened; the answer comes to
	 * channel_device_opened(). */
	int (*open_device)(void *arg);
};
