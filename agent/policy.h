/* [policy]: what a task may ask for on this VM, the image builder's say.
 * Judged before the credential proof and before anything is planned. */
#pragma once

#include "config.h"
#include "plan.h"
#include "sshd.h"
#include "task.h"

/* -1 with res POLICY_DENIED naming the rule that refuses the task. A
 * disassociate under allow_password_login = no is let through with
 * plan->keep_password set and a warning in res: its keys go, password
 * login stays as it is. */
int policy_check(const struct config *cfg, const struct task *t, const struct sshd_settings *s, struct plan *plan,
		 struct result *res);
