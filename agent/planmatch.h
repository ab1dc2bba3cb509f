/* The Match blocks a plan must agree with (planmatch.c). */
#pragma once

#include "plan.h"

/* Every Match block that can apply to the plan's user for some client
 * (in any file sshd reads, through Include) must leave PasswordAuthentication
 * and KbdInteractiveAuthentication as the plan sets them; -1 with res set
 * naming the block that does not. */
int planmatch_check(struct plan *p, const struct sshd_settings *s, struct result *res);
