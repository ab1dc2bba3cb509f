/* The task the control plane sends and the result we answer: JSON in,
 * checked structs out, and back. Every field a task carries is validated
 * here, at the edge, so that the modules after task_parse can trust the
 * struct. Pure: no I/O. */
#include <stdarg.h>
#include <time.h>

#include "authkeys.h"
#include "task.h"

/* The schema nests three levels (task, server, auth); anything much deeper
 * is aimed at the parser's stack, not a task. */
#define TASK_MAX_DEPTH 8
/* Task text quoted in a message is cut here: a message is one short line. */
#define ECHO_MAX 40
#define ECHO_BUF (ECHO_MAX + 4)
/* A result is a few hundred bytes; a journal file far larger is damage. */
#define RESULT_MAX_BYTES ((size_t)1024 * 1024)
/* duration_ms as cJSON prints it: past 15 digits it may round. */
#define RESULT_MAX_DURATION 999999999999999.0

static const char *const error_names[ERR_COUNT] = {
	[ERR_INVALID_TASK] = "KPS.AGENT.INVALID_TASK",
	[ERR_UNSUPPORTED] = "KPS.AGENT.UNSUPPORTED",
	[ERR_EXPIRED] = "KPS.AGENT.EXPIRED",
	[ERR_WRONG_SERVER] = "KPS.AGENT.WRONG_SERVER",
	[ERR_USER_NOT_FOUND] = "KPS.AGENT.USER_NOT_FOUND",
	[ERR_AUTH_FAILED] = "KPS.AGENT.AUTH_FAILED",
	[ERR_SSHD_UNREACHABLE] = "KPS.AGENT.SSHD_UNREACHABLE",
	[ERR_UNSAFE_PATH] = "KPS.AGENT.UNSAFE_PATH",
	[ERR_SSHD_CONFIG_INVALID] = "KPS.AGENT.SSHD_CONFIG_INVALID",
	[ERR_RELOAD_FAILED] = "KPS.AGENT.RELOAD_FAILED",
	[ERR_PROBE_FAILED] = "KPS.AGENT.PROBE_FAILED",
	[ERR_IO_ERROR] = "KPS.AGENT.IO_ERROR",
	[ERR_TIMEOUT] = "KPS.AGENT.TIMEOUT",
	[ERR_PORT_IN_USE] = "KPS.AGENT.PORT_IN_USE",
	[ERR_BAD_SIGNATURE] = "KPS.AGENT.BAD_SIGNATURE",
	[ERR_POLICY_DENIED] = "KPS.AGENT.POLICY_DENIED",
};

static const char *const task_fields[] = { "task_id", "action", "keypair_name", "public_key",
					   "keypairs", "user", "server", "expires_at", "key_expires_at",
					   "requester", NULL };
static const char *const keypair_fields[] = { "name", "public_key", NULL };
static const char *const server_fields[] = { "id", "auth", "authentication", "disable_password",
					     "port", NULL };
static const char *const auth_fields[] = { "type", "key", NULL };

/* Nearly every refusal is this one. The -1 is result_fail's, spelt out for
 * the static analyzer, which does not follow variadic calls. */
#define invalid(res, ...) (result_fail((res), ERR_INVALID_TASK, __VA_ARGS__), -1)

/* Parsed keys kept beside task->keys while the task is checked, to compare
 * keys by blob rather than by text. */
struct keyset {
	struct pubkey *v;
	size_t n;
};

const char *error_code_name(enum error_code code)
{
	if (code <= ERR_NONE || code >= ERR_COUNT)
		return NULL;
	return error_names[code];
}

enum error_code error_code_from_name(const char *name)
{
	if (!name)
		return ERR_COUNT;
	for (int c = ERR_NONE + 1; c < ERR_COUNT; c++)
		if (streq(error_names[c], name))
			return (enum error_code)c;
	return ERR_COUNT;
}

