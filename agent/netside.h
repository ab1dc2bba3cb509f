/* The network side of `kps-agent run`: the one process that speaks to the
 * control plane, to the local socket's clients and to the host's port. It
 * runs as [agent] unprivileged_user in an empty root (privdrop.h), frames
 * and size-checks what comes in, and hands each task to the monitor over
 * its link; results come back the same way. It holds no state of its own
 * that outlives it: the monitor starts it again after a SIGHUP or a
 * crash, and sends it the outbox again. */
#pragma once

#include <event2/event.h>

#include "config.h"
#include "msgframe.h"

/* The link's descriptors in a network side the monitor exec'd. */
#define NETSIDE_LINK_FD 3
#define NETSIDE_LISTEN_FD 4	/* the local socket's listener, when there is one */

struct netside;

struct event_base *netside_base(struct netside *n);
const struct config *netside_config(struct netside *n);
/* This VM's server_id (config or DMI), or NULL when unknown. */
const char *netside_server_id(struct netside *n);
/* The listener the monitor passed (NETSIDE_LISTEN_FD), handed over once;
 * -1 when there is none. */
int netside_take_listen_fd(struct netside *n);
/* Hands one task line to the monitor. tag names a channel line (0 for the
 * control plane). -ENOBUFS while the monitor does not keep up (the task
 * is not taken), -EPIPE when it is gone. */
int netside_submit(struct netside *n, enum msgframe_route route, uint32_t tag, const char *text, size_t len);
/* The control plane's first poll answered or failed. */
void netside_settled(struct netside *n);
/* The control plane acknowledged (or refused for good) task_id's result. */
void netside_posted(struct netside *n, const char *task_id);
/* Asks the monitor to open [channel] device; the answer comes to
 * channel_device_opened(). */
int netside_device_request(struct netside *n);

/* The process itself (argv[0] "kps-agent-net"): loads config_path as the
 * monitor did, sets up its sources, drops privileges, serves until the
 * monitor goes away or SIGTERM. Returns the exit code. */
int netside_main(const char *config_path);
