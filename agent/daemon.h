/* `kps-agent run`: the monitor. It stays root and small: one loop, the
 * queue, one worker at a time (a fresh exec, worker.h), the journal's
 * outbox, and the network side (netside.h), a child it starts as
 * [agent] unprivileged_user and takes nothing from on trust: every frame
 * is size-checked, every task parsed here again, every acknowledgement
 * matched to a result it was given. */
#pragma once

#include "config.h"

#define DAEMON_QUEUE_MAX 1024
/* In the state dir: locked by the running daemon, which writes its pid. */
#define DAEMON_LOCK "daemon.lock"

/* Runs the daemon until SIGTERM; returns the exit code. Takes cfg over
 * (it is left empty); config_path is what SIGHUP reloads (NULL: the
 * default path). */
int daemon_run(struct config *cfg, const char *config_path);
