/* The task the control plane sends: JSON in, a checked struct out. Every
 * field a task carries is validated here, at the edge, so that the modules
 * after task_parse can trust the struct. The JSON itself is read by
 * taskjson.c. Pure: no I/O. */
#include <time.h>

#include "authkeys.h"
#include "task.h"
#include "taskjson.h"

static const char *const task_fields[] = { "task_id", "action", "keypair_name", "public_key",
					   "keypairs", "user", "server", "expires_at", "key_expires_at",
					   "requester", NULL };
static const char *const keypair_fields[] = { "name", "public_key", NULL };
static const char *const server_fields[] = { "id", "auth", "authentication", "disable_password",
					     "port", NULL };
static const char *const auth_fields[] = { "type", "key", NULL };

/* Parsed keys kept beside task->keys while the task is checked, to compare
 * keys by blob rather than by text. */
struct keyset {
	struct pubkey *v;
	size_t n;
};

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

/* Names the task and the server in the result before anything else is
 * checked, so that even a refusal reaches the right task. */
static int task_peek_ids(const cJSON *root, struct result *res)
{
	const cJSON *id = taskjson_get_one(root, "task_id");
	const cJSON *server = taskjson_get_one(root, "server");
	if (cJSON_IsString(id) && str_is_token(id->valuestring, TASK_ID_MAX))
		memcpy(res->task_id, id->valuestring, strlen(id->valuestring) + 1);
	if (!cJSON_IsObject(server))
		return 0;
	const cJSON *sid = taskjson_get_one(server, "id");
	if (cJSON_IsString(sid) && str_is_token(sid->valuestring, SERVER_ID_MAX) &&
	    result_set_server_id(res, sid->valuestring) < 0)
		return taskjson_oom(res);
	return 0;
}

static int task_parse_head(const cJSON *root, struct task *t, struct result *res)
{
	const char *id, *action;
	char e[TASKJSON_ECHO_BUF];
	if (taskjson_get_token(root, "", "task_id", true, TASK_ID_MAX, &id, res) < 0 ||
	    taskjson_get_string(root, "", "action", true, &action, res) < 0)
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
				   taskjson_echo(action, e));
	return taskjson_check_fields(root, "", task_fields, res);
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
		return taskjson_oom(res);
	if (r < 0)
		return invalid(res, "%spublic_key is not a public key \"type base64 [comment]\"",
			       pre);
	*key = k;
	if (!(*ret = pubkey_format(key)))
		return taskjson_oom(res);
	return 0;
}

static int task_parse_keypair(const cJSON *el, size_t i, struct task *t, struct keyset *ks,
			      struct result *res)
{
	char pre[32], e[TASKJSON_ECHO_BUF];
	const char *name, *text;
	snprintf(pre, sizeof(pre), "keypairs[%zu].", i);
	if (!cJSON_IsObject(el))
		return invalid(res, "keypairs[%zu] must be an object, not %s", i, taskjson_kind(el));
	if (taskjson_check_fields(el, pre, keypair_fields, res) < 0 ||
	    taskjson_get_token(el, pre, "name", true, KEYPAIR_NAME_MAX, &name, res) < 0 ||
	    taskjson_get_string(el, pre, "public_key", t->action == TASK_ASSOCIATE, &text, res) < 0)
		return -1;
	for (size_t j = 0; j < i; j++)
		if (streq(t->keys[j].name, name))
			return invalid(res, "%sname \"%s\" is given twice", pre, taskjson_echo(name, e));
	if (!(t->keys[i].name = strdup(name)))
		return taskjson_oom(res);
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
		return invalid(res, "keypairs must be an array, not %s", taskjson_kind(arr));
	int n = cJSON_GetArraySize(arr);
	if (n == 0)
		return invalid(res, "keypairs is empty");
	if (n > TASK_MAX_KEYS)
		return invalid(res, "keypairs has more than %d entries", TASK_MAX_KEYS);
	_cleanup_(keyset_free) struct keyset ks = { calloc((size_t)n, sizeof(*ks.v)), 0 };
	t->keys = calloc((size_t)n, sizeof(*t->keys));
	if (!ks.v || !t->keys)
		return taskjson_oom(res);
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
	if (taskjson_get_token(root, "", "keypair_name", false, KEYPAIR_NAME_MAX, &name, res) < 0 ||
	    taskjson_get_string(root, "", "public_key", false, &text, res) < 0)
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
		return taskjson_oom(res);
	t->n_keys = 1;
	if (!(t->keys[0].name = strdup(name)))
		return taskjson_oom(res);
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
	if (taskjson_get_string(root, "", "user", false, &user, res) < 0)
		return -1;
	if (!user)
		return 0;
	if (!user_name_valid(user))
		return invalid(res, "user must be a user name: 1-%d characters of [A-Za-z0-9._-]",
			       USER_NAME_MAX);
	if (!(t->user = strdup(user)))
		return taskjson_oom(res);
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
		return taskjson_oom(res);
	return 0;
}

