/* The result of a task: success, or one of the contract's KPS.AGENT.*
 * codes with a one-line message; emitted as JSON and read back from the
 * journal. Pure: no I/O. */
#pragma once

#include "util.h"

#define TASK_ID_MAX 64
#define SERVER_ID_MAX 128
#define RESULT_MSG_MAX 256

/* One-to-one with the contract's KPS.AGENT.* codes (result.c holds the table). */
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

/* The message is one line: control characters are replaced, and a cut
 * never splits a UTF-8 sequence. */
void result_init(struct result *res);
int result_fail(struct result *res, enum error_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int result_warn(struct result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int result_set_server_id(struct result *res, const char *server_id);
/* One line of JSON, no trailing newline; NULL on ENOMEM. */
char *result_to_json(const struct result *res);
int result_from_json(const char *text, size_t len, struct result *res);
void result_free(struct result *res);
