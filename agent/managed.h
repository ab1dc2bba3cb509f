/* The entries the agent manages, across users: an index in the state dir
 * (managed/<user> holds the path of the authorized_keys file the agent
 * wrote for that user) read by `list` and by the sweep that removes
 * entries past their key_expires_at. */
#pragma once

#include "authkeys.h"
#include "config.h"
#include "journal.h"

/* The index's directory in the state dir: one file per user. */
#define MANAGED_INDEX_DIR "managed"

struct managed_entry {
	char *user;
	char *path;
	struct authkeys_entry e;
};

/* Records that the agent wrote path for user (after a commit). */
int managed_note(struct journal *j, const char *user, const char *path);

/* The managed entries of every indexed user, or of user alone (may be
 * NULL). A user or file that is gone has none; a file that cannot be read
 * safely is skipped with a warning. */
int managed_list(const struct config *cfg, const char *user, struct managed_entry **ret, size_t *n);
void managed_entries_free(struct managed_entry *v, size_t n);

/* Removes the entries whose expiry-time is at or before now, each with an
 * audit record, under the state dir lock (-EBUSY when a task holds it).
 * *next: the earliest expiry still ahead, 0 when none. */
int managed_sweep(const struct config *cfg, int64_t now, int64_t *next);
