/* One end of a socketpair between two of the daemon's processes, on the
 * loop: msgframe.h frames in and out, a descriptor riding with a frame
 * where one is passed. Input is checked before it is taken: a header
 * whose type the end does not accept, or a payload over its maximum, ends
 * the link. Every byte that passed through is wiped: frames carry tasks,
 * and tasks carry passwords and private keys. */
#pragma once

#include <event2/event.h>

#include "msgframe.h"

#define LINK_OUTPUT_MAX ((size_t)8 * 1024 * 1024)

struct link;

/* One whole frame. payload (NUL-terminated, f->len bytes) is wiped when
 * the call returns; fd is a descriptor that came with it (the callee's
 * to close) or -1. */
typedef void link_frame_fn(void *arg, const struct msgframe *f, const char *payload, int fd);
/* The link ended: 0 at end of file, -EBADMSG / -EMSGSIZE for a frame the
 * end refused, -ECONNRESET at end of file inside a frame, or read's
 * -errno. Nothing more is called after it; the
 * owner frees the link. */
typedef void link_closed_fn(void *arg, int err);

/* Takes fd over. types: a mask of 1 << type accepted; fd_types: those
 * that may bring a descriptor (any other that comes is closed); max: the
 * largest payload accepted. */
struct link *link_new(struct event_base *base, int fd, unsigned types, unsigned fd_types, size_t max,
		      link_frame_fn *frame, link_closed_fn *closed, void *arg);
/* Queues one frame whose payload is a then b (either may be empty), with
 * pass_fd (duplicated; -1: none) riding on its first byte. -ENOBUFS when
 * LINK_OUTPUT_MAX bytes wait already, -EPIPE after the link ended,
 * -ENOMEM. */
int link_send(struct link *l, enum msgframe_type type, const void *a, size_t alen, const void *b, size_t blen,
	      int pass_fd);
/* Bytes queued and not yet written. */
size_t link_pending(const struct link *l);
void link_free(struct link *l);
