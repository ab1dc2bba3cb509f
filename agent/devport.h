/* The host's port ([channel] device): a virtio-serial port, or a tty in
 * tests. Has it opened, keeps trying while it is missing, and carries it across
 * the host's disconnects without losing what the host sends meanwhile. */
#pragma once

#include <stdbool.h>

#include <event2/event.h>

struct devport;

/* Called with an open descriptor, which it takes over (closing it on
 * failure); returns 0 or -errno. */
typedef int devport_attach_fn(void *arg, int fd);

/* Asks for path to be opened (the monitor opens it; the answer comes to
 * devport_opened); returns 0 or -errno. */
typedef int devport_request_fn(void *arg);
/* Asks for the port at once and calls attach once it is open; on failure
 * keeps asking every second, logging once. NULL when out of memory. */
struct devport *devport_new(struct event_base *base, const char *path, devport_request_fn *request,
			    devport_attach_fn *attach, void *arg);
/* The answer to a request: fd (taken over), or err (-errno). */
void devport_opened(struct devport *dp, int fd, int err);

/* The client on fd is about to close it: at end of file (eof) the host went
 * away, else the port failed. saw_input: the host sent something on it.
 * Call before closing fd. */
void devport_lost(struct devport *dp, int fd, bool eof, bool saw_input);

void devport_free(struct devport *dp);
