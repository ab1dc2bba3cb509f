/* The JSON under task_parse, read strictly: the raw text checked before
 * cJSON sees it, one value and nothing after it, no member name twice, no
 * member the schema does not know, and every string of the tree wiped
 * before it is freed (a task may carry a secret anywhere). The refusals
 * are INVALID_TASK results whose message quotes at most a short, printable
 * piece of the text. Pure: no I/O. */
#include "taskjson.h"

/* The schema nests three levels (task, server, auth); anything much deeper
 * is aimed at the parser's stack, not a task. */
#define TASK_MAX_DEPTH 8

int taskjson_oom(struct result *res)
{
	result_fail(res, ERR_IO_ERROR, "out of memory");
	return -1;	/* as invalid() */
}

/* Every string in the tree is wiped, not only server.auth.key: a malformed
 * task may carry the secret anywhere (a duplicate, a misspelt field, the
 * wrong nesting), and wiping 64 KiB costs nothing. */
/* NOLINTNEXTLINE(misc-no-recursion): one level a nesting level, which cJSON's parser caps (CJSON_NESTING_LIMIT) */
static void json_wipe(cJSON *item)
{
	for (; item; item = item->next) {
		if (item->valuestring)
			explicit_bzero(item->valuestring, strlen(item->valuestring));
		if (item->string)
			explicit_bzero(item->string, strlen(item->string));
		json_wipe(item->child);
	}
}

void taskjson_wipe_deletep(cJSON **j)
{
	json_wipe(*j);
	cJSON_Delete(*j);
}

static void text_wipep(char **s)
{
	wipe_string(*s);
}

const char *taskjson_echo(const char *s, char buf[static TASKJSON_ECHO_BUF])
{
	size_t i = 0;
	for (; i < TASKJSON_ECHO_MAX && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
	}
	buf[i] = '\0';
	if (s[i])
		snprintf(buf + i, TASKJSON_ECHO_BUF - i, "...");
	return buf;
}

const char *taskjson_kind(const cJSON *j)
{
	if (cJSON_IsString(j))
		return "a string";
	if (cJSON_IsNumber(j))
		return "a number";
	if (cJSON_IsBool(j))
		return "a boolean";
	if (cJSON_IsArray(j))
		return "an array";
	if (cJSON_IsObject(j))
		return "an object";
	return "null";
}

/* Looks at the raw text before cJSON does: cJSON reads \u0000 as the end of
 * the string ("a\u0000b" would become "a"), and it recurses once per level
 * of nesting, up to 1000. */
