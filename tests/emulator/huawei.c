/* Huawei Cloud KPS, as the reference documents it: import a key pair,
 * associate it with one server or a batch of up to ten, disassociate, and
 * the task queries (ListKeypairTask, running-tasks, failed-tasks). A call
 * that orders a change queues one contract task per server; the answer
 * carries the task id, never the task (it may hold a credential). */
#include <stdarg.h>

#include <event2/keyvalq_struct.h>

#include "emulator.h"

/* One validated order: the request still owns what it points to. */
struct order {
	const cJSON *server;
	const char *server_id;
	const struct keypair *kp;	/* associate */
	const char *keypair_name;	/* disassociate, optional */
	enum task_kind kind;
};

static void reply_fault(struct evhttp_request *req, const struct api_fault *f)
{
	http_kps_error(req, 400, f->code, "%s", f->msg);
}

/* The seed's server object, checked loosely: the agent is the judge of
 * everything else, and the object reaches it as it came. */
static int check_server(const cJSON *server, bool *has_auth, struct api_fault *f)
{
	if (!cJSON_IsObject(server))
		return api_fault(f, KPS_INVALID, "server must be an object");
	if (!http_json_is_name(cJSON_GetObjectItemCaseSensitive(server, "id")))
		return api_fault(f, KPS_INVALID, "server.id must be 1-64 of [A-Za-z0-9._-]");
	const cJSON *auth = cJSON_GetObjectItemCaseSensitive(server, "auth");
	const cJSON *alias = cJSON_GetObjectItemCaseSensitive(server, "authentication");
	if (auth && alias)
		return api_fault(f, KPS_INVALID, "server.auth and server.authentication are the same field");
	auth = auth ? auth : alias;
	if (auth) {
		if (!cJSON_IsObject(auth))
			return api_fault(f, KPS_INVALID, "server.auth must be an object");
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(auth, "type");
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(auth, "key");
		if ((type && !cJSON_IsString(type)) || (key && !cJSON_IsString(key)))
			return api_fault(f, KPS_INVALID, "server.auth.type and server.auth.key must be strings");
	}
	*has_auth = auth != NULL;
	const cJSON *dp = cJSON_GetObjectItemCaseSensitive(server, "disable_password");
	if (dp && !cJSON_IsBool(dp))
		return api_fault(f, KPS_INVALID, "server.disable_password must be a boolean");
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(server, "port");
	if (port && !cJSON_IsNumber(port))
		return api_fault(f, KPS_INVALID, "server.port must be a number");
	return 0;
}

static int parse_associate(const cJSON *body, struct order *o, struct api_fault *f)
{
	if (!cJSON_IsObject(body))
		return api_fault(f, KPS_INVALID, "the body must be a JSON object");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "keypair_name");
	if (!http_json_is_name(name))
		return api_fault(f, KPS_INVALID, "keypair_name must be 1-64 of [A-Za-z0-9._-]");
	const cJSON *server = cJSON_GetObjectItemCaseSensitive(body, "server");
	bool has_auth = false;
	int r = check_server(server, &has_auth, f);
	if (r < 0)
		return r;
	o->kp = store_keypair_by_name(name->valuestring);
	if (!o->kp)
		return api_fault(f, KPS_NO_KEYPAIR, "key pair %s does not exist", name->valuestring);
	o->server = server;
	o->server_id = cJSON_GetObjectItemCaseSensitive(server, "id")->valuestring;
	o->kind = has_auth ? TASK_REPLACE : TASK_RESET;
	return 0;
}

static int parse_disassociate(const cJSON *body, struct order *o, struct api_fault *f)
{
	if (!cJSON_IsObject(body))
		return api_fault(f, KPS_INVALID, "the body must be a JSON object");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "keypair_name");
	if (name && !http_json_is_name(name))
		return api_fault(f, KPS_INVALID, "keypair_name must be 1-64 of [A-Za-z0-9._-]");
	const cJSON *server = cJSON_GetObjectItemCaseSensitive(body, "server");
	bool has_auth = false;
	int r = check_server(server, &has_auth, f);
	if (r < 0)
		return r;
	o->server = server;
	o->server_id = cJSON_GetObjectItemCaseSensitive(server, "id")->valuestring;
	o->keypair_name = name ? name->valuestring : NULL;
	o->kind = TASK_UNBIND;
	return 0;
}

