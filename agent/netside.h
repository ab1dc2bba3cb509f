/* The network side of `kps-agent run`: the one process that speaks to the
 * control plane, to the local socket's clients and to the host's port. It
 * runs as [agent] unprivileged_user and opens no file (privdrop.h), frames
 * and size-checks what comes in, and hands each task to the monitor over
 * its link; results come back the same way. It holds no state of its own
 * that outlives it: the monitor starts it again after a SIGHUP or a
 * crash, and sends it the outbox again. */
#pragma once

/* The link's descriptors in a network side the monitor exec'd. */
#define NETSIDE_LINK_FD 3
#define NETSIDE_LISTEN_FD 4	/* the local socket's listener, when there is one */

/* The process itself (argv[0] "kps-agent-net"): takes the monitor's
 * configuration from its first frame, sets up its sources, drops
 * privileges, serves until the monitor goes away or SIGTERM. Returns the
 * exit code. */
int netside_main(void);