static int task_parse_auth(const cJSON *server, struct task *t, struct result *res)
{
	const cJSON *auth = cJSON_GetObjectItemCaseSensitive(server, "auth");
	const cJSON *alias = cJSON_GetObjectItemCaseSensitive(server, "authentication");
	const char *field = auth ? "server.auth" : "server.authentication";
	const char *type, *key;
	char pre[32], e[TASKJSON_ECHO_BUF];
	if (auth && alias)
		return invalid(res, "server.auth and server.authentication are both given");
	if (!(auth = auth ? auth : alias))
		return 0;
	if (!cJSON_IsObject(auth))
		return invalid(res, "%s must be an object, not %s", field, taskjson_kind(auth));
	snprintf(pre, sizeof(pre), "%s.", field);
	if (taskjson_check_fields(auth, pre, auth_fields, res) < 0 ||
	    taskjson_get_string(auth, pre, "type", true, &type, res) < 0 ||
	    taskjson_get_string(auth, pre, "key", true, &key, res) < 0)
		return -1;
	if (str_has_ctrl(type, strlen(type)))
		return invalid(res, "%stype contains a control character", pre);
	if (streq(type, "password"))
		t->auth_type = AUTH_PASSWORD;
	else if (streq(type, "keypair"))
		t->auth_type = AUTH_KEYPAIR;
	else
		return result_fail(res, ERR_UNSUPPORTED, "%stype \"%s\" is not supported", pre,
				   taskjson_echo(type, e));
	return task_auth_key(key, pre, t, res);
}

static int task_parse_options(const cJSON *server, struct task *t, struct result *res)
{
	const cJSON *dp = cJSON_GetObjectItemCaseSensitive(server, "disable_password");
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(server, "port");
	if (dp && !cJSON_IsBool(dp))
		return invalid(res, "server.disable_password must be a boolean, not %s",
			       taskjson_kind(dp));
	/* Disassociate always restores password login; a flag saying otherwise
	 * is a task built wrong. */
	if (dp && t->action != TASK_ASSOCIATE)
		return invalid(res, "server.disable_password applies to associate only");
	if (dp)
		t->disable_password = cJSON_IsTrue(dp) ? 1 : 0;
	if (!port)
		return 0;
	if (!cJSON_IsNumber(port))
		return invalid(res, "server.port must be a number, not %s", taskjson_kind(port));
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
		return invalid(res, "server must be an object, not %s", taskjson_kind(server));
	if (taskjson_check_fields(server, "server.", server_fields, res) < 0 ||
	    taskjson_get_token(server, "server.", "id", true, SERVER_ID_MAX, &id, res) < 0)
		return -1;
	if (!(t->server_id = strdup(id)))
		return taskjson_oom(res);
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
	if (taskjson_get_string(root, "", "key_expires_at", false, &s, res) < 0)
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
	if (taskjson_get_string(root, "", "requester", false, &s, res) < 0)
		return -1;
	if (!s)
		return 0;
	size_t n = strlen(s), chars = 0;
	for (size_t i = 0; i < n; i++)
		chars += ((unsigned char)s[i] & 0xc0) != 0x80;
	if (chars == 0 || chars > REQUESTER_MAX || str_has_ctrl(s, n))
		return invalid(res, "requester must be 1-%d printable characters", REQUESTER_MAX);
	if (!(t->requester = strdup(s)))
		return taskjson_oom(res);
	return 0;
}

static int task_parse_expiry(const cJSON *root, struct task *t, struct result *res)
{
	const char *s;
	if (taskjson_get_string(root, "", "expires_at", false, &s, res) < 0)
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
	_cleanup_(taskjson_wipe_deletep) cJSON *root = NULL;
	_cleanup_(task_free) struct task t = { .disable_password = -1 };
	*task = t;
	if (!text || len == 0)
		return invalid(res, "task is empty");
	if (len > (size_t)TASK_MAX_BYTES)
		return invalid(res, "task is %zu bytes, more than %d", len, TASK_MAX_BYTES);
	/* Fixed order, whatever the order in the text: the text as a whole,
	 * then task_id and action, then the fields. The first error wins. */
	if (taskjson_scan(text, len, res) < 0 || taskjson_parse(text, len, &root, res) < 0 ||
	    task_peek_ids(root, res) < 0 || taskjson_check_duplicates(root, res) < 0 ||
	    task_parse_head(root, &t, res) < 0 || task_parse_keys(root, &t, res) < 0 ||
	    task_parse_user(root, &t, res) < 0 || task_parse_server(root, &t, res) < 0 ||
	    task_parse_expiry(root, &t, res) < 0)
		return -1;
	*task = t;
	t = (struct task){ .disable_password = -1 };
	return 0;
}
