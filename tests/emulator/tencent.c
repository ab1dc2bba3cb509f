/* Tencent CVM AssociateInstancesKeyPairs and DisassociateInstancesKeyPairs
 * in the shape of the reference (the old cvm.api.qcloud.com API): Action
 * and its parameters in the query or in a form-encoded POST body, on / or
 * /v2/index.php, signed with SecretId, Timestamp, Nonce and Signature as
 * that API signs (sign.c); every answer is HTTP 200 {"Response": {...}},
 * an error being {"Response": {"Error": {"Code", "Message"}, "RequestId"}}.
 * Each call queues one task per instance. API 3.0 requests (X-TC-Action,
 * TC3-HMAC-SHA256) on the same path go to tencentv3.c; the checks and the
 * fan-out here serve both. */
#include <stdarg.h>
#include <strings.h>

#include <event2/keyvalq_struct.h>

#include "emulator.h"

#define PARAMS_MAX 512
#define LIST_INDEX_MAX 1000000

void tencent_reply(struct evhttp_request *req, const struct api_fault *err, cJSON *fields)
{
	char request_id[UUID_LEN + 1];
	if (store_uuid(request_id) < 0)
		snprintf(request_id, sizeof(request_id), "00000000-0000-4000-8000-000000000000");
	cJSON *answer = cJSON_CreateObject();
	cJSON *resp = NULL;
	if (answer && !err && fields) {
		resp = TAKE_PTR(fields);
		if (!cJSON_AddItemToObject(answer, "Response", resp)) {
			cJSON_Delete(resp);
			resp = NULL;
		}
	} else if (answer) {
		resp = cJSON_AddObjectToObject(answer, "Response");
	}
	cJSON_Delete(fields);
	bool ok = resp != NULL;
	if (ok && err) {
		cJSON *e = cJSON_AddObjectToObject(resp, "Error");
		ok = e && cJSON_AddStringToObject(e, "Code", err->code) &&
		     cJSON_AddStringToObject(e, "Message", err->msg);
	}
	if (!ok || !cJSON_AddStringToObject(resp, "RequestId", request_id)) {
		cJSON_Delete(answer);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
		return;
	}
	http_reply(req, 200, answer);
}

/* Query and form body, as one list of unique parameters. */
static int cvm_params(struct evhttp_request *req, struct evkeyvalq *q, struct api_fault *f)
{
	TAILQ_INIT(q);
	_cleanup_buf_ struct buf all = { 0 };
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	if (query && buf_puts(&all, query) < 0)
		return -ENOMEM;
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		_cleanup_(buf_wipe) struct buf body = { 0 };
		if (http_body_text(req, &body) < 0)
			return api_fault(f, "InvalidParameter", "the body is not form-encoded text");
		const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
		const char *form = "application/x-www-form-urlencoded";
		if (body.len > 0 && (!ct || strncasecmp(ct, form, strlen(form)) != 0))
			return api_fault(f, "InvalidParameter", "a POST body must be %s", form);
		if (body.len > 0 && ((all.len && buf_puts(&all, "&") < 0) || buf_puts(&all, body.data) < 0))
			return -ENOMEM;
	}
	if (all.len > 0 && evhttp_parse_query_str(all.data, q) < 0)
		return api_fault(f, "InvalidParameter", "the parameters are not key=value pairs");
	size_t count = 0;
	struct evkeyval *kv, *other;
	TAILQ_FOREACH(kv, q, next)
		if (++count > PARAMS_MAX)
			return api_fault(f, "InvalidParameter", "more than %d parameters", PARAMS_MAX);
	TAILQ_FOREACH(kv, q, next)
		for (other = TAILQ_NEXT(kv, next); other; other = TAILQ_NEXT(other, next))
			if (streq(kv->key, other->key))
				return api_fault(f, "InvalidParameter", "parameter %.64s given twice", kv->key);
	return 0;
}

