/* Workers: each task is applied in a fresh exec of the agent (argv[0]
 * "kps-agent-worker"), never in a fork of the monitor, so that it holds
 * nothing of other tasks or of the network side. The monitor sends its
 * configuration and one job frame on the worker's socket and reads the
 * result and the sweep's frame back. spawn.c is the monitor's half. */
#pragma once

#include <sys/types.h>

#include "result.h"

#define WORKER_SOCKET_FD 3
#define WORKER_RESULT_MAX ((size_t)64 * 1024)
#define WORKER_CONFIG_MAX ((size_t)1024 * 1024)

struct config;

/* Starts argv0 (the helper executable exe_fd: kps-agent-tool or
 * kps-agent-net) with the socket on
 * WORKER_SOCKET_FD and keep_fds on the descriptors after it; 0 with *pid
 * and *fd (the monitor's end, close-on-exec) or -errno. The first frame
 * the monitor sends is the configuration (MSGFRAME_CONFIG). */
int worker_spawn(int exe_fd, const char *argv0, bool debug, const int *keep_fds, size_t n_keep, pid_t *pid,
		 int *fd);

/* Reads the monitor's CONFIG frame from fd (blocking) into cfg (always
 * initialised); 0 or -errno, logged. */
int worker_config(int fd, struct config *cfg);

/* The worker process: the configuration, then one TASK or RECOVER frame
 * in, one RESULT frame out, then the sweep of expired keys and its SWEPT
 * frame; or a SWEEP frame in, the sweep and SWEPT out. Returns the exit
 * code. */
int worker_main(void);
