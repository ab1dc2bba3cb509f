/* The strict JSON reading under task_parse (taskjson.c). Each refusal is an
 * INVALID_TASK result with a message; functions return 0 or -1 with res
 * set, as task_parse does. Only task.c and taskjson.c include this. */
#pragma once

#include "result.h"
#include "task.h"

/* Nearly every refusal is this one. The -1 is result_fail's, spelt out for
 * the static analyzer, which does not follow variadic calls. */
#define invalid(res, ...) (result_fail((res), ERR_INVALID_TASK, __VA_ARGS__), -1)

/* Task text quoted in a message is cut here: a message is one short line. */
#define TASKJSON_ECHO_MAX 40
#define TASKJSON_ECHO_BUF (TASKJSON_ECHO_MAX + 4)

/* An IO_ERROR "out of memory" result; -1. */
int taskjson_oom(struct result *res);
/* Task text quoted in a message: printable ASCII, cut short. */
const char *taskjson_echo(const char *s, char buf[static TASKJSON_ECHO_BUF]);
/* "a string", "a number", ... for messages. */
const char *taskjson_kind(const cJSON *j);

/* The raw text before cJSON reads it: no NUL, no \u0000, nesting bounded. */
int taskjson_scan(const char *text, size_t len, struct result *res);
/* One JSON object and nothing after it; *ret is freed with
 * taskjson_wipe_deletep. */
int taskjson_parse(const char *text, size_t len, cJSON **ret, struct result *res);
/* Wipes every string of the tree, then frees it (a _cleanup_ handler). */
void taskjson_wipe_deletep(cJSON **j);
/* No object in the tree repeats a member name. */
int taskjson_check_duplicates(const cJSON *root, struct result *res);
/* Every member of obj is one of known (NULL-terminated); pre prefixes the
 * member's name in the message ("server."). */
int taskjson_check_fields(const cJSON *obj, const char *pre, const char *const *known, struct result *res);

/* The member when the object has exactly one of that name, else NULL. */
const cJSON *taskjson_get_one(const cJSON *obj, const char *name);
/* A string member; *ret is NULL when it is absent and not required. */
int taskjson_get_string(const cJSON *obj, const char *pre, const char *name, bool required, const char **ret,
			struct result *res);
/* The same, holding 1-max characters of [A-Za-z0-9._-]. */
int taskjson_get_token(const cJSON *obj, const char *pre, const char *name, bool required, size_t max,
		       const char **ret, struct result *res);
