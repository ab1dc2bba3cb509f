/* `kps-agent check`: where the dry run stops instead of writing. The
 * task went through everything apply does before its first write (parse,
 * signature, policy, user, key path, plan, Match blocks, port, proof);
 * here the diffs are made and sshd judges the candidate config. */
#pragma once

#include "config.h"
#include "plan.h"
#include "sshd.h"
#include "task.h"

/* Fills res->changes with [{"path", "diff"}] and runs the candidate
 * sshd_config through sshd -T (which tests it as sshd -t does) and the
 * plan's checks of the effective values. Writes nothing but a temp file
 * in the state dir, removed again. -1 with res set when apply would fail. */
int check_plan(const struct config *cfg, struct plan *p, const struct sshd_settings *now, struct result *res);
