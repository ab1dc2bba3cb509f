/* Tencent CVM API 3.0, as its SDKs, tccli and Terraform call it: POST /
 * with a JSON body, the action in X-TC-Action, X-TC-Version 2017-03-12,
 * X-TC-Region, X-TC-Timestamp, signed TC3-HMAC-SHA256 (sign.c). Enough
 * for a client to import a key and bind it: ImportKeyPair,
 * DescribeKeyPairs, AssociateInstancesKeyPairs,
 * DisassociateInstancesKeyPairs. Every answer is HTTP 200
 * {"Response": {..., "RequestId"}}; an error is {"Response": {"Error":
 * {"Code", "Message"}, "RequestId"}} with Tencent's codes. A member the
 * action does not know is refused (UnknownParameter), as the cloud does. */
#include <strings.h>
#include <time.h>

#include "emulator.h"

#define CVM_VERSION "2017-03-12"
#define KEY_NAME_MAX 25		/* Tencent: letters, digits and '_', at most 25 */
#define DESCRIBE_LIMIT_DEFAULT 20
#define DESCRIBE_LIMIT_MAX 100

/* -EINVAL with UnknownParameter when body has a member not in known. */
static int v3_known(const cJSON *body, const char *const *known, struct api_fault *f)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, body) {
		bool ok = false;
		for (const char *const *k = known; *k && !ok; k++)
			ok = streq(m->string, *k);
		if (!ok)
			return api_fault(f, "UnknownParameter", "The parameter `%.64s` is not recognized.", m->string);
	}
	return 0;
}

/* name: an array of 1..CVM_LIST_MAX strings, or absent when optional. */
static int v3_strings(const cJSON *body, const char *name, bool required, const char **out, size_t *n,
		      struct api_fault *f)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(body, name);
	*n = 0;
	if (!a) {
		if (required)
			return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.", name);
		return 0;
	}
	if (!cJSON_IsArray(a))
		return api_fault(f, "InvalidParameter", "%s must be an array of strings", name);
	int count = cJSON_GetArraySize(a);
	if (count > CVM_LIST_MAX)
		return api_fault(f, "InvalidParameterValue.LimitExceeded", "at most %d %s, not %d", CVM_LIST_MAX, name,
				 count);
	if (count == 0 && required)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.", name);
	const cJSON *e;
	cJSON_ArrayForEach(e, a) {
		if (!cJSON_IsString(e))
			return api_fault(f, "InvalidParameter", "%s must be an array of strings", name);
		out[(*n)++] = e->valuestring;
	}
	return 0;
}

/* An integer member in [min, max], def when absent. */
static int v3_int(const cJSON *body, const char *name, long min, long max, long def, long *ret, struct api_fault *f)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
	*ret = def;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble)
		return api_fault(f, "InvalidParameter", "%s must be an integer", name);
	if (v->valuedouble < (double)min || v->valuedouble > (double)max)
		return api_fault(f, "InvalidParameterValue", "%s must be %ld to %ld", name, min, max);
	*ret = (long)v->valuedouble;
	return 0;
}

static int v3_bind(const cJSON *body, bool associate, struct api_fault *f)
{
	static const char *const known[] = { "InstanceIds", "KeyIds", "ForceStop", NULL };
	int r = v3_known(body, known, f);
	if (r < 0)
		return r;
	const cJSON *force = cJSON_GetObjectItemCaseSensitive(body, "ForceStop");
	if (force && !cJSON_IsBool(force))
		return api_fault(f, "InvalidParameter", "ForceStop must be a boolean");
	const char *instances[CVM_LIST_MAX], *ids[CVM_LIST_MAX];
	size_t n_instances = 0, n_keys = 0;
	struct cvm_call c = { .associate = associate };
	r = v3_strings(body, "InstanceIds", true, instances, &n_instances, f);
	if (r == 0)
		r = v3_strings(body, "KeyIds", true, ids, &n_keys, f);
	if (r == 0)
		r = tencent_check_call(&c, instances, n_instances, ids, n_keys, false, f);
	if (r == 0)
		r = tencent_queue(&c, f);
	return r;
}

static int v3_key_name(const char *name, struct api_fault *f)
{
	size_t n = strlen(name);
	if (n == 0)
		return api_fault(f, "InvalidKeyPairNameEmpty", "KeyName is empty");
	if (n > KEY_NAME_MAX)
		return api_fault(f, "InvalidKeyPairNameTooLong", "KeyName is longer than %d characters", KEY_NAME_MAX);
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return api_fault(f, "InvalidKeyPairNameIncludeIllegalChar",
					 "KeyName holds letters, digits and '_' only");
	return 0;
}

