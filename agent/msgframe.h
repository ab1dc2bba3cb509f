/* Frames between the daemon's processes (the monitor, its network side and
 * its workers): one message a frame, a typed header with the payload's
 * length, the size bounded at both ends. The receiver checks the header
 * before it reads or allocates the payload. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define MSGFRAME_HEADER 8		/* magic (2), type (2), length (4) */
#define MSGFRAME_MAGIC 0x4b50		/* "KP" */

enum msgframe_type {
	/* The monitor and a worker (a fresh exec of the agent, one task). */
	MSGFRAME_TASK = 1,	/* monitor -> worker: flags (u32), the task text */
	MSGFRAME_RECOVER = 2,	/* monitor -> worker: flags, code (u32 each), task_id, NUL, message */
	MSGFRAME_RESULT = 3,	/* worker -> monitor: the result's JSON */
	MSGFRAME_CONFIG = 4,	/* monitor -> worker or network side, first: its configuration (config.h settings) */
	MSGFRAME_SWEEP = 5,	/* monitor -> worker: no task, only the sweep of expired keys; no payload */
	MSGFRAME_SWEPT = 6,	/* worker -> monitor, last: status (u32: errno, 0 done), next expiry (u32 hi, u32 lo) */
	/* The network side -> the monitor. The monitor takes nothing on trust:
	 * it checks each frame's size, parses every task itself and answers. */
	MSGFRAME_NET_TASK = 8,	/* route (u32: MSGFRAME_ROUTE_*), tag (u32), the task text */
	MSGFRAME_NET_SETTLED = 9,	/* the control plane's first poll answered or failed: no payload */
	MSGFRAME_NET_POSTED = 10,	/* task_id: its result is acknowledged (or refused for good) */
	MSGFRAME_NET_DEVICE = 11,	/* no payload: open [channel] device again, send it over */
	/* The monitor -> the network side. */
	MSGFRAME_MON_RESULT = 16,	/* tag (u32), the result line for that channel line */
	MSGFRAME_MON_POST = 17,	/* task_id, NUL, the result to post to the control plane */
	MSGFRAME_MON_DEVICE = 18,	/* errno (u32, 0: the descriptor rides with the frame) */
};

/* Where a task came from, so that its result goes back the same way. */
enum msgframe_route {
	MSGFRAME_ROUTE_CONTROL_PLANE = 1,	/* tag 0; the result is posted */
	MSGFRAME_ROUTE_CHANNEL = 2,		/* tag: the network side's line, answered in MON_RESULT */
};

struct msgframe {
	enum msgframe_type type;
	size_t len;		/* the payload's */
};

/* The header of a frame of type carrying len bytes. */
void msgframe_header(uint8_t hdr[MSGFRAME_HEADER], enum msgframe_type type, uint32_t len);

/* Reads the header at the head of avail bytes. 0 with *f set; -EAGAIN
 * fewer than MSGFRAME_HEADER bytes yet; -EBADMSG not our magic, or a type
 * not in types (a mask of 1 << type); -EMSGSIZE a payload over max. */
int msgframe_peek(const void *buf, size_t avail, unsigned types, size_t max, struct msgframe *f);

/* One whole frame from a blocking fd, short reads and EINTR taken in
 * stride: 0 with *f and *payload (malloc'd, NUL-terminated, the caller
 * wipes and frees it); -EBADMSG also for EOF before the frame's end
 * (nothing allocated then), -EMSGSIZE, -ENOMEM, or read's -errno. */
int msgframe_recv(int fd, unsigned types, size_t max, struct msgframe *f, char **payload);

/* Writes one frame (header and payload) to a blocking fd. */
int msgframe_send(int fd, enum msgframe_type type, const void *payload, size_t len);

static inline uint32_t msgframe_get32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline void msgframe_put32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}
