/* The flags of apply_text (apply.h), which the monitor also passes to
 * its workers without linking the apply path. */
#pragma once

/* The result also goes to the outbox, for the control plane. */
#define APPLY_OUTBOX (1U << 0)
/* `check`: everything up to the first write, then the diffs in
 * res->changes; nothing written, nothing recorded. */
#define APPLY_CHECK (1U << 1)
