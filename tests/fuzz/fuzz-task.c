/* libFuzzer target for task.c: task_parse and result_from_json on arbitrary
 * bytes. A refusal must be reportable as it stands (a known code, a one-line
 * message, a valid task_id or none); an accepted task must hold only what
 * the validators let through and read back the same once written out again
 * from its fields; a result that parses must come back unchanged through
 * result_to_json and result_from_json. */
#include <time.h>

#include "authkeys.h"
#include "task.h"
#include "fuzz.h"

static bool str_eq_or_null(const char *a, const char *b)
{
	return a == b || (a && b && streq(a, b));
}

static bool utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
			      (c & 0xf8) == 0xf0 ? 3 : SIZE_MAX;
		if (more == SIZE_MAX || n - i - 1 < more)
			return false;
		for (size_t j = 1; j <= more; j++)
			if (((unsigned char)s[i + j] & 0xc0) != 0x80)
				return false;
		i += more + 1;
	}
	return true;
}

static bool results_equal(const struct result *a, const struct result *b)
{
	if (!streq(a->task_id, b->task_id) || !str_eq_or_null(a->server_id, b->server_id) ||
	    a->code != b->code || !streq(a->msg, b->msg) || a->warnings.n != b->warnings.n ||
	    a->duration_ms != b->duration_ms)
		return false;
	for (size_t i = 0; i < a->warnings.n; i++)
		if (!streq(a->warnings.v[i], b->warnings.v[i]))
			return false;
	return true;
}

static bool result_is_empty(const struct result *res)
{
	return res->task_id[0] == '\0' && !res->server_id && res->code == ERR_NONE &&
	       res->msg[0] == '\0' && res->warnings.n == 0 && !res->warnings.v &&
	       res->duration_ms == -1;
}

/* What the agent reports must read back as itself, and print the same. */
static void check_result_round_trip(const struct result *res)
{
	_cleanup_free_ char *json = result_to_json(res);
	fuzz_oom(json);
	struct result back;
	fuzz_check(result_from_json(json, strlen(json), &back) == 0,
		   "result_to_json output reads back with result_from_json");
	fuzz_check(results_equal(res, &back), "a result survives result_to_json/result_from_json");
	_cleanup_free_ char *again = result_to_json(&back);
	fuzz_oom(again);
	fuzz_check(streq(json, again), "result_to_json of a read-back result prints the same");
	result_free(&back);
}

static void check_result_bytes(const char *text, size_t len)
{
	struct result res;
	int r = result_from_json(text, len, &res);
	fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM, "result_from_json returns 0 or -errno");
	if (r < 0) {
		fuzz_check(result_is_empty(&res), "a refused result leaves the struct empty");
		return;
	}
	fuzz_check(res.code >= ERR_NONE && res.code < ERR_COUNT, "result code in range");
	fuzz_check(res.task_id[0] == '\0' || str_is_token(res.task_id, TASK_ID_MAX),
		   "result task_id is empty or a token");
	fuzz_check(!res.server_id || (res.server_id[0] && strlen(res.server_id) <= SERVER_ID_MAX),
		   "result server_id is bounded");
	fuzz_check(!str_has_ctrl(res.msg, strlen(res.msg)), "result message is one line");
	for (size_t i = 0; i < res.warnings.n; i++)
		fuzz_check(strlen(res.warnings.v[i]) < RESULT_MSG_MAX &&
				   !str_has_ctrl(res.warnings.v[i], strlen(res.warnings.v[i])),
			   "result warnings are short single lines");
	check_result_round_trip(&res);
	result_free(&res);
}

static bool task_is_empty(const struct task *t)
{
	return t->id[0] == '\0' && !t->keys && t->n_keys == 0 && !t->user && !t->server_id &&
	       t->auth_type == AUTH_NONE && !t->auth_key.data && t->auth_key.len == 0 &&
	       t->disable_password == -1 && t->port == 0 && !t->has_expiry;
}

static void check_refusal(const struct task *t, const struct result *res)
{
	size_t n = strnlen(res->msg, sizeof(res->msg));
	fuzz_check(res->code > ERR_NONE && res->code < ERR_COUNT, "refusal code in 1..ERR_COUNT-1");
	fuzz_check(error_code_name(res->code) != NULL, "refusal code has a name");
	fuzz_check(error_code_from_name(error_code_name(res->code)) == res->code,
		   "refusal code name maps back to the code");
	fuzz_check(res->code == ERR_INVALID_TASK || res->code == ERR_UNSUPPORTED ||
			   res->code == ERR_IO_ERROR,
		   "task_parse refuses with INVALID_TASK, UNSUPPORTED or (no memory) IO_ERROR");
	fuzz_check(n > 0 && n < sizeof(res->msg), "refusal message is set and terminated");
	fuzz_check(!str_has_ctrl(res->msg, n), "refusal message is one line, no control chars");
	fuzz_check(utf8_valid(res->msg, n), "refusal message is valid UTF-8");
	fuzz_check(memchr(res->task_id, '\0', sizeof(res->task_id)) != NULL,
		   "result task_id is terminated");
	fuzz_check(res->task_id[0] == '\0' || str_is_token(res->task_id, TASK_ID_MAX),
		   "result task_id, when set, is a valid token");
	fuzz_check(!res->server_id || str_is_token(res->server_id, SERVER_ID_MAX),
		   "result server_id, when set, is a valid token");
	fuzz_check(task_is_empty(t), "a refused task leaves the struct empty");
	check_result_round_trip(res);
}

