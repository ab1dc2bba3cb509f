/* The operator's commands besides apply and run: check, submit, list,
 * status. Each returns the process exit code. */
#pragma once

#include "config.h"

/* A task from path, or stdin when path is NULL or "-"; NUL-terminated. */
int cli_read_task(const char *path, char **ret, size_t *len);

int cli_submit(const struct config *cfg, int argc, char **argv);
int cli_list(const struct config *cfg, int argc, char **argv);
int cli_status(const struct config *cfg, int argc, char **argv);

