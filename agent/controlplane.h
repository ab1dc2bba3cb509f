/* The control plane: the long poll for tasks and the outbox of results,
 * over HTTP(S) (libevent evhttp, TLS through libevent_openssl). */
#pragma once

#include "daemon.h"

struct controlplane;

/* Starts polling {url}/v1/servers/{server_id}/tasks and sending the outbox.
 * NULL (and a log line) when url is empty or the setup failed. */
struct controlplane *controlplane_new(struct daemon *d);
void controlplane_free(struct controlplane *p);

/* A result was added to the outbox: send it now rather than at the next
 * backoff tick. */
void controlplane_outbox_kick(struct controlplane *p);