static void check_public_key(const char *text)
{
	struct pubkey k = { 0 };
	fuzz_check(pubkey_parse(text, strlen(text), &k) == 0,
		   "an accepted public_key re-parses with pubkey_parse");
	_cleanup_free_ char *again = pubkey_format(&k);
	fuzz_oom(again);
	fuzz_check(streq(again, text), "an accepted public_key is in normal form");
	pubkey_free(&k);
}

static bool keys_same(const char *a, const char *b)
{
	struct pubkey ka = { 0 }, kb = { 0 };
	fuzz_check(pubkey_parse(a, strlen(a), &ka) == 0 && pubkey_parse(b, strlen(b), &kb) == 0,
		   "accepted public keys parse");
	bool same = pubkey_equal(&ka, &kb);
	pubkey_free(&ka);
	pubkey_free(&kb);
	return same;
}

static void check_keys(const struct task *t)
{
	fuzz_check(t->n_keys <= TASK_MAX_KEYS, "n_keys <= TASK_MAX_KEYS");
	fuzz_check((t->n_keys == 0) == (t->keys == NULL), "keys is set exactly when n_keys > 0");
	fuzz_check(t->action != TASK_ASSOCIATE || t->n_keys > 0, "associate carries a key");
	for (size_t i = 0; i < t->n_keys; i++) {
		const struct task_key *k = &t->keys[i];
		fuzz_check(k->name && str_is_token(k->name, KEYPAIR_NAME_MAX),
			   "key pair names are tokens");
		fuzz_check(t->action != TASK_ASSOCIATE || k->public_key,
			   "associate has a public key for every key pair");
		if (k->public_key)
			check_public_key(k->public_key);
		for (size_t j = 0; j < i; j++) {
			fuzz_check(!streq(t->keys[j].name, k->name), "key pair names are distinct");
			fuzz_check(t->action != TASK_ASSOCIATE ||
					   !keys_same(t->keys[j].public_key, k->public_key),
				   "associate keys are distinct");
		}
	}
}

static bool user_ok(const char *u)
{
	size_t n = strlen(u);
	if (n == 0 || n > USER_NAME_MAX || u[0] == '-' || str_has_ctrl(u, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    u[i]) &&
		    !(u[i] == '$' && i == n - 1 && n > 1))
			return false;
	return true;
}

static bool secret_ok(const struct task *t)
{
	const struct secret *s = &t->auth_key;
	if (t->auth_type == AUTH_NONE)
		return !s->data && s->len == 0;
	if (!s->data || s->len == 0 || s->len > AUTH_KEY_MAX || s->data[s->len] != '\0' ||
	    memchr(s->data, '\0', s->len))
		return false;
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->data[i];
		bool line_break = c == '\n' || c == '\r';
		if ((c < 0x20 || c == 0x7f) && !(line_break && t->auth_type == AUTH_KEYPAIR))
			return false;
	}
	return true;
}

static void check_fields(const struct task *t, const struct result *res)
{
	fuzz_check(res->code == ERR_NONE && res->msg[0] == '\0', "acceptance leaves no error");
	fuzz_check(str_is_token(t->id, TASK_ID_MAX), "task id is a token");
	fuzz_check(streq(res->task_id, t->id), "result task_id is the task's id");
	fuzz_check(t->action == TASK_ASSOCIATE || t->action == TASK_DISASSOCIATE, "action known");
	check_keys(t);
	fuzz_check(!t->user || user_ok(t->user), "user is a user name");
	fuzz_check(t->server_id && str_is_token(t->server_id, SERVER_ID_MAX),
		   "server id is a token");
	fuzz_check(str_eq_or_null(res->server_id, t->server_id),
		   "result server_id is the task's server id");
	fuzz_check(t->auth_type == AUTH_NONE || t->auth_type == AUTH_PASSWORD ||
			   t->auth_type == AUTH_KEYPAIR,
		   "auth type known");
	fuzz_check(secret_ok(t), "auth key is set exactly with a type and holds allowed bytes");
	fuzz_check(t->disable_password >= -1 && t->disable_password <= 1,
		   "disable_password is -1, 0 or 1");
	fuzz_check(t->disable_password == -1 || t->action == TASK_ASSOCIATE,
		   "disable_password only with associate");
	fuzz_check(t->port >= 0 && t->port <= 65535, "port is 0 or 1..65535");
	fuzz_check(t->has_expiry || t->expires_at == 0, "no expiry, no time");
}