void result_init(struct result *res)
{
	*res = (struct result){ .duration_ms = -1 };
}

void result_free(struct result *res)
{
	free(res->server_id);
	free(res->changes);
	strv_free(&res->warnings);
	result_init(res);
}

/* A cut may fall inside a UTF-8 sequence; the part left would be invalid
 * in the JSON we send. */
static void utf8_trim_tail(char *s)
{
	size_t n = strlen(s), i = n;
	while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

/* Messages end up in logs and in the control plane's console: one line. */
__attribute__((format(printf, 3, 0))) static void line_vformat(char *dst, size_t size,
							       const char *fmt, va_list ap)
{
	int n = vsnprintf(dst, size, fmt, ap);
	if (n < 0)
		dst[0] = '\0';
	else if ((size_t)n >= size)
		utf8_trim_tail(dst);
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

int result_fail(struct result *res, enum error_code code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	line_vformat(res->msg, sizeof(res->msg), fmt, ap);
	va_end(ap);
	res->code = code;
	return -1;
}

static int oom(struct result *res)
{
	result_fail(res, ERR_IO_ERROR, "out of memory");
	return -1;	/* as invalid() */
}

int result_warn(struct result *res, const char *fmt, ...)
{
	char line[RESULT_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	line_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	return strv_push(&res->warnings, line);
}

int result_set_server_id(struct result *res, const char *server_id)
{
	char *s = NULL;
	if (server_id && !(s = strdup(server_id)))
		return -ENOMEM;
	free(res->server_id);
	res->server_id = s;
	return 0;
}

static bool result_add_warnings(cJSON *o, const struct strv *w)
{
	cJSON *arr = cJSON_CreateStringArray((const char *const *)w->v, (int)w->n);
	if (arr && cJSON_AddItemToObject(o, "warnings", arr))
		return true;
	cJSON_Delete(arr);
	return false;
}

char *result_to_json(const struct result *res)
{
	const char *code = NULL;
	if (res->code != ERR_NONE && !(code = error_code_name(res->code))) {
		errno = EINVAL;
		return NULL;
	}
	_cleanup_cjson_ cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddStringToObject(o, "task_id", res->task_id) ||
	    !cJSON_AddStringToObject(o, "server_id", res->server_id ? res->server_id : "") ||
	    !cJSON_AddStringToObject(o, "status", code ? "FAILED" : "SUCCESS"))
		return NULL;
	if (code && (!cJSON_AddStringToObject(o, "error_code", code) ||
		     !cJSON_AddStringToObject(o, "error_msg", res->msg)))
		return NULL;
	if (res->warnings.n > 0 && !result_add_warnings(o, &res->warnings))
		return NULL;
	if (res->duration_ms >= 0 &&
	    !cJSON_AddNumberToObject(o, "duration_ms", (double)res->duration_ms))
		return NULL;
	if (res->changes && !cJSON_AddRawToObject(o, "changes", res->changes))
		return NULL;
	return cJSON_PrintUnformatted(o);
}

/* NULL when absent; -EINVAL when present but not a string. */
static int json_opt_string(const cJSON *o, const char *name, const char **ret)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	*ret = NULL;
	if (!j)
		return 0;
	if (!cJSON_IsString(j))
		return -EINVAL;
	*ret = j->valuestring;
	return 0;
}

static int result_read_failure(const cJSON *o, struct result *res)
{
	const char *code, *msg;
	if (json_opt_string(o, "error_code", &code) < 0 ||
	    json_opt_string(o, "error_msg", &msg) < 0 || !code || !msg)
		return -EINVAL;
	enum error_code c = error_code_from_name(code);
	if (c == ERR_COUNT)
		return -EINVAL;
	result_fail(res, c, "%s", msg);
	return 0;
}

static int result_read_extras(const cJSON *o, struct result *res)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "warnings");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "duration_ms");
	const cJSON *item;
	if (w && !cJSON_IsArray(w))
		return -EINVAL;
	cJSON_ArrayForEach(item, w) {
		if (!cJSON_IsString(item))
			return -EINVAL;
		if (result_warn(res, "%s", item->valuestring) < 0)
			return -ENOMEM;
	}
	if (!d)
		return 0;
	if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0 && d->valuedouble <= RESULT_MAX_DURATION) ||
	    d->valuedouble != (double)(int64_t)d->valuedouble)
		return -EINVAL;
	res->duration_ms = (int64_t)d->valuedouble;
	return 0;
}

