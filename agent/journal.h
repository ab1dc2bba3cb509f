/* The state dir's durable records (journal.c): the lock that serialises
 * tasks, the journal of results by task_id, the outbox, and the backups of
 * the task in hand; each is fsync'd before the agent acts on it. The index
 * that finds records and the sshd -T cache are journalcache.h's. */
#pragma once

#include <sys/types.h>

#include "journalcache.h"
#include "safefile.h"
#include "task.h"

#define JOURNAL_KEEP_DEFAULT 1000
/* The backups of the task in hand, in the state dir. */
#define MANIFEST "inflight.json"

/* results/ and outbox/ name a task's file so. */
static inline void journal_file_name(const char *task_id, char *name, size_t size)
{
	snprintf(name, size, "%s.json", task_id);
}

struct journal {
	struct safefile_dir dir;	/* the state dir itself */
	struct safefile_dir results;	/* results/<task_id>.json */
	struct safefile_dir outbox;	/* outbox/<task_id>.json: not yet acknowledged */
	int lock_fd;
	size_t keep;			/* acknowledged results kept ([agent] results_keep) */
};

/* One file the task in hand touches, as it was before. */
struct backup_file {
	char *path;		/* absolute path */
	uid_t walk_uid;		/* the user whose path it is (safefile walk) */
	gid_t walk_gid;
	char *home;		/* that user's home, for the walk */
	bool existed;
	uid_t uid;
	gid_t gid;
	mode_t mode;
	char *data;
	size_t len;
	bool dir_created;	/* the task created the directory holding it */
	bool sshd_config;	/* a file sshd reads: reload after restoring */
	bool written;		/* an sshd_config file the task wrote (in memory; after a crash all count; a key file tells by its text) */
	char *ours;		/* a key file: what the task writes, to undo its edit alone */
	size_t ours_len;
};

struct backup {
	char task_id[TASK_ID_MAX + 1];
	char *server_id;
	struct backup_file *files;
	size_t n;
};

/* keep: acknowledged results kept, newest first ([agent] results_keep). */
int journal_open(const char *state_dir, size_t keep, struct journal *j, char *msg, size_t msglen);
void journal_close(struct journal *j);
/* Waits for the lock, at most timeout_ms; -ETIMEDOUT after. */
int journal_lock(struct journal *j, int timeout_ms);

/* 0 and the recorded result, or -ENOENT. */
int journal_lookup(struct journal *j, const char *task_id, struct result *res);
/* Records the result durably (fsync) before anyone is told of it, then
 * prunes the journal. */
int journal_record(struct journal *j, const struct result *res);
/* Drops acknowledged results (not in the outbox) past the newest j->keep;
 * keep_id (may be NULL), the result just recorded, is never dropped. */
int journal_prune(struct journal *j, const char *keep_id);

/* The outbox: results the control plane has not acknowledged yet, kept
 * (fsync'd) across restarts until journal_outbox_remove. */
int journal_outbox_put(struct journal *j, const struct result *res);
/* Task ids in the outbox, oldest first. */
int journal_outbox_list(struct journal *j, struct strv *ids);
/* The result line stored for task_id; -ENOENT when gone. */
int journal_outbox_get(struct journal *j, const char *task_id, char **json, size_t *len);
int journal_outbox_remove(struct journal *j, const char *task_id);

/* Durably writes the backups (one manifest with the contents): from here
 * on a crash is rolled back by the next start. */
int journal_backup_write(struct journal *j, const struct backup *b);
/* The manifest of an interrupted task, or -ENOENT. */
int journal_backup_read(struct journal *j, struct backup *b);
/* Forgets the backups: the task committed or was rolled back. */
int journal_backup_clear(struct journal *j);
int backup_add(struct backup *b, const struct backup_file *f);

void backup_free(struct backup *b);