static bool tasks_equal(const struct task *a, const struct task *b, bool expiry)
{
	if (!streq(a->id, b->id) || a->action != b->action || a->n_keys != b->n_keys ||
	    !str_eq_or_null(a->user, b->user) || !str_eq_or_null(a->server_id, b->server_id) ||
	    a->auth_type != b->auth_type ||
	    !fuzz_mem_eq(a->auth_key.data, a->auth_key.len, b->auth_key.data, b->auth_key.len) ||
	    a->disable_password != b->disable_password || a->port != b->port)
		return false;
	for (size_t i = 0; i < a->n_keys; i++)
		if (!streq(a->keys[i].name, b->keys[i].name) ||
		    !str_eq_or_null(a->keys[i].public_key, b->keys[i].public_key))
			return false;
	return !expiry || (a->has_expiry == b->has_expiry && a->expires_at == b->expires_at);
}

/* RFC 3339 in UTC; false when the instant has no four-digit year. */
static bool format_expiry(int64_t t, char buf[static 32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return false;
	snprintf(buf, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return true;
}

static void add_string(cJSON *o, const char *name, const char *value)
{
	fuzz_oom(cJSON_AddStringToObject(o, name, value));
}

static cJSON *server_to_json(const struct task *t)
{
	cJSON *s = cJSON_CreateObject();
	fuzz_oom(s);
	add_string(s, "id", t->server_id);
	if (t->auth_type != AUTH_NONE) {
		cJSON *auth = cJSON_AddObjectToObject(s, "auth");
		fuzz_oom(auth);
		add_string(auth, "type", t->auth_type == AUTH_PASSWORD ? "password" : "keypair");
		add_string(auth, "key", t->auth_key.data);
	}
	if (t->disable_password >= 0)
		fuzz_oom(cJSON_AddBoolToObject(s, "disable_password", t->disable_password == 1));
	if (t->port)
		fuzz_oom(cJSON_AddNumberToObject(s, "port", t->port));
	return s;
}

/* The task written out again from its fields, the way the control plane
 * might have sent it. */
static char *task_to_json(const struct task *t, const char *expiry)
{
	_cleanup_cjson_ cJSON *o = cJSON_CreateObject();
	fuzz_oom(o);
	add_string(o, "task_id", t->id);
	add_string(o, "action", t->action == TASK_ASSOCIATE ? "associate" : "disassociate");
	if (t->n_keys > 0) {
		cJSON *arr = cJSON_AddArrayToObject(o, "keypairs");
		fuzz_oom(arr);
		for (size_t i = 0; i < t->n_keys; i++) {
			cJSON *kp = cJSON_CreateObject();
			fuzz_oom(kp);
			add_string(kp, "name", t->keys[i].name);
			if (t->keys[i].public_key)
				add_string(kp, "public_key", t->keys[i].public_key);
			fuzz_check(cJSON_AddItemToArray(arr, kp), "out of memory");
		}
	}
	if (t->user)
		add_string(o, "user", t->user);
	fuzz_check(cJSON_AddItemToObject(o, "server", server_to_json(t)), "out of memory");
	if (expiry)
		add_string(o, "expires_at", expiry);
	char *s = cJSON_PrintUnformatted(o);
	fuzz_oom(s);
	return s;
}

static void check_reserialised(const struct task *t)
{
	char expiry[32];
	bool with_expiry = t->has_expiry && format_expiry(t->expires_at, expiry);
	_cleanup_free_ char *json = task_to_json(t, with_expiry ? expiry : NULL);
	size_t len = strlen(json);
	/* Escapes may make the text longer than the task it came from. */
	if (len > TASK_MAX_BYTES)
		return;
	struct task again;
	struct result res;
	result_init(&res);
	fuzz_check(task_parse(json, len, &again, &res) == 0,
		   "an accepted task written out from its fields is accepted again");
	fuzz_check(tasks_equal(t, &again, with_expiry || !t->has_expiry),
		   "an accepted task written out from its fields reads back the same");
	task_free(&again);
	result_free(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct task t;
	struct result res;

	result_init(&res);
	int r = task_parse(text, size, &t, &res);
	fuzz_check(r == 0 || r == -1, "task_parse returns 0 or -1");
	if (r < 0) {
		check_refusal(&t, &res);
	} else {
		check_fields(&t, &res);
		check_reserialised(&t);
		check_result_round_trip(&res);
	}
	task_free(&t);
	result_free(&res);

	check_result_bytes(text, size);
	return 0;
}