/* The contract section 3 task for one order. */
static cJSON *task_body(const char *task_id, const struct order *o)
{
	cJSON *t = cJSON_CreateObject();
	if (!t)
		return NULL;
	bool ok = cJSON_AddStringToObject(t, "task_id", task_id) &&
		  cJSON_AddStringToObject(t, "action", o->kind == TASK_UNBIND ? "disassociate" : "associate");
	if (ok && o->kp)
		ok = cJSON_AddStringToObject(t, "keypair_name", o->kp->name) &&
		     cJSON_AddStringToObject(t, "public_key", o->kp->public_key);
	else if (ok && o->keypair_name)
		ok = cJSON_AddStringToObject(t, "keypair_name", o->keypair_name);
	cJSON *server = ok ? cJSON_Duplicate(o->server, true) : NULL;
	if (!server || !cJSON_AddItemToObject(t, "server", server)) {
		http_json_wipe(server);
		http_json_wipe(t);
		return NULL;
	}
	return t;
}

/* What the order changes in the key pairs' instance lists once done: a
 * disassociate without keypair_name removes every key of the server. */
static int order_bind(struct task *t, const struct order *o)
{
	const struct keypair *kp = o->kp;
	if (o->kind == TASK_UNBIND && o->keypair_name)
		kp = store_keypair_by_name(o->keypair_name);
	return store_task_bind(t, &kp, kp ? 1 : 0, o->kind == TASK_UNBIND && !o->keypair_name);
}

