/* The journal's index and cache (journalcache.c): derived from the state
 * dir, never fsync'd, rebuilt or lost at no cost but time. journal.h
 * includes this header; journal.c finds its records through the index. */
#pragma once

#include <time.h>

#include "safefile.h"

struct journal;

/* One record file, <task id>.json, and when it was written. */
struct journal_entry {
	char *id;
	struct timespec mtime;
};

/* The task ids stored in dir as <id>.json, oldest first (by mtime, then
 * id). Only names that are valid task ids and regular files count; a
 * safefile temp file never ends in .json. */
int journalcache_list(const struct safefile_dir *dir, struct journal_entry **ret, size_t *ret_n);
void journalcache_entries_free(struct journal_entry *v, size_t n);
/* How many names dir holds, "." and ".." aside: cheap, no stat. SIZE_MAX
 * when dir cannot be read. */
size_t journalcache_count(const struct safefile_dir *dir);

/* A small cache in the state dir: name -> (key, value). journal_cache_get
 * gives the value only when it was stored under the same key (-ENOENT
 * otherwise); journal_cache_put replaces it without fsync. */
int journal_cache_get(struct journal *j, const char *name, const char *key, char **value, size_t *len);
int journal_cache_put(struct journal *j, const char *name, const char *key, const char *value, size_t len);