int taskjson_scan(const char *text, size_t len, struct result *res)
{
	if (memchr(text, '\0', len))
		return invalid(res, "task contains a NUL byte");
	bool in_string = false;
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (in_string && c == '\\') {
			if (len - i > 5 && memcmp(text + i + 1, "u0000", 5) == 0)
				return invalid(res, "task contains the escape \\u0000");
			i++;
		} else if (c == '"') {
			in_string = !in_string;
		} else if (!in_string && (c == '{' || c == '[') && ++depth > TASK_MAX_DEPTH) {
			return invalid(res, "task nests deeper than %d levels", TASK_MAX_DEPTH);
		} else if (!in_string && (c == '}' || c == ']') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

int taskjson_parse(const char *text, size_t len, cJSON **ret, struct result *res)
{
	_cleanup_(text_wipep) char *copy = strndup(text, len);
	if (!copy)
		return taskjson_oom(res);
	/* Trailing data is looked for here rather than with cJSON's
	 * require_null_terminated: on that refusal cJSON frees the tree itself,
	 * secret and all, without wiping it. */
	const char *end = NULL;
	_cleanup_(taskjson_wipe_deletep) cJSON *root =
		cJSON_ParseWithLengthOpts(copy, len, &end, false);
	if (!root)
		return invalid(res, "task is not valid JSON (near byte %zu)",
			       end ? (size_t)(end - copy) : 0);
	end += strspn(end, " \t\r\n");
	if (end != copy + len)
		return invalid(res, "task has data after the JSON value (byte %zu)",
			       (size_t)(end - copy));
	if (!cJSON_IsObject(root))
		return invalid(res, "task is %s, not a JSON object", taskjson_kind(root));
	*ret = TAKE_PTR(root);
	return 0;
}

/* The member when the object has exactly one of that name. */
const cJSON *taskjson_get_one(const cJSON *obj, const char *name)
{
	const cJSON *found = NULL, *c;
	cJSON_ArrayForEach(c, obj) {
		if (!streq(c->string, name))
			continue;
		if (found)
			return NULL;
		found = c;
	}
	return found;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 with *dup set when some object in the tree repeats a member name. */
/* NOLINTNEXTLINE(misc-no-recursion): on a task, which taskjson_scan keeps within TASK_MAX_DEPTH */
static int json_find_duplicate(const cJSON *item, const char **dup)
{
	const cJSON *c;
	int n = cJSON_GetArraySize(item);
	if (cJSON_IsObject(item) && n > 1) {
		_cleanup_free_ const char **names = calloc((size_t)n, sizeof(*names));
		size_t i = 0;
		if (!names)
			return -ENOMEM;
		cJSON_ArrayForEach(c, item)
			names[i++] = c->string;
		qsort(names, i, sizeof(*names), name_cmp);
		for (size_t j = 1; j < i; j++)
			if (streq(names[j - 1], names[j])) {
				*dup = names[j];
				return 1;
			}
	}
	cJSON_ArrayForEach(c, item) {
		int r = json_find_duplicate(c, dup);
		if (r != 0)
			return r;
	}
	return 0;
}

/* cJSON keeps both members of a repeated name and its lookups find the
 * first; a reader that takes the last would see another task. */
int taskjson_check_duplicates(const cJSON *root, struct result *res)
{
	const char *dup = NULL;
	int r = json_find_duplicate(root, &dup);
	if (r < 0)
		return taskjson_oom(res);
	if (r > 0) {
		char e[TASKJSON_ECHO_BUF];
		return invalid(res, "field \"%s\" appears twice", taskjson_echo(dup, e));
	}
	return 0;
}

int taskjson_check_fields(const cJSON *obj, const char *pre, const char *const *known,
			  struct result *res)
{
	const cJSON *c;
	char e[TASKJSON_ECHO_BUF];
	cJSON_ArrayForEach(c, obj) {
		const char *const *k = known;
		while (*k && !streq(*k, c->string))
			k++;
		if (!*k)
			return invalid(res, "unknown field \"%s%s\"", pre, taskjson_echo(c->string, e));
	}
	return 0;
}

/* A string member; *ret is NULL when it is absent and not required. */
int taskjson_get_string(const cJSON *obj, const char *pre, const char *name, bool required,
			const char **ret, struct result *res)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
	*ret = NULL;
	if (!j && required)
		return invalid(res, "%s%s is missing", pre, name);
	if (!j)
		return 0;
	if (!cJSON_IsString(j))
		return invalid(res, "%s%s must be a string, not %s", pre, name, taskjson_kind(j));
	*ret = j->valuestring;
	return 0;
}

int taskjson_get_token(const cJSON *obj, const char *pre, const char *name, bool required, size_t max,
		       const char **ret, struct result *res)
{
	if (taskjson_get_string(obj, pre, name, required, ret, res) < 0)
		return -1;
	if (*ret && !str_is_token(*ret, max))
		return invalid(res, "%s%s must be 1-%zu characters of [A-Za-z0-9._-]", pre, name,
			       max);
	return 0;
}

void task_json_wipe_delete(struct cJSON *root)
{
	json_wipe(root);
	cJSON_Delete(root);
}

void task_peek_id(const char *text, size_t len, char id[static TASK_ID_MAX + 1])
{
	_cleanup_(taskjson_wipe_deletep) cJSON *root = NULL;
	struct result res;
	id[0] = '\0';
	if (!text || len == 0 || len > (size_t)TASK_MAX_BYTES)
		return;
	result_init(&res);
	if (taskjson_scan(text, len, &res) == 0 && taskjson_parse(text, len, &root, &res) == 0) {
		const cJSON *v = taskjson_get_one(root, "task_id");
		if (cJSON_IsString(v) && str_is_token(v->valuestring, TASK_ID_MAX))
			memcpy(id, v->valuestring, strlen(v->valuestring) + 1);
	}
	result_free(&res);
}