bool tencent_is_key_id(const char *s)
{
	if (strncmp(s, "skey-", 5) != 0 || strlen(s) != 13)
		return false;
	for (const char *p = s + 5; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
			return false;
	return true;
}

struct item {
	unsigned long index;
	const char *value;
};

static int item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

/* PREFIX.1, PREFIX.2, ... in the order of N, 1 to CVM_LIST_MAX of them.
 * N counts from 1 in the old API and from 0 in API 3.0's form-encoded
 * calls (the SDKs' HmacSHA1/HmacSHA256 signing): both are taken. */
static int cvm_list(struct evkeyvalq *q, const char *prefix, const char **out, size_t *n, struct api_fault *f)
{
	struct item items[PARAMS_MAX];
	size_t count = 0, plen = strlen(prefix);
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, q, next) {
		if (strncmp(kv->key, prefix, plen) != 0 || kv->key[plen] != '.')
			continue;
		const char *digits = kv->key + plen + 1;
		unsigned long index;
		if ((digits[0] == '0' && digits[1]) || !http_parse_ulong(digits, LIST_INDEX_MAX, &index) || count >= PARAMS_MAX)
			return api_fault(f, "InvalidParameter", "%.64s is not %s.N", kv->key, prefix);
		items[count++] = (struct item){ index, kv->value };
	}
	if (count == 0)
		return api_fault(f, "MissingParameter", "%s.N is required", prefix);
	if (count > CVM_LIST_MAX)
		return api_fault(f, "InvalidParameterValue.LimitExceeded", "at most %d %s, not %zu", CVM_LIST_MAX,
				 prefix, count);
	qsort(items, count, sizeof(items[0]), item_cmp);
	for (size_t i = 0; i < count; i++)
		out[i] = items[i].value;
	*n = count;
	return 0;
}

int tencent_check_call(struct cvm_call *c, const char *const *instances, size_t n_instances,
		       const char *const *key_ids, size_t n_keys, bool by_name, struct api_fault *f)
{
	if (n_instances > CVM_LIST_MAX || n_keys > CVM_LIST_MAX)
		return api_fault(f, "InvalidParameterValue.LimitExceeded", "at most %d InstanceIds and KeyIds, not "
				 "%zu and %zu", CVM_LIST_MAX, n_instances, n_keys);
	if (n_instances == 0 || n_keys == 0)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.",
				 n_instances == 0 ? "InstanceIds" : "KeyIds");
	for (size_t i = 0; i < n_instances; i++) {
		if (!str_is_token(instances[i], NAME_MAX_LEN))
			return api_fault(f, "InvalidInstanceId.Malformed", "instance id %.64s is malformed", instances[i]);
		for (size_t j = 0; j < i; j++)
			if (streq(instances[i], instances[j]))
				return api_fault(f, "InvalidParameterValue", "instance %s listed twice", instances[i]);
		c->instances[i] = instances[i];
	}
	c->n_instances = n_instances;
	for (size_t i = 0; i < n_keys; i++) {
		if (!str_is_token(key_ids[i], NAME_MAX_LEN) || (!by_name && !tencent_is_key_id(key_ids[i])))
			return api_fault(f, "InvalidKeyPairId.Malformed", "key pair id %.64s is malformed", key_ids[i]);
		c->keys[i] = by_name ? store_keypair_find(key_ids[i]) : store_keypair_by_id(key_ids[i]);
		if (!c->keys[i])
			return api_fault(f, "InvalidKeyPairId.NotFound", "key pair %s does not exist", key_ids[i]);
		for (size_t j = 0; j < i; j++)
			if (c->keys[i] == c->keys[j])
				return api_fault(f, "InvalidParameterValue", "key pair %s listed twice", key_ids[i]);
	}
	c->n_keys = n_keys;
	return 0;
}

static int cvm_parse(struct evkeyvalq *q, struct cvm_call *c, struct api_fault *f)
{
	const char *action = evhttp_find_header(q, "Action");
	if (!action)
		return api_fault(f, "MissingParameter", "Action is required");
	if (!streq(action, "AssociateInstancesKeyPairs") && !streq(action, "DisassociateInstancesKeyPairs"))
		return api_fault(f, "InvalidAction", "action %.64s is not supported", action);
	c->associate = streq(action, "AssociateInstancesKeyPairs");

	const char *force = evhttp_find_header(q, "ForceStop");
	if (force && strcasecmp(force, "TRUE") != 0 && strcasecmp(force, "FALSE") != 0)
		return api_fault(f, "InvalidParameterValue", "ForceStop is TRUE or FALSE");

	const char *instances[CVM_LIST_MAX], *ids[CVM_LIST_MAX];
	size_t n_instances = 0, n_keys = 0;
	int r = cvm_list(q, "InstanceIds", instances, &n_instances, f);
	if (r == 0)
		r = cvm_list(q, "KeyIds", ids, &n_keys, f);
	if (r == 0)
		r = tencent_check_call(c, instances, n_instances, ids, n_keys, true, f);
	return r;
}

