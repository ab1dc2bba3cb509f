/* One task as one transaction: plan, back up, write, reload, probe, then
 * commit or roll back. `apply` and the daemon both come through here. */
#pragma once

#include "applyflags.h"
#include "config.h"
#include "journal.h"
#include "task.h"

/* Parses text, serialises on the state dir lock, answers a replayed
 * task_id from the journal, applies, and records the result before
 * returning it. res is always filled. Returns 0 (SUCCESS) or -1 (FAILED). */
int apply_text(const struct config *cfg, const char *text, size_t len, unsigned flags, struct result *res);

/* Applies one parsed task with the lock held; no journal record. */
int apply_task(const struct config *cfg, struct journal *j, const struct task *task, struct result *res);

/* Rolls back a task that was cut off mid-apply (its backups are still in
 * the state dir) and records it FAILED with code and msg (in the outbox
 * too with APPLY_OUTBOX). 0 when there was nothing to do or the rollback
 * succeeded. */
int apply_recover(const struct config *cfg, struct journal *j, unsigned flags, enum error_code code, const char *msg);
