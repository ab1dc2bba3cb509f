/* The files of a plan (planfile.c), shared by plan.c, plankeys.c and
 * planmatch.c. Functions that take a result return 0, or -1 with res set,
 * as the plan_* functions do. Only plan*.c include this header. */
#pragma once

#include <limits.h>

#include "plan.h"

/* sshd reads Include files this deep, and resolves relative names here. */
#define PLAN_INCLUDE_DEPTH 8
#define SSHD_SYSCONFDIR "/etc/ssh"

/* Reads f->path with the owner checks of its walk user; a missing ~/.ssh
 * reads as an empty file that will be created (f->dir_missing). */
int planfile_read(struct plan_file *f, size_t max, struct result *res);
/* Takes text as f's new content; the same as the old leaves f unchanged. */
void planfile_set_new(struct plan_file *f, char *text, size_t len);
void planfile_free(struct plan_file *f);

/* The index of path among the plan's sshd_config files, read on first use
 * (the first one read must exist); -1 with res set on failure. */
ssize_t planfile_conf_index(struct plan *p, const char *path, struct result *res);
/* A file under the vendor config's directory (/usr/etc/ssh): the package's,
 * never written. */
bool planfile_is_vendor(const struct plan *p, const char *path);
/* The glob an Include argument names: relative to SSHD_SYSCONFDIR as sshd
 * takes it. */
void planfile_include_pattern(const char *arg, char pattern[static PATH_MAX]);
