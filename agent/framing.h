/* Pure pieces of the agent's two network inputs, kept apart from libevent
 * so that fuzzers can drive them: the local channel's newline framing and
 * the control plane's {"tasks": [...]} answer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum frame_kind {
	FRAME_NEED_MORE,	/* no complete line yet: read more */
	FRAME_LINE,		/* a line: take `take` bytes, the task is the first `len` */
	FRAME_EMPTY,		/* an empty line: take `take` bytes, nothing to run */
	FRAME_TOO_LONG,		/* a line too long for a task: take `take` bytes, answer once */
	FRAME_SKIP,		/* the rest of that line: take `take` bytes, nothing to say */
};

struct frame {
	enum frame_kind kind;
	size_t take;
	size_t len;
};

struct framer {
	size_t line_max;	/* with its "\r\n" */
	bool discarding;	/* inside a line too long to take */
};

/* Where the pending line ends: after its '\n' at eol, or at avail. */
static inline size_t framer_line_end(size_t avail, ssize_t eol)
{
	return eol >= 0 ? (size_t)eol + 1 : avail;
}

/* What to do with the avail bytes at the head of the input. eol: the
 * offset of the first '\n' in them, or -1; eof: the client sent its last
 * byte. tail: the last two bytes before framer_line_end() (tail[1] the
 * last; tail[0] unread for a one-byte line), for its "\r\n": the input
 * itself is never read, so a caller need not make it contiguous. */
struct frame framer_next(struct framer *f, const char tail[2], size_t avail, ssize_t eol, bool eof);

/* Calls each for every element of the array "tasks" in a control plane's
 * answer: an object as compact JSON text (the callee may keep nothing of
 * it: it is wiped and freed after the call), anything else with text NULL
 * (index counts from 1). A negative return stops the walk and is returned.
 * -EBADMSG: the answer is not an object with one array "tasks" and
 * nothing but white space after it, or it holds a NUL byte or the escape
 * \u0000 (cJSON would cut a string there). */
int tasklist_parse(const char *body, size_t len,
		   int (*each)(const char *text, size_t text_len, unsigned index, void *arg), void *arg);
