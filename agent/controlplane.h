/* The control plane, on the network side: the long poll for tasks and the
 * posting of results, over HTTP(S) (libevent evhttp, TLS through
 * libevent_openssl). The outbox itself is the monitor's: it sends the
 * results here one by one and takes each out once it is posted. */
#pragma once

#include <stddef.h>

struct source;
struct controlplane;

/* Starts polling {url}/v1/servers/{server_id}/tasks. NULL (and a log line)
 * when url is empty or the setup failed. src must outlive it. */
struct controlplane *controlplane_new(const struct source *src);
void controlplane_free(struct controlplane *p);
/* Posts task_id's result (json, len bytes) after those held before it;
 * src->posted() once the control plane took it. -ENOBUFS while too
 * many wait. */
int controlplane_post(struct controlplane *p, const char *task_id, const char *json, size_t len);
