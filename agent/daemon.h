/* The daemon: one libevent loop, sources in, one bounded queue, one worker
 * process at a time, results out. poll.c and channel.c feed it. */
#pragma once

#include <event2/event.h>

#include "config.h"
#include "task.h"

#define DAEMON_QUEUE_MAX 1024

enum task_source {
	SOURCE_CONTROL_PLANE,	/* results go to the outbox and are posted */
	SOURCE_CHANNEL,		/* results go back on the socket or port */
};

struct daemon;

/* Called on the loop once the task is done; json is the result line
 * (no newline), res the parsed result. */
typedef void (*daemon_done_fn)(const struct result *res, const char *json, void *arg);

struct event_base *daemon_base(struct daemon *d);
const struct config *daemon_config(struct daemon *d);
/* This VM's server_id (config or DMI), or NULL when unknown. */
const char *daemon_server_id(struct daemon *d);

/* Queues one task text (copied; the caller wipes its own copy). done is
 * called with arg when it finished. -ENOBUFS when the queue is full,
 * -ENOMEM; nothing queued then. */
int daemon_submit(struct daemon *d, const char *text, size_t len, enum task_source source, daemon_done_fn done,
		  void *arg);

/* Forgets every pending callback carrying arg (a client that went away);
 * its tasks still run. */
void daemon_detach(struct daemon *d, const void *arg);

/* The control plane's first poll answered (its tasks are queued) or
 * failed: once the queue is empty the daemon reports READY=1, so that the
 * unit, ordered before sshd, lets logins in only after queued tasks. */
void daemon_source_settled(struct daemon *d);

/* Runs the daemon until SIGTERM; returns the exit code. Takes cfg over
 * (it is left empty); config_path is what SIGHUP reloads (NULL: the
 * default path). */
int daemon_run(struct config *cfg, const char *config_path);
