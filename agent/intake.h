/* A task as it comes in on any route (control plane, socket, virtio,
 * apply, check): the signature first when verify_key is set, then the
 * parse, then the rules every task must meet before it is looked at. */
#pragma once

#include "config.h"
#include "task.h"

/* 0 with task filled, or -1 with res set (res->task_id named whenever the
 * text carried one). *trusted is false when the text's signature did not
 * verify: such a refusal must not be recorded under its task_id, or a
 * forged task would answer for the real one. */
int intake_task(const struct config *cfg, const char *server_id, const char *text, size_t len, struct task *task,
		struct result *res, bool *trusted);
