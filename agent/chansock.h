/* The local channel's listening socket, made by the monitor (root) and
 * served by the network side: systemd's when it passed one for the path
 * (socket activation), else bound here 0600 from the first moment. */
#pragma once

#include <stdbool.h>

/* A non-blocking listening socket for path, or -errno: -EEXIST a file
 * that is not a socket is there, -EADDRINUSE another agent listens there.
 * *bound: this process made the file (unlink it at the end). */
int chansock_open(const char *path, bool *bound);
/* Why chansock_open failed, for the log. */
const char *chansock_strerror(int err);
