/* The monitor's queue: a bounded FIFO of tasks, applied one at a time,
 * each in a fresh exec of the agent (worker.h). A worker that dies or runs
 * past its time is killed and a fresh one rolls its task back, while the
 * loop goes on; whatever happens, each job ends in exactly one call of
 * the done callback. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "config.h"
#include "msgframe.h"
#include "result.h"
#include "task.h"

#define QUEUE_MAX 1024

struct job {
	struct job *next;
	char *text;		/* the task; a rollback's message for route 0 */
	size_t len;
	enum msgframe_route route;	/* 0: the rollback of a task cut off before this start */
	uint32_t tag;			/* the network side's line, for a channel's task */
	unsigned gen;			/* the network side it came from */
	char task_id[TASK_ID_MAX + 1];
	bool sweep;			/* no task: the sweep of expired keys alone */
};

/* What a worker's sweep of expired keys found (MSGFRAME_SWEPT). */
struct sweep_report {
	int status;	/* 0, or -EBUSY when an apply from the command line held the lock */
	int64_t next;	/* the earliest expiry still ahead, 0 when none */
};

/* A job with its text (copied) and the task_id the caller parsed; NULL
 * when out of memory. */
struct job *job_new(const char *text, size_t len, enum msgframe_route route, uint32_t tag, unsigned gen,
		    const char *task_id);
/* A sweep job (route 0, no text). */
struct job *job_sweep_new(void);
void job_free(struct job *j);

struct queue;
/* The job's result, json its line: once a job but a sweep, as soon as
 * the worker gives it (or the queue makes one when the worker could not),
 * from the loop. */
typedef void queue_done_fn(void *arg, const struct job *j, const struct result *res, const char *json);
/* The job's worker ended (after done), the next job may start: swept is
 * what its sweep of expired keys found, NULL when it said nothing. Once a
 * job, sweep jobs included. */
typedef void queue_ended_fn(void *arg, const struct job *j, const struct sweep_report *swept);

/* cfg (what the workers run on) is the monitor's and must outlive the
 * queue (queue_set_config after a SIGHUP); tool_fd: kps-agent-tool
 * (helper.h), which the workers are. */
struct queue *queue_new(struct event_base *base, const struct config *cfg, int tool_fd, queue_done_fn *done,
			queue_ended_fn *ended, void *arg);
void queue_free(struct queue *q);
/* Takes j over; -ENOBUFS when the queue is full or stopping (j is the
 * caller's still). */
int queue_push(struct queue *q, struct job *j);
/* A task with this id is queued or in hand. */
bool queue_has(const struct queue *q, const char *task_id);
/* Nothing queued, nothing in hand. */
bool queue_idle(const struct queue *q);
size_t queue_length(const struct queue *q);
/* Drops what is queued (never started: its source sends it again) and
 * gives the task in hand grace_ms, then rolls it back. */
void queue_stop(struct queue *q, unsigned grace_ms);
/* SIGCHLD: true when pid was the queue's worker. */
bool queue_reaped(struct queue *q, pid_t pid);
/* The monitor's configuration was replaced (SIGHUP). */
void queue_set_config(struct queue *q, const struct config *cfg);
