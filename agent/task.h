/* Task: the JSON the control plane sends, parsed and validated into a
 * struct (task.c, on taskjson.c's strict reading). The result we answer is
 * result.h's. Pure: text in, structs out. */
#pragma once

#include "result.h"
#include "util.h"

#define TASK_MAX_BYTES (64 * 1024)
#define TASK_MAX_KEYS 100
#define KEYPAIR_NAME_MAX 64
#define USER_NAME_MAX 32
#define PUBLIC_KEY_MAX 16384
#define AUTH_KEY_MAX 16384
#define REQUESTER_MAX 128

enum task_action {
	TASK_ASSOCIATE,
	TASK_DISASSOCIATE,
};

enum auth_type {
	AUTH_NONE,
	AUTH_PASSWORD,
	AUTH_KEYPAIR,
};

struct task_key {
	char *name;		/* key pair name, [A-Za-z0-9._-]{1,64} */
	char *public_key;	/* normalised "type base64[ comment]"; NULL when not given */
};

struct task {
	char id[TASK_ID_MAX + 1];
	enum task_action action;
	/* associate: one or more, each with public_key.
	 * disassociate: the names to remove; none means every managed entry. */
	struct task_key *keys;
	size_t n_keys;
	char *user;		/* NULL: the configured default user */
	char *server_id;
	enum auth_type auth_type;
	struct secret auth_key;	/* password or private key text */
	int disable_password;	/* -1 absent, 0 false, 1 true */
	int port;		/* 0 absent, else 1..65535 */
	bool has_expiry;
	int64_t expires_at;	/* unix seconds, UTC */
	int64_t key_expires_at;	/* associate: the new entries stop working then; 0 never */
	char *requester;	/* who asked, for the audit trail; NULL when not named */
};

/* Parses and validates one task. Returns 0, or -1 with res->code and
 * res->msg set; res->task_id is filled in whenever the text carried a valid
 * task_id, so that even a refusal can be reported against it. */
/* The task_id alone, by the same rule as task_parse (the text scanned and
 * parsed as a whole, then task_id a token of 1..TASK_ID_MAX): "" when
 * task_parse would name none. For the monitor, which matches tasks
 * delivered again and names the task a dead worker held, and needs no
 * more of the task. */
void task_peek_id(const char *text, size_t len, char id[static TASK_ID_MAX + 1]);

int task_parse(const char *text, size_t len, struct task *task, struct result *res);
void task_free(struct task *task);

struct cJSON;
/* Wipes every string of a JSON tree that may hold a task, then frees it. */
void task_json_wipe_delete(struct cJSON *root);

/* RFC 3339 date-time into unix seconds; -EINVAL when it is not one. */
int task_time_parse(const char *s, int64_t *ret);