static int result_read(const cJSON *o, struct result *res)
{
	const char *id, *server, *status;
	if (json_opt_string(o, "task_id", &id) < 0 ||
	    json_opt_string(o, "server_id", &server) < 0 ||
	    json_opt_string(o, "status", &status) < 0 || !id || !server || !status)
		return -EINVAL;
	/* An empty task_id is what a refused task without a usable one reports. */
	if (id[0] && !str_is_token(id, TASK_ID_MAX))
		return -EINVAL;
	memcpy(res->task_id, id, strlen(id) + 1);
	if (strlen(server) > SERVER_ID_MAX || str_has_ctrl(server, strlen(server)))
		return -EINVAL;
	if (server[0] && result_set_server_id(res, server) < 0)
		return -ENOMEM;
	if (streq(status, "FAILED")) {
		if (result_read_failure(o, res) < 0)
			return -EINVAL;
	} else if (!streq(status, "SUCCESS"))
		return -EINVAL;
	return result_read_extras(o, res);
}

int result_from_json(const char *text, size_t len, struct result *res)
{
	result_init(res);
	if (!text || len > RESULT_MAX_BYTES || memchr(text, '\0', len))
		return -EINVAL;
	_cleanup_free_ char *copy = strndup(text, len);
	if (!copy)
		return -ENOMEM;
	_cleanup_cjson_ cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, true);
	if (!cJSON_IsObject(root))
		return -EINVAL;
	int r = result_read(root, res);
	if (r < 0)
		result_free(res);
	return r;
}

void task_free(struct task *task)
{
	for (size_t i = 0; i < task->n_keys; i++) {
		free(task->keys[i].name);
		free(task->keys[i].public_key);
	}
	free(task->keys);
	free(task->user);
	free(task->server_id);
	free(task->requester);
	secret_wipe(&task->auth_key);
	*task = (struct task){ .disable_password = -1 };
}