static int v3_import(const cJSON *body, cJSON **out, struct api_fault *f)
{
	static const char *const known[] = { "KeyName", "ProjectId", "PublicKey", "TagSpecification", NULL };
	int r = v3_known(body, known, f);
	if (r < 0)
		return r;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "KeyName");
	const cJSON *pub = cJSON_GetObjectItemCaseSensitive(body, "PublicKey");
	const cJSON *project = cJSON_GetObjectItemCaseSensitive(body, "ProjectId");
	if (!name || !pub || !project)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.",
				 !name ? "KeyName" : !pub ? "PublicKey" : "ProjectId");
	if (!cJSON_IsString(name) || !cJSON_IsString(pub))
		return api_fault(f, "InvalidParameter", "KeyName and PublicKey must be strings");
	long pid = 0;
	r = v3_int(body, "ProjectId", 0, INT32_MAX, 0, &pid, f);
	if (r < 0)
		return r;
	/* The emulator has the default project only. */
	if (pid != 0)
		return api_fault(f, "InvalidProjectId.NotFound", "project %ld does not exist", pid);
	if (cJSON_GetObjectItemCaseSensitive(body, "TagSpecification"))
		return api_fault(f, "UnsupportedOperation", "the emulator does not keep tags");
	r = v3_key_name(name->valuestring, f);
	if (r < 0)
		return r;
	const struct keypair *k = NULL;
	switch (store_keypair_add(name->valuestring, pub->valuestring, &k)) {
	case 0:
		break;
	case -EEXIST:
		return api_fault(f, "InvalidKeyPairName.Duplicate", "key pair %s already exists", name->valuestring);
	case -EINVAL:
		return api_fault(f, "InvalidPublicKey.Malformed", "PublicKey is not an OpenSSH public key line");
	case -ENOSPC:
		return api_fault(f, "InvalidKeyPair.LimitExceeded", "too many key pairs (at most %d)", KEYPAIRS_MAX);
	default:
		return -ENOMEM;
	}
	*out = cJSON_CreateObject();
	if (!*out || !cJSON_AddStringToObject(*out, "KeyId", k->id))
		return -ENOMEM;
	return 0;
}

static cJSON *v3_keypair_view(const struct keypair *k)
{
	char created[32];
	time_t t = (time_t)k->created;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return NULL;
	cJSON *v = cJSON_CreateObject();
	cJSON *inst = v ? cJSON_AddArrayToObject(v, "AssociatedInstanceIds") : NULL;
	bool ok = inst && cJSON_AddStringToObject(v, "KeyId", k->id) && cJSON_AddStringToObject(v, "KeyName", k->name) &&
		  cJSON_AddNumberToObject(v, "ProjectId", 0) && cJSON_AddStringToObject(v, "Description", "") &&
		  cJSON_AddStringToObject(v, "PublicKey", k->public_key) && cJSON_AddNullToObject(v, "PrivateKey") &&
		  cJSON_AddStringToObject(v, "CreatedTime", created) && cJSON_AddArrayToObject(v, "Tags");
	for (size_t i = 0; ok && i < k->instances.n; i++) {
		cJSON *s = cJSON_CreateString(k->instances.v[i]);
		ok = s && cJSON_AddItemToArray(inst, s);
	}
	if (!ok) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* Filters [{"Name": "key-name" | "project-id", "Values": [...]}]. */
static int v3_filters(const cJSON *body, const cJSON **names, const cJSON **projects, struct api_fault *f)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "Filters");
	*names = *projects = NULL;
	if (!list)
		return 0;
	if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > 10)
		return api_fault(f, "InvalidParameter", "Filters must be an array of at most 10 filters");
	const cJSON *e;
	cJSON_ArrayForEach(e, list) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "Name");
		const cJSON *values = cJSON_GetObjectItemCaseSensitive(e, "Values");
		bool ok = cJSON_IsObject(e) && cJSON_IsString(name) && cJSON_IsArray(values) &&
			  cJSON_GetArraySize(values) > 0 && cJSON_GetArraySize(values) <= CVM_LIST_MAX;
		for (const cJSON *v = ok ? values->child : NULL; v; v = v->next)
			ok = ok && cJSON_IsString(v);
		if (!ok)
			return api_fault(f, "InvalidParameter", "a filter is {\"Name\": string, \"Values\": [strings]}");
		if (streq(name->valuestring, "key-name"))
			*names = values;
		else if (streq(name->valuestring, "project-id"))
			*projects = values;
		else
			return api_fault(f, "InvalidFilter", "filter %.64s is not supported (key-name, project-id)",
					 name->valuestring);
	}
	return 0;
}

static bool v3_in(const cJSON *values, const char *s)
{
	const cJSON *v;
	cJSON_ArrayForEach(v, values)
		if (streq(v->valuestring, s))
			return true;
	return false;
}

static bool v3_listed(const char *const *ids, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (streq(ids[i], id))
			return true;
	return false;
}

