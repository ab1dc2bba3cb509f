/* systemd's service protocols, spoken directly: the notification socket
 * (sd_notify(3)), the watchdog's environment (sd_watchdog_enabled(3)) and
 * socket activation (sd_listen_fds(3)). All three are stable interfaces
 * (systemd's "Interface Portability and Stability" promise, and
 * sd_notify(3) gives a standalone version for programs that do not link
 * libsystemd). The monitor speaks them itself so that it need not map
 * libsystemd and the five compression and crypto libraries it pulls in. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define SDNOTIFY_LISTEN_FDS_START 3

/* Sends state ("READY=1", ...) to $NOTIFY_SOCKET; 0 when there is none,
 * 1 when sent, negative errno when it could not be. */
int sdnotify_send(const char *state);
__attribute__((format(printf, 1, 2))) int sdnotify_sendf(const char *fmt, ...);

/* The watchdog interval systemd set for this process ($WATCHDOG_USEC, when
 * $WATCHDOG_PID is absent or ours), 0 when none. */
uint64_t sdnotify_watchdog_usec(void);

/* How many sockets systemd passed this process ($LISTEN_FDS, when
 * $LISTEN_PID is ours), from SDNOTIFY_LISTEN_FDS_START; 0 when none. */
int sdnotify_listen_fds(void);

/* fd is a listening AF_UNIX stream socket bound to path. */
bool sdnotify_is_unix_listener(int fd, const char *path);