static void keyset_free(struct keyset *k)
{
	for (size_t i = 0; i < k->n; i++)
		pubkey_free(&k->v[i]);
	free(k->v);
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

static void json_wipe_deletep(cJSON **j)
{
	json_wipe(*j);
	cJSON_Delete(*j);
}

static void text_wipep(char **s)
{
	wipe_string(*s);
}

/* Task text quoted in a message: printable ASCII, cut short. */
static const char *echo(const char *s, char buf[static ECHO_BUF])
{
	size_t i = 0;
	for (; i < ECHO_MAX && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
	}
	buf[i] = '\0';
	if (s[i])
		snprintf(buf + i, ECHO_BUF - i, "...");
	return buf;
}

static const char *json_kind(const cJSON *j)
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
static int task_scan(const char *text, size_t len, struct result *res)
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

static int task_json_parse(const char *text, size_t len, cJSON **ret, struct result *res)
{
	_cleanup_(text_wipep) char *copy = strndup(text, len);
	if (!copy)
		return oom(res);
	/* Trailing data is looked for here rather than with cJSON's
	 * require_null_terminated: on that refusal cJSON frees the tree itself,
	 * secret and all, without wiping it. */
	const char *end = NULL;
	_cleanup_(json_wipe_deletep) cJSON *root =
		cJSON_ParseWithLengthOpts(copy, len, &end, false);
	if (!root)
		return invalid(res, "task is not valid JSON (near byte %zu)",
			       end ? (size_t)(end - copy) : 0);
	end += strspn(end, " \t\r\n");
	if (end != copy + len)
		return invalid(res, "task has data after the JSON value (byte %zu)",
			       (size_t)(end - copy));
	if (!cJSON_IsObject(root))
		return invalid(res, "task is %s, not a JSON object", json_kind(root));
	*ret = TAKE_PTR(root);
	return 0;
}

/* The member when the object has exactly one of that name. */
static const cJSON *json_get_one(const cJSON *obj, const char *name)
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

/* Names the task and the server in the result before anything else is
 * checked, so that even a refusal reaches the right task. */
static int task_peek_ids(const cJSON *root, struct result *res)
{
	const cJSON *id = json_get_one(root, "task_id");
	const cJSON *server = json_get_one(root, "server");
	if (cJSON_IsString(id) && str_is_token(id->valuestring, TASK_ID_MAX))
		memcpy(res->task_id, id->valuestring, strlen(id->valuestring) + 1);
	if (!cJSON_IsObject(server))
		return 0;
	const cJSON *sid = json_get_one(server, "id");
	if (cJSON_IsString(sid) && str_is_token(sid->valuestring, SERVER_ID_MAX) &&
	    result_set_server_id(res, sid->valuestring) < 0)
		return oom(res);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 with *dup set when some object in the tree repeats a member name. */
/* NOLINTNEXTLINE(misc-no-recursion): on a task, which task_scan keeps within TASK_MAX_DEPTH */
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
static int task_check_duplicates(const cJSON *root, struct result *res)
{
	const char *dup = NULL;
	int r = json_find_duplicate(root, &dup);
	if (r < 0)
		return oom(res);
	if (r > 0) {
		char e[ECHO_BUF];
		return invalid(res, "field \"%s\" appears twice", echo(dup, e));
	}
	return 0;
}

static int check_fields(const cJSON *obj, const char *pre, const char *const *known,
			struct result *res)
{
	const cJSON *c;
	char e[ECHO_BUF];
	cJSON_ArrayForEach(c, obj) {
		const char *const *k = known;
		while (*k && !streq(*k, c->string))
			k++;
		if (!*k)
			return invalid(res, "unknown field \"%s%s\"", pre, echo(c->string, e));
	}
	return 0;
}

/* A string member; *ret is NULL when it is absent and not required. */
static int get_string(const cJSON *obj, const char *pre, const char *name, bool required,
		      const char **ret, struct result *res)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
	*ret = NULL;
	if (!j && required)
		return invalid(res, "%s%s is missing", pre, name);
	if (!j)
		return 0;
	if (!cJSON_IsString(j))
		return invalid(res, "%s%s must be a string, not %s", pre, name, json_kind(j));
	*ret = j->valuestring;
	return 0;
}

static int get_token(const cJSON *obj, const char *pre, const char *name, bool required, size_t max,
		     const char **ret, struct result *res)
{
	if (get_string(obj, pre, name, required, ret, res) < 0)
		return -1;
	if (*ret && !str_is_token(*ret, max))
		return invalid(res, "%s%s must be 1-%zu characters of [A-Za-z0-9._-]", pre, name,
			       max);
	return 0;
}

static int task_parse_head(const cJSON *root, struct task *t, struct result *res)
{
	const char *id, *action;
	char e[ECHO_BUF];
	if (get_token(root, "", "task_id", true, TASK_ID_MAX, &id, res) < 0 ||
	    get_string(root, "", "action", true, &action, res) < 0)
		return -1;
	memcpy(t->id, id, strlen(id) + 1);
	if (str_has_ctrl(action, strlen(action)))
		return invalid(res, "action contains a control character");
	if (streq(action, "associate"))
		t->action = TASK_ASSOCIATE;
	else if (streq(action, "disassociate"))
		t->action = TASK_DISASSOCIATE;
	else
		return result_fail(res, ERR_UNSUPPORTED, "action \"%s\" is not supported",
				   echo(action, e));
	return check_fields(root, "", task_fields, res);
}

/* Normalises one public key; *key keeps the parsed form. */
static int task_public_key(const char *text, const char *pre, char **ret, struct pubkey *key,
			   struct result *res)
{
	size_t n = strlen(text);
	struct pubkey k = { 0 };
	if (n > PUBLIC_KEY_MAX)
		return invalid(res, "%spublic_key is longer than %d bytes", pre, PUBLIC_KEY_MAX);
	if (str_has_ctrl(text, n))
		return invalid(res, "%spublic_key must be one line without control characters",
			       pre);
	int r = pubkey_parse(text, n, &k);
	if (r == -ENOMEM)
		return oom(res);
	if (r < 0)
		return invalid(res, "%spublic_key is not a public key \"type base64 [comment]\"",
			       pre);
	*key = k;
	if (!(*ret = pubkey_format(key)))
		return oom(res);
	return 0;
}

static int task_parse_keypair(const cJSON *el, size_t i, struct task *t, struct keyset *ks,
			      struct result *res)
{
	char pre[32], e[ECHO_BUF];
	const char *name, *text;
	snprintf(pre, sizeof(pre), "keypairs[%zu].", i);
	if (!cJSON_IsObject(el))
		return invalid(res, "keypairs[%zu] must be an object, not %s", i, json_kind(el));
	if (check_fields(el, pre, keypair_fields, res) < 0 ||
	    get_token(el, pre, "name", true, KEYPAIR_NAME_MAX, &name, res) < 0 ||
	    get_string(el, pre, "public_key", t->action == TASK_ASSOCIATE, &text, res) < 0)
		return -1;
	for (size_t j = 0; j < i; j++)
		if (streq(t->keys[j].name, name))
			return invalid(res, "%sname \"%s\" is given twice", pre, echo(name, e));
	if (!(t->keys[i].name = strdup(name)))
		return oom(res);
	if (!text)
		return 0;
	if (task_public_key(text, pre, &t->keys[i].public_key, &ks->v[i], res) < 0)
		return -1;
	for (size_t j = 0; j < i && t->action == TASK_ASSOCIATE; j++)
		if (pubkey_equal(&ks->v[j], &ks->v[i]))
			return invalid(res, "%spublic_key is the key of keypairs[%zu]", pre, j);
	return 0;
}

static int task_parse_keypairs(const cJSON *arr, struct task *t, struct result *res)
{
	if (!cJSON_IsArray(arr))
		return invalid(res, "keypairs must be an array, not %s", json_kind(arr));
	int n = cJSON_GetArraySize(arr);
	if (n == 0)
		return invalid(res, "keypairs is empty");
	if (n > TASK_MAX_KEYS)
		return invalid(res, "keypairs has more than %d entries", TASK_MAX_KEYS);
	_cleanup_(keyset_free) struct keyset ks = { calloc((size_t)n, sizeof(*ks.v)), 0 };
	t->keys = calloc((size_t)n, sizeof(*t->keys));
	if (!ks.v || !t->keys)
		return oom(res);
	ks.n = t->n_keys = (size_t)n;
	const cJSON *el;
	size_t i = 0;
	cJSON_ArrayForEach(el, arr)
		if (task_parse_keypair(el, i++, t, &ks, res) < 0)
			return -1;
	return 0;
}

static int task_parse_single(const cJSON *root, struct task *t, struct result *res)
{
	const char *name, *text;
	if (get_token(root, "", "keypair_name", false, KEYPAIR_NAME_MAX, &name, res) < 0 ||
	    get_string(root, "", "public_key", false, &text, res) < 0)
		return -1;
	if (!name && text)
		return invalid(res, "public_key is given without keypair_name");
	if (!name && t->action == TASK_ASSOCIATE)
		return invalid(res, "associate needs keypair_name and public_key, or keypairs");
	if (!text && t->action == TASK_ASSOCIATE)
		return invalid(res,
			       "public_key is missing: associate needs the key pair's public key");
	if (!name)
		return 0;
	if (!(t->keys = calloc(1, sizeof(*t->keys))))
		return oom(res);
	t->n_keys = 1;
	if (!(t->keys[0].name = strdup(name)))
		return oom(res);
	if (!text)
		return 0;
	_cleanup_(pubkey_free) struct pubkey key = { 0 };
	return task_public_key(text, "", &t->keys[0].public_key, &key, res);
}

static int task_parse_keys(const cJSON *root, struct task *t, struct result *res)
{
	const cJSON *kps = cJSON_GetObjectItemCaseSensitive(root, "keypairs");
	if (!kps)
		return task_parse_single(root, t, res);
	if (cJSON_GetObjectItemCaseSensitive(root, "keypair_name") ||
	    cJSON_GetObjectItemCaseSensitive(root, "public_key"))
		return invalid(res, "keypairs cannot be given with keypair_name or public_key");
	return task_parse_keypairs(kps, t, res);
}

/* POSIX portable user names, with the trailing '$' of machine accounts;
 * "." and ".." would name directories rather than users. */
static bool user_name_valid(const char *s)
{
	char base[USER_NAME_MAX + 1];
	size_t n = strlen(s);
	if (n == 0 || n > USER_NAME_MAX || s[0] == '-')
		return false;
	if (s[n - 1] == '$')
		n--;
	memcpy(base, s, n);
	base[n] = '\0';
	return str_is_token(base, USER_NAME_MAX) && !streq(base, ".") && !streq(base, "..");
}

static int task_parse_user(const cJSON *root, struct task *t, struct result *res)
{
	const char *user;
	if (get_string(root, "", "user", false, &user, res) < 0)
		return -1;
	if (!user)
		return 0;
	if (!user_name_valid(user))
		return invalid(res, "user must be a user name: 1-%d characters of [A-Za-z0-9._-]",
			       USER_NAME_MAX);
	if (!(t->user = strdup(user)))
		return oom(res);
	return 0;
}

/* A private key is PEM or OpenSSH text and has line breaks; a password has
 * none, and neither has any other control character. */
static bool secret_chars_ok(const char *s, size_t n, bool multiline)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 || c == 0x7f) && !(multiline && (c == '\n' || c == '\r')))
			return false;
	}
	return true;
}

