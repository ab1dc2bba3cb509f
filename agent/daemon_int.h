/* The monitor's state, shared by daemon.c (queue and workers) and
 * daemon_net.c (the network side): nothing outside the two includes it. */
#pragma once

#include <sys/types.h>

#include <event2/event.h>

#include "config.h"
#include "daemon.h"
#include "journal.h"
#include "link.h"
#include "msgframe.h"
#include "result.h"
#include "queue.h"
#include "task.h"

#define DAEMON_POSTS_MAX 16	/* results handed to the network side, not yet acknowledged */

struct daemon_net {
	pid_t pid;
	struct link *link;
	unsigned gen;			/* one more for every network side started */
	struct event *restart_timer;
	struct event *closed_ev;
	unsigned crashes;		/* in a row: the restart's backoff */
	bool restart_now;		/* SIGHUP: the next one starts at once */
	bool ended;			/* its link ended (logged): the SIGTERM that follows is ours */
	int listen_fd;
	char *bound_path;		/* the socket file we made */
	char posted[DAEMON_POSTS_MAX][TASK_ID_MAX + 1];	/* handed over, not yet acknowledged */
	int64_t device_opened_ms;
	bool queue_full;		/* logged once per episode */
};

struct daemon {
	struct config cfg;
	const char *config_path;
	char *server_id;
	struct event_base *base;
	struct event *signals[4];
	struct event *watchdog;
	struct event *idle_ev;		/* after each job: ready, expiry */
	struct event *ready_timer;
	struct event *expiry_timer;	/* the next key_expires_at, when one is ahead */
	struct queue *queue;
	struct daemon_net net;
	struct journal journal;		/* the outbox */
	int tool_fd;			/* kps-agent-tool, for the workers (helper.h) */
	int net_fd;			/* kps-agent-net, for the network side */
	int net_tls_fd;			/* kps-agent-net-tls, the same for an https control plane */
	int mark_fd;			/* the state dir's daemon.lock, for status */
	unsigned long applied, failed;
	bool stopping;
	bool ready;			/* READY=1 sent */
	bool waiting_source;		/* READY=1 waits for the control plane's first poll */
};

void daemon_event_free(struct event **ev);
void daemon_check_ready(struct daemon *d);

/* daemon_net.c */
void daemon_net_init(struct daemon *d);
int daemon_net_start(struct daemon *d, bool open_socket);
/* SIGHUP: a new network side with the new configuration (and a new
 * listener when the socket's path changed). */
void daemon_net_restart(struct daemon *d, bool new_socket);
void daemon_net_exited(struct daemon *d, int status);
void daemon_net_stop(struct daemon *d);
void daemon_net_free(struct daemon *d);
/* A channel task's result, back to the line it came on. */
void daemon_net_answer(struct daemon *d, const struct job *j, const char *json);
/* Hands the outbox's results to the network side, oldest first. */
void daemon_net_feed(struct daemon *d);
