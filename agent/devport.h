/* The host's port ([channel] device): a virtio-serial port, or a tty in
 * tests. Opens it, keeps trying while it is missing, and carries it across
 * the host's disconnects without losing what the host sends meanwhile. */
#pragma once

#include <stdbool.h>

#include <event2/event.h>

struct devport;

/* Called with an open descriptor, which it takes over (closing it on
 * failure); returns 0 or -errno. */
typedef int devport_attach_fn(void *arg, int fd);

/* Opens path at once and calls attach; on failure keeps trying every
 * second, logging once. NULL when out of memory. */
struct devport *devport_new(struct event_base *base, const char *path, devport_attach_fn *attach, void *arg);

/* The client on fd is about to close it: at end of file (eof) the host went
 * away, else the port failed. saw_input: the host sent something on it.
 * Call before closing fd. */
void devport_lost(struct devport *dp, int fd, bool eof, bool saw_input);

void devport_free(struct devport *dp);