/* The key is never quoted in a message, not even in part. */
static int task_auth_key(const char *key, const char *pre, struct task *t, struct result *res)
{
	size_t n = strlen(key);
	bool multiline = t->auth_type == AUTH_KEYPAIR;
	if (n == 0)
		return invalid(res, "%skey is empty", pre);
	if (n > AUTH_KEY_MAX)
		return invalid(res, "%skey is longer than %d bytes", pre, AUTH_KEY_MAX);
	if (!secret_chars_ok(key, n, multiline))
		return invalid(res, "%skey: a %s must not contain control characters%s", pre,
			       multiline ? "private key" : "password",
			       multiline ? " other than line breaks" : "");
	if (secret_set(&t->auth_key, key, n) < 0)
		return oom(res);
	return 0;
}

static int task_parse_auth(const cJSON *server, struct task *t, struct result *res)
{
	const cJSON *auth = cJSON_GetObjectItemCaseSensitive(server, "auth");
	const cJSON *alias = cJSON_GetObjectItemCaseSensitive(server, "authentication");
	const char *field = auth ? "server.auth" : "server.authentication";
	const char *type, *key;
	char pre[32], e[ECHO_BUF];
	if (auth && alias)
		return invalid(res, "server.auth and server.authentication are both given");
	if (!(auth = auth ? auth : alias))
		return 0;
	if (!cJSON_IsObject(auth))
		return invalid(res, "%s must be an object, not %s", field, json_kind(auth));
	snprintf(pre, sizeof(pre), "%s.", field);
	if (check_fields(auth, pre, auth_fields, res) < 0 ||
	    get_string(auth, pre, "type", true, &type, res) < 0 ||
	    get_string(auth, pre, "key", true, &key, res) < 0)
		return -1;
	if (str_has_ctrl(type, strlen(type)))
		return invalid(res, "%stype contains a control character", pre);
	if (streq(type, "password"))
		t->auth_type = AUTH_PASSWORD;
	else if (streq(type, "keypair"))
		t->auth_type = AUTH_KEYPAIR;
	else
		return result_fail(res, ERR_UNSUPPORTED, "%stype \"%s\" is not supported", pre,
				   echo(type, e));
	return task_auth_key(key, pre, t, res);
}

