/* The result we answer, and the KPS.AGENT.* codes it carries: built where
 * a failure is found, emitted as one JSON line, and read back from the
 * journal. Messages are one line of valid UTF-8 whatever went into them.
 * Pure: no I/O. */
#include <stdarg.h>

#include "result.h"

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