/* Tencent's associate makes these keys the only managed ones and turns
 * password login off; its disassociate removes the named keys. */
static cJSON *cvm_task_body(const char *task_id, const struct cvm_call *c, const char *instance)
{
	cJSON *t = cJSON_CreateObject();
	cJSON *keys = t ? cJSON_CreateArray() : NULL;
	bool ok = keys && cJSON_AddItemToObject(t, "keypairs", keys);
	if (!ok)
		cJSON_Delete(keys);
	ok = ok && cJSON_AddStringToObject(t, "task_id", task_id) &&
	     cJSON_AddStringToObject(t, "action", c->associate ? "associate" : "disassociate");
	for (size_t i = 0; ok && i < c->n_keys; i++) {
		cJSON *k = cJSON_CreateObject();
		ok = k && cJSON_AddItemToArray(keys, k) && cJSON_AddStringToObject(k, "name", c->keys[i]->name) &&
		     (!c->associate || cJSON_AddStringToObject(k, "public_key", c->keys[i]->public_key));
	}
	cJSON *server = ok ? cJSON_AddObjectToObject(t, "server") : NULL;
	ok = server && cJSON_AddStringToObject(server, "id", instance) &&
	     (!c->associate || cJSON_AddTrueToObject(server, "disable_password"));
	if (!ok) {
		cJSON_Delete(t);
		return NULL;
	}
	return t;
}

int tencent_queue(const struct cvm_call *c, struct api_fault *f)
{
	if (store_reserve(c->n_instances) < 0)
		return api_fault(f, "LimitExceeded", "too many tasks in the emulator (at most %d)", TASKS_MAX);
	struct task *tasks[CVM_LIST_MAX];
	for (size_t i = 0; i < c->n_instances; i++) {
		char id[UUID_LEN + 1];
		int r = store_uuid(id);
		cJSON *body = r < 0 ? NULL : cvm_task_body(id, c, c->instances[i]);
		r = body ? store_task_add(id, c->instances[i], c->associate ? TASK_RESET : TASK_UNBIND, body, &tasks[i])
			 : -ENOMEM;
		if (r == 0)
			r = store_task_bind(tasks[i], c->keys, c->n_keys, false);
		if (r == -ENOSPC)
			return api_fault(f, "LimitExceeded", "too many servers in the emulator (at most %d)",
					 SERVERS_MAX);
		if (r < 0)
			return api_fault(f, "InternalServerError", "out of memory");
	}
	for (size_t i = 0; i < c->n_instances; i++)
		agentapi_tasks_queued(tasks[i]->server);
	return 0;
}

/* API 3.0 names its action in a header and signs with TC3; the old API
 * carries both among its parameters. */
static bool tencent_is_v3(struct evhttp_request *req)
{
	const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(h, "Authorization");
	return evhttp_find_header(h, "X-TC-Action") || (auth && strncmp(auth, "TC3-", 4) == 0);
}

void tencent_handle(struct evhttp_request *req)
{
	if (tencent_is_v3(req)) {
		tencentv3_handle(req);
		return;
	}
	struct api_fault f = { 0 };
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	int r;
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_POST)
		r = api_fault(&f, "UnsupportedOperation", "GET or POST");
	else {
		struct evkeyvalq q;
		struct cvm_call c = { 0 };
		r = cvm_params(req, &q, &f);
		if (r == 0)
			r = sign_tencent_v1(req, &q, &f);
		if (r == 0)
			r = cvm_parse(&q, &c, &f);
		if (r == 0)
			r = tencent_queue(&c, &f);
		if (r == -ENOMEM)
			r = api_fault(&f, "InternalServerError", "out of memory");
		evhttp_clear_headers(&q);
	}
	tencent_reply(req, r < 0 ? &f : NULL, NULL);
}
