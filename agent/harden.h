/* What every kps-agent process sets first: secrets pass through all of
 * them, so no core dumps, no ptrace by others, and every block cJSON or
 * libevent frees is wiped. */
#pragma once

/* free() that wipes the block first (cJSON's and libevent's). */
void harden_wiping_free(void *p);
/* No core dumps, not dumpable; cJSON wipes what it frees. */
void harden_process(void);
/* libevent wipes every buffer block it frees or moves (evmem.c: only the
 * processes that link libevent call it). */
void harden_events(void);