/* Queues one task per order, wakes the servers' polls, fills ids[]. */
static int queue_orders(const struct order *o, size_t n, char (*ids)[UUID_LEN + 1], struct api_fault *f)
{
	if (store_reserve(n) < 0)
		return api_fault(f, KPS_FULL, "too many tasks in the emulator (at most %d)", TASKS_MAX);
	struct task *tasks[BATCH_MAX];
	for (size_t i = 0; i < n; i++) {
		int r = store_uuid(ids[i]);
		cJSON *body = r < 0 ? NULL : task_body(ids[i], &o[i]);
		r = body ? store_task_add(ids[i], o[i].server_id, o[i].kind, body, &tasks[i]) : -ENOMEM;
		if (r == 0)
			r = order_bind(tasks[i], &o[i]);
		if (r == -ENOSPC)
			return api_fault(f, KPS_FULL, "too many servers in the emulator (at most %d)", SERVERS_MAX);
		if (r < 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		agentapi_tasks_queued(tasks[i]->server);
	return 0;
}

static void reply_queued(struct evhttp_request *req, int r, const struct api_fault *f, cJSON *answer)
{
	if (r == -EINVAL) {
		cJSON_Delete(answer);
		reply_fault(req, f);
	} else if (r < 0 || !answer) {
		cJSON_Delete(answer);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
	} else {
		http_reply(req, 202, answer);
	}
}

static void do_single(struct evhttp_request *req, cJSON *body, bool associate)
{
	struct api_fault f = { 0 };
	struct order o = { 0 };
	char id[1][UUID_LEN + 1];
	int r = associate ? parse_associate(body, &o, &f) : parse_disassociate(body, &o, &f);
	if (r == 0)
		r = queue_orders(&o, 1, id, &f);
	cJSON *answer = r == 0 ? cJSON_CreateObject() : NULL;
	if (answer && !cJSON_AddStringToObject(answer, "task_id", id[0])) {
		cJSON_Delete(answer);
		answer = NULL;
	}
	reply_queued(req, r, &f, answer);
}

static int parse_batch(const cJSON *body, struct order *o, size_t *n, struct api_fault *f)
{
	const cJSON *list = cJSON_IsObject(body) ? cJSON_GetObjectItemCaseSensitive(body, "batch_keypairs") : NULL;
	if (!cJSON_IsArray(list))
		return api_fault(f, KPS_INVALID, "batch_keypairs must be an array");
	int count = cJSON_GetArraySize(list);
	if (count < 1 || count > BATCH_MAX)
		return api_fault(f, KPS_INVALID, "batch_keypairs holds 1 to %d entries, not %d", BATCH_MAX, count);
	*n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, list) {
		int r = parse_associate(e, &o[*n], f);
		if (r < 0)
			return r;
		if (o[*n].kp != o[0].kp)
			return api_fault(f, KPS_INVALID, "a batch associates one key pair, not %s and %s",
				     o[0].kp->name, o[*n].kp->name);
		for (size_t i = 0; i < *n; i++)
			if (streq(o[i].server_id, o[*n].server_id))
				return api_fault(f, KPS_INVALID, "server %s is in the batch twice", o[i].server_id);
		(*n)++;
	}
	return 0;
}

static cJSON *batch_answer(const struct order *o, size_t n, char (*ids)[UUID_LEN + 1])
{
	cJSON *answer = cJSON_CreateObject();
	cJSON *tasks = answer ? cJSON_AddArrayToObject(answer, "tasks") : NULL;
	for (size_t i = 0; tasks && i < n; i++) {
		cJSON *t = cJSON_CreateObject();
		if (!t || !cJSON_AddItemToArray(tasks, t) || !cJSON_AddStringToObject(t, "task_id", ids[i]) ||
		    !cJSON_AddStringToObject(t, "server_id", o[i].server_id) ||
		    !cJSON_AddStringToObject(t, "status", "SUCCESS"))
			tasks = NULL;
	}
	if (!tasks) {
		cJSON_Delete(answer);
		return NULL;
	}
	return answer;
}

static void do_batch(struct evhttp_request *req, cJSON *body)
{
	struct api_fault f = { 0 };
	struct order o[BATCH_MAX] = { 0 };
	char ids[BATCH_MAX][UUID_LEN + 1];
	size_t n = 0;
	int r = parse_batch(body, o, &n, &f);
	if (r == 0)
		r = queue_orders(o, n, ids, &f);
	reply_queued(req, r, &f, r == 0 ? batch_answer(o, n, ids) : NULL);
}

static void do_import(struct evhttp_request *req, cJSON *body)
{
	const cJSON *kp = cJSON_IsObject(body) ? cJSON_GetObjectItemCaseSensitive(body, "keypair") : NULL;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(kp, "name");
	const cJSON *pub = cJSON_GetObjectItemCaseSensitive(kp, "public_key");
	if (!cJSON_IsObject(kp) || !http_json_is_name(name) || !cJSON_IsString(pub)) {
		http_kps_error(req, 400, KPS_INVALID,
			       "keypair.name (1-64 of [A-Za-z0-9._-]) and keypair.public_key are required");
		return;
	}
	const struct keypair *k = NULL;
	switch (store_keypair_add(name->valuestring, pub->valuestring, &k)) {
	case 0:
		break;
	case -EEXIST:
		http_kps_error(req, 400, KPS_KEYPAIR_EXISTS, "key pair %s already exists", name->valuestring);
		return;
	case -EINVAL:
		http_kps_error(req, 400, KPS_BAD_PUBLIC_KEY, "public_key is not an OpenSSH public key line");
		return;
	case -ENOSPC:
		http_kps_error(req, 400, KPS_FULL, "too many key pairs (at most %d)", KEYPAIRS_MAX);
		return;
	default:
		http_kps_error(req, 500, KPS_INTERNAL, "cannot store the key pair");
		return;
	}
	cJSON *answer = cJSON_CreateObject();
	cJSON *o = answer ? cJSON_AddObjectToObject(answer, "keypair") : NULL;
	if (!o || !cJSON_AddStringToObject(o, "name", k->name) ||
	    !cJSON_AddStringToObject(o, "id", k->id) ||
	    !cJSON_AddStringToObject(o, "public_key", k->public_key) ||
	    !cJSON_AddStringToObject(o, "fingerprint", k->fingerprint)) {
		cJSON_Delete(answer);
		answer = NULL;
	}
	http_reply(req, answer ? 200 : 500, answer);
}

static cJSON *task_view(const struct task *t)
{
	char status[32];
	store_task_status(t, status, sizeof(status));
	cJSON *v = cJSON_CreateObject();
	bool ok = v && cJSON_AddStringToObject(v, "task_id", t->id) &&
		  cJSON_AddStringToObject(v, "server_id", t->server_id) &&
		  cJSON_AddStringToObject(v, "task_status", status);
	if (ok && t->state == TASK_FAILED)
		ok = cJSON_AddStringToObject(v, "error_code", t->error_code ? t->error_code : "") &&
		     cJSON_AddStringToObject(v, "error_msg", t->error_msg ? t->error_msg : "");
	if (ok)
		ok = cJSON_AddNumberToObject(v, "result_posts", t->result_posts) != NULL;
	if (!ok) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

static void do_show(struct evhttp_request *req, const char *task_id)
{
	struct task *t = str_is_token(task_id, NAME_MAX_LEN) ? store_task_find(task_id) : NULL;
	if (!t) {
		http_kps_error(req, 404, KPS_NO_TASK, "task %s does not exist", task_id);
		return;
	}
	cJSON *v = task_view(t);
	if (v)
		http_reply(req, 200, v);
	else
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
}

/* running-tasks and failed-tasks, with Huawei's optional limit and offset. */
static void do_list(struct evhttp_request *req, bool failed)
{
	struct evkeyvalq q;
	unsigned long limit = TASKS_MAX, offset = 0;
	int r = http_query(req, &q);
	const char *l = evhttp_find_header(&q, "limit"), *o = evhttp_find_header(&q, "offset");
	if (r < 0 || (l && !http_parse_ulong(l, TASKS_MAX, &limit)) || (o && !http_parse_ulong(o, TASKS_MAX, &offset))) {
		evhttp_clear_headers(&q);
		http_kps_error(req, 400, KPS_INVALID, "limit and offset must be integers 0-%d", TASKS_MAX);
		return;
	}
	evhttp_clear_headers(&q);
	cJSON *answer = cJSON_CreateObject();
	cJSON *count = answer ? cJSON_AddNumberToObject(answer, "total", 0) : NULL;
	cJSON *list = count ? cJSON_AddArrayToObject(answer, "tasks") : NULL;
	unsigned long total = 0;
	for (struct task *t = store_tasks_first(); t && list; t = TAILQ_NEXT(t, all)) {
		bool match = failed ? t->state == TASK_FAILED : (t->state == TASK_READY || t->state == TASK_RUNNING);
		if (!match)
			continue;
		if (total >= offset && total - offset < limit) {
			cJSON *v = task_view(t);
			if (!v || !cJSON_AddItemToArray(list, v)) {
				cJSON_Delete(v);
				list = NULL;
			}
		}
		total++;
	}
	if (!list) {
		cJSON_Delete(answer);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
		return;
	}
	cJSON_SetNumberValue(count, (double)total);
	http_reply(req, 200, answer);
}

enum route_id { R_IMPORT, R_ASSOCIATE, R_BATCH, R_DISASSOCIATE, R_SHOW, R_RUNNING, R_FAILED };

static const struct route {
	const char *first;
	const char *second;	/* NULL: none; "*": any task id */
	enum evhttp_cmd_type method;
	enum route_id id;
} routes[] = {
	{ "keypairs", NULL, EVHTTP_REQ_POST, R_IMPORT },
	{ "keypairs", "associate", EVHTTP_REQ_POST, R_ASSOCIATE },
	{ "keypairs", "batch-associate", EVHTTP_REQ_POST, R_BATCH },
	{ "keypairs", "disassociate", EVHTTP_REQ_POST, R_DISASSOCIATE },
	{ "tasks", "*", EVHTTP_REQ_GET, R_SHOW },
	{ "running-tasks", NULL, EVHTTP_REQ_GET, R_RUNNING },
	{ "failed-tasks", NULL, EVHTTP_REQ_GET, R_FAILED },
};

static const struct route *route_find(char *const *s, size_t n)
{
	for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
		const struct route *r = &routes[i];
		if (!streq(s[0], r->first))
			continue;
		if ((n == 1 && !r->second) || (n == 2 && r->second && (streq(r->second, "*") || streq(r->second, s[1]))))
			return r;
	}
	return NULL;
}

static void dispatch_body(struct evhttp_request *req, enum route_id id)
{
	cJSON *body = NULL;
	if (http_body_json(req, &body) < 0) {
		http_kps_error(req, 400, KPS_INVALID, "the body is not one JSON value");
		return;
	}
	if (id == R_IMPORT)
		do_import(req, body);
	else if (id == R_BATCH)
		do_batch(req, body);
	else
		do_single(req, body, id == R_ASSOCIATE);
	http_json_wipe(body);
}

/* An IAM token (X-Auth-Token) or an AK/SK signature, as the cloud takes
 * either. */
static int huawei_authenticate(struct evhttp_request *req, struct api_fault *f)
{
	const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(h, "Authorization");
	if (auth && strncmp(auth, "SDK-HMAC-SHA256", strlen("SDK-HMAC-SHA256")) == 0)
		return sign_huawei(req, f);
	const char *token = evhttp_find_header(h, "X-Auth-Token");
	if (!emu.opt.api_token || !http_token_equal(token, emu.opt.api_token))
		return api_fault(f, KPS_UNAUTHORIZED, "X-Auth-Token is missing or wrong");
	return 0;
}

void huawei_handle(struct evhttp_request *req, const struct strv *segs)
{
	struct api_fault f = { 0 };
	if (huawei_authenticate(req, &f) < 0) {
		http_kps_error(req, f.code ? 401 : 500, f.code ? f.code : KPS_INTERNAL, "%s", f.code ? f.msg : "out of memory");
		return;
	}
	const struct route *r = NULL;
	if (segs->n >= 3 && segs->n <= 4 && str_is_token(segs->v[1], NAME_MAX_LEN))
		r = route_find(segs->v + 2, segs->n - 2);
	if (!r) {
		http_kps_error(req, 404, KPS_NO_PATH, "no such path");
		return;
	}
	if (evhttp_request_get_command(req) != r->method) {
		http_kps_error(req, 405, KPS_BAD_METHOD, "method not allowed here");
		return;
	}
	switch (r->id) {
	case R_SHOW:
		do_show(req, segs->v[3]);
		break;
	case R_RUNNING:
	case R_FAILED:
		do_list(req, r->id == R_FAILED);
		break;
	case R_IMPORT:
	case R_ASSOCIATE:
	case R_BATCH:
	case R_DISASSOCIATE:
		dispatch_body(req, r->id);
		break;
	}
}