static int v3_describe(const cJSON *body, cJSON **out, struct api_fault *f)
{
	static const char *const known[] = { "KeyIds", "Filters", "Offset", "Limit", NULL };
	const char *ids[CVM_LIST_MAX];
	const cJSON *names = NULL, *projects = NULL;
	size_t n_ids = 0;
	long offset = 0, limit = 0;
	int r = v3_known(body, known, f);
	if (r == 0)
		r = v3_strings(body, "KeyIds", false, ids, &n_ids, f);
	if (r == 0)
		r = v3_filters(body, &names, &projects, f);
	if (r == 0)
		r = v3_int(body, "Offset", 0, INT32_MAX, 0, &offset, f);
	if (r == 0)
		r = v3_int(body, "Limit", 1, DESCRIBE_LIMIT_MAX, DESCRIBE_LIMIT_DEFAULT, &limit, f);
	if (r < 0)
		return r;
	if (n_ids > 0 && cJSON_GetObjectItemCaseSensitive(body, "Filters"))
		return api_fault(f, "InvalidParameterValue", "KeyIds and Filters cannot be given together");
	for (size_t i = 0; i < n_ids; i++) {
		if (!tencent_is_key_id(ids[i]))
			return api_fault(f, "InvalidKeyPairId.Malformed", "key pair id %.64s is malformed", ids[i]);
		if (!store_keypair_by_id(ids[i]))
			return api_fault(f, "InvalidKeyPairId.NotFound", "key pair %s does not exist", ids[i]);
	}
	*out = cJSON_CreateObject();
	cJSON *count = *out ? cJSON_AddNumberToObject(*out, "TotalCount", 0) : NULL;
	cJSON *set = count ? cJSON_AddArrayToObject(*out, "KeyPairSet") : NULL;
	if (!set)
		return -ENOMEM;
	long total = 0;
	for (const struct keypair *k = store_keypairs_first(); k; k = TAILQ_NEXT(k, all)) {
		if ((projects && !v3_in(projects, "0")) || (names && !v3_in(names, k->name)) ||
		    (n_ids > 0 && !v3_listed(ids, n_ids, k->id)))
			continue;
		if (total >= offset && total - offset < limit) {
			cJSON *v = v3_keypair_view(k);
			if (!v || !cJSON_AddItemToArray(set, v)) {
				cJSON_Delete(v);
				return -ENOMEM;
			}
		}
		total++;
	}
	cJSON_SetNumberValue(count, (double)total);
	return 0;
}

/* The headers every call carries besides its signature. */
static int v3_headers(struct evhttp_request *req, const char **action, struct api_fault *f)
{
	const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *version = evhttp_find_header(h, "X-TC-Version");
	const char *region = evhttp_find_header(h, "X-TC-Region");
	const char *ct = evhttp_find_header(h, "Content-Type");
	*action = evhttp_find_header(h, "X-TC-Action");
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
		return api_fault(f, "UnsupportedProtocol", "the emulator takes API 3.0 calls as POST with a JSON body");
	if (!*action || !version || !region)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.",
				 !*action ? "Action" : !version ? "Version" : "Region");
	if (!ct || strncasecmp(ct, "application/json", strlen("application/json")) != 0)
		return api_fault(f, "InvalidParameter", "the Content-Type of an API 3.0 POST is application/json");
	if (!streq(version, CVM_VERSION))
		return api_fault(f, "NoSuchVersion", "The API version `%.32s` does not exist (CVM is %s).", version,
				 CVM_VERSION);
	if (!str_is_token(region, NAME_MAX_LEN))
		return api_fault(f, "UnsupportedRegion", "region %.64s is not a region name", region);
	return 0;
}

static int v3_dispatch(const char *action, const cJSON *body, cJSON **out, struct api_fault *f)
{
	if (streq(action, "AssociateInstancesKeyPairs"))
		return v3_bind(body, true, f);
	if (streq(action, "DisassociateInstancesKeyPairs"))
		return v3_bind(body, false, f);
	if (streq(action, "ImportKeyPair"))
		return v3_import(body, out, f);
	if (streq(action, "DescribeKeyPairs"))
		return v3_describe(body, out, f);
	return api_fault(f, "InvalidAction", "The action %.64s is not supported.", action);
}

void tencentv3_handle(struct evhttp_request *req)
{
	struct api_fault f = { 0 };
	const char *action = NULL;
	cJSON *body = NULL, *out = NULL;
	int r = sign_tencent_tc3(req, &f);
	if (r == 0)
		r = v3_headers(req, &action, &f);
	if (r == 0 && (http_body_json(req, &body) < 0 || !cJSON_IsObject(body)))
		r = api_fault(&f, "InvalidParameter", "the body is not one JSON object");
	if (r == 0)
		r = v3_dispatch(action, body, &out, &f);
	if (r == -ENOMEM)
		r = api_fault(&f, "InternalError", "out of memory");
	http_json_wipe(body);
	if (r < 0) {
		cJSON_Delete(out);
		out = NULL;
	}
	tencent_reply(req, r < 0 ? &f : NULL, out);
}