static int task_parse_options(const cJSON *server, struct task *t, struct result *res)
{
	const cJSON *dp = cJSON_GetObjectItemCaseSensitive(server, "disable_password");
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(server, "port");
	if (dp && !cJSON_IsBool(dp))
		return invalid(res, "server.disable_password must be a boolean, not %s",
			       json_kind(dp));
	/* Disassociate always restores password login; a flag saying otherwise
	 * is a task built wrong. */
	if (dp && t->action != TASK_ASSOCIATE)
		return invalid(res, "server.disable_password applies to associate only");
	if (dp)
		t->disable_password = cJSON_IsTrue(dp) ? 1 : 0;
	if (!port)
		return 0;
	if (!cJSON_IsNumber(port))
		return invalid(res, "server.port must be a number, not %s", json_kind(port));
	double d = port->valuedouble;
	if (!(d >= 1 && d <= 65535) || d != (double)(int)d)
		return invalid(res, "server.port must be an integer 1-65535");
	t->port = (int)d;
	return 0;
}

static int task_parse_server(const cJSON *root, struct task *t, struct result *res)
{
	const cJSON *server = cJSON_GetObjectItemCaseSensitive(root, "server");
	const char *id;
	if (!server)
		return invalid(res, "server is missing");
	if (!cJSON_IsObject(server))
		return invalid(res, "server must be an object, not %s", json_kind(server));
	if (check_fields(server, "server.", server_fields, res) < 0 ||
	    get_token(server, "server.", "id", true, SERVER_ID_MAX, &id, res) < 0)
		return -1;
	if (!(t->server_id = strdup(id)))
		return oom(res);
	if (task_parse_auth(server, t, res) < 0)
		return -1;
	return task_parse_options(server, t, res);
}

