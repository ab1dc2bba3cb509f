/* Task and result: the JSON the control plane sends and the JSON we answer.
 * Pure: text in, structs out, and back. */
#pragma once

#include "util.h"

#define TASK_MAX_BYTES (64 * 1024)
#define TASK_ID_MAX 64
#define TASK_MAX_KEYS 100
#define KEYPAIR_NAME_MAX 64
#define SERVER_ID_MAX 128
#define USER_NAME_MAX 32
#define PUBLIC_KEY_MAX 16384
#define AUTH_KEY_MAX 16384
#define RESULT_MSG_MAX 256
#define REQUESTER_MAX 128

/* One-to-one with the contract's KPS.AGENT.* codes (task.c holds the table). */
enum error_code {
	ERR_NONE = 0,
	ERR_INVALID_TASK,
	ERR_UNSUPPORTED,
	ERR_EXPIRED,
	ERR_WRONG_SERVER,
	ERR_USER_NOT_FOUND,
	ERR_AUTH_FAILED,
	ERR_SSHD_UNREACHABLE,
	ERR_UNSAFE_PATH,
	ERR_SSHD_CONFIG_INVALID,
	ERR_RELOAD_FAILED,
	ERR_PROBE_FAILED,
	ERR_IO_ERROR,
	ERR_TIMEOUT,
	ERR_PORT_IN_USE,
	ERR_BAD_SIGNATURE,
	ERR_POLICY_DENIED,
	ERR_COUNT,
};

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

struct result {
	char task_id[TASK_ID_MAX + 1];
	char *server_id;
	enum error_code code;	/* ERR_NONE: SUCCESS */
	char msg[RESULT_MSG_MAX];
	struct strv warnings;
	int64_t duration_ms;	/* < 0: not reported */
	char *changes;		/* check: a JSON array of {"path", "diff"}; NULL otherwise */
	int64_t hold_until;	/* the journal keeps this result until then (the task's expires_at) */
};

const char *error_code_name(enum error_code code);	/* "KPS.AGENT.INVALID_TASK" */
enum error_code error_code_from_name(const char *name);	/* ERR_COUNT when unknown */

/* Parses and validates one task. Returns 0, or -1 with res->code and
 * res->msg set; res->task_id is filled in whenever the text carried a valid
 * task_id, so that even a refusal can be reported against it. */
int task_parse(const char *text, size_t len, struct task *task, struct result *res);
void task_free(struct task *task);

/* Result helpers. The message is one line: control characters are replaced. */
void result_init(struct result *res);
int result_fail(struct result *res, enum error_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int result_warn(struct result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int result_set_server_id(struct result *res, const char *server_id);
/* One line of JSON, no trailing newline; NULL on ENOMEM. */
char *result_to_json(const struct result *res);
int result_from_json(const char *text, size_t len, struct result *res);
void result_free(struct result *res);

struct cJSON;
/* Wipes every string of a JSON tree that may hold a task, then frees it. */
void task_json_wipe_delete(struct cJSON *root);

/* RFC 3339 date-time into unix seconds; -EINVAL when it is not one. */
int task_time_parse(const char *s, int64_t *ret);
