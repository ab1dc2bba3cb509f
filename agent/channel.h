/* The local channel, on the network side: a unix socket (root peers only;
 * the monitor binds it) and a virtio-serial port (the monitor opens it),
 * newline-delimited JSON, one task per line in, one result per line out,
 * in order. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define CHANNEL_RESULT_MAX ((size_t)64 * 1024)	/* one result line from the monitor */

struct source;
struct channel;

/* Serves listen_fd (the monitor's listener, taken over; -1: none) and
 * [channel] device. NULL when neither is configured, or with a log line
 * when one cannot be served. src must outlive the channel. */
struct channel *channel_new(const struct source *src, int listen_fd);
void channel_free(struct channel *c);
/* The monitor's result for the line it was handed under tag. */
void channel_result(struct channel *c, uint32_t tag, const char *json, size_t len);
/* Stopping: no new client, no new line from those connected; the lines
 * in hand still get their results. */
void channel_quiesce(struct channel *c);
/* A line still waits for its result, or a result to be written out. */
bool channel_busy(const struct channel *c);
/* The monitor opened the device (fd, taken over) or could not (err). */
void channel_device_opened(struct channel *c, int fd, int err);