/* n digits, or -1 when one of them is not a digit (the NUL included). */
static int digits(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int month_days(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return month == 2 && leap ? 29 : days[month - 1];
}

/* "Z" or "+hh:mm" / "-hh:mm" and nothing after; seconds east of UTC. */
static int rfc3339_offset(const char *p, int *ret)
{
	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
		*ret = 0;
		return 0;
	}
	if ((p[0] != '+' && p[0] != '-') || strlen(p) != 6 || p[3] != ':')
		return -EINVAL;
	int h = digits(p + 1, 2), m = digits(p + 4, 2);
	if (h < 0 || h > 23 || m < 0 || m > 59)
		return -EINVAL;
	*ret = (p[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
	return 0;
}

/* RFC 3339 date-time, e.g. 2026-11-23T10:00:00.123+08:00. A fraction is
 * dropped: the instant is taken one moment early, never late. */
static int rfc3339_parse(const char *s, int64_t *ret)
{
	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -EINVAL;
	int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
	int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > month_days(year, mon) || hour < 0 ||
	    hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
		return -EINVAL;
	const char *p = s + 19;
	if (*p == '.') {
		size_t n = strspn(p + 1, "0123456789");
		if (n == 0 || n > 9)
			return -EINVAL;
		p += 1 + n;
	}
	int offset;
	if (rfc3339_offset(p, &offset) < 0)
		return -EINVAL;
	struct tm tm = { .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
			 .tm_hour = hour, .tm_min = min, .tm_sec = sec };
	*ret = (int64_t)timegm(&tm) - offset;
	return 0;
}

int task_time_parse(const char *s, int64_t *ret)
{
	return rfc3339_parse(s, ret);
}

/* OpenSSH's expiry-time holds years 1970-9999 and sshd reads it to the
 * second; an instant already past would add a key that never works. */
static int task_parse_key_expiry(const cJSON *root, struct task *t, struct result *res)
{
	const char *s;
	if (get_string(root, "", "key_expires_at", false, &s, res) < 0)
		return -1;
	if (!s)
		return 0;
	if (t->action != TASK_ASSOCIATE)
		return invalid(res, "key_expires_at applies to associate only");
	if (rfc3339_parse(s, &t->key_expires_at) < 0 || t->key_expires_at <= 0 ||
	    t->key_expires_at > (int64_t)253402300799)
		return invalid(res,
			       "key_expires_at must be an RFC 3339 time such as 2026-12-31T00:00:00Z");
	return 0;
}

/* Printable: it goes into the journal and the audit trail as one field.
 * The limit counts characters (UTF-8 continuation bytes do not count). */
static int task_parse_requester(const cJSON *root, struct task *t, struct result *res)
{
	const char *s;
	if (get_string(root, "", "requester", false, &s, res) < 0)
		return -1;
	if (!s)
		return 0;
	size_t n = strlen(s), chars = 0;
	for (size_t i = 0; i < n; i++)
		chars += ((unsigned char)s[i] & 0xc0) != 0x80;
	if (chars == 0 || chars > REQUESTER_MAX || str_has_ctrl(s, n))
		return invalid(res, "requester must be 1-%d printable characters", REQUESTER_MAX);
	if (!(t->requester = strdup(s)))
		return oom(res);
	return 0;
}

static int task_parse_expiry(const cJSON *root, struct task *t, struct result *res)
{
	const char *s;
	if (get_string(root, "", "expires_at", false, &s, res) < 0)
		return -1;
	if (s && rfc3339_parse(s, &t->expires_at) < 0)
		return invalid(res,
			       "expires_at must be an RFC 3339 time such as 2026-11-23T10:00:00Z");
	t->has_expiry = s != NULL;
	if (task_parse_key_expiry(root, t, res) < 0)
		return -1;
	return task_parse_requester(root, t, res);
}

int task_parse(const char *text, size_t len, struct task *task, struct result *res)
{
	_cleanup_(json_wipe_deletep) cJSON *root = NULL;
	_cleanup_(task_free) struct task t = { .disable_password = -1 };
	*task = t;
	if (!text || len == 0)
		return invalid(res, "task is empty");
	if (len > (size_t)TASK_MAX_BYTES)
		return invalid(res, "task is %zu bytes, more than %d", len, TASK_MAX_BYTES);
	/* Fixed order, whatever the order in the text: the text as a whole,
	 * then task_id and action, then the fields. The first error wins. */
	if (task_scan(text, len, res) < 0 || task_json_parse(text, len, &root, res) < 0 ||
	    task_peek_ids(root, res) < 0 || task_check_duplicates(root, res) < 0 ||
	    task_parse_head(root, &t, res) < 0 || task_parse_keys(root, &t, res) < 0 ||
	    task_parse_user(root, &t, res) < 0 || task_parse_server(root, &t, res) < 0 ||
	    task_parse_expiry(root, &t, res) < 0)
		return -1;
	*task = t;
	t = (struct task){ .disable_password = -1 };
	return 0;
}

void task_json_wipe_delete(struct cJSON *root)
{
	json_wipe(root);
	cJSON_Delete(root);
}
