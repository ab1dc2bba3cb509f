/* kps-control-plane: an in-memory stand-in for the cloud side of kps-agent.
 * It answers the Huawei KPS and Tencent CVM calls that order key pair tasks
 * and the agent protocol (contract section 5) that hands the tasks out, on
 * one libevent loop. One header for the whole program, as tmux does. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/http.h>

#include "util.h"

#define BODY_MAX (1024 * 1024)		/* request bodies; evhttp answers 413 past it */
#define HEADERS_MAX (64 * 1024)
#define TASKS_MAX 100000		/* finished tasks are evicted, oldest first, past it */
#define SERVERS_MAX 100000
#define KEYPAIRS_MAX 10000
#define NAME_MAX_LEN 64			/* names and ids: 1-64 of [A-Za-z0-9._-] */
#define UUID_LEN 36
#define POLL_WAIT_MAX_S 600
#define DELAY_MAX_MS 600000
#define REDELIVER_MS_DEFAULT 30000
#define BATCH_MAX 10			/* Huawei batch-associate */
#define CVM_LIST_MAX 100		/* Tencent InstanceIds.N and KeyIds.N */

/* The error codes of the Huawei-style answers, {"error_code", "error_msg"}.
 * The agent side (/v1) answers its errors in the same shape.
 *
 * | code     | HTTP | when                                                     |
 * |----------|------|----------------------------------------------------------|
 * | KPS.0001 | 400  | body not JSON, or a field missing, of the wrong type,    |
 * |          |      | too long or out of range; a bad path parameter or query  |
 * | KPS.0002 | 400  | the named key pair is not in the store                   |
 * | KPS.0003 | 400  | a key pair of that name is already in the store          |
 * | KPS.0004 | 404  | no such task (or not for this server, on /v1)            |
 * | KPS.0005 | 400  | the store is full: key pairs, tasks or servers           |
 * | KPS.0006 | 400  | public_key is not one OpenSSH public key line            |
 * | KPS.0401 | 401  | X-Auth-Token missing/wrong, an AK/SK signature that does |
 * |          |      | not verify or an X-Sdk-Date 15 minutes off (on /v1: the  |
 * |          |      | bearer token)                                            |
 * | KPS.0404 | 404  | no such path                                             |
 * | KPS.0405 | 405  | the path exists, the method does not                     |
 * | KPS.0500 | 500  | out of memory                                            |
 * | KPS.0503 | 503  | --fail-results: a result refused on purpose              |
 */
#define KPS_INVALID "KPS.0001"
#define KPS_NO_KEYPAIR "KPS.0002"
#define KPS_KEYPAIR_EXISTS "KPS.0003"
#define KPS_NO_TASK "KPS.0004"
#define KPS_FULL "KPS.0005"
#define KPS_BAD_PUBLIC_KEY "KPS.0006"
#define KPS_UNAUTHORIZED "KPS.0401"
#define KPS_NO_PATH "KPS.0404"
#define KPS_BAD_METHOD "KPS.0405"
#define KPS_INTERNAL "KPS.0500"
#define KPS_UNAVAILABLE "KPS.0503"

struct options {
	const char *listen;
	const char *api_token;		/* NULL: Huawei X-Auth-Token refused */
	const char *agent_token;
	/* --huawei-aksk and --tencent-secret, copied out of argv (NULL: that
	 * signing is refused); the secret halves are wiped at exit. */
	char *huawei_ak;
	char *huawei_sk;
	char *tencent_id;
	char *tencent_key;
	unsigned long fail_results;	/* result POSTs still to refuse with 503 */
	unsigned delay_ms;
	unsigned redeliver_ms;
};

struct emulator {
	struct options opt;
	struct event_base *base;
	struct evhttp *http;
};

extern struct emulator emu;

/* tasksign.c: --sign-key, every task handed out as a signed task. */
int tasksign_load(const char *path);
bool tasksign_enabled(void);
void tasksign_free(void);
/* The envelope for task (an expires_at an hour ahead added when it has
 * none); NULL on ENOMEM. */
cJSON *tasksign_wrap(const cJSON *task);

/* table.c: string-keyed hash table; keys are borrowed from the values. */
struct table;
struct table *table_new(void);
void table_free(struct table *t, void (*free_value)(void *));
void *table_get(const struct table *t, const char *key);
int table_put(struct table *t, const char *key, void *value);	/* -EEXIST, -ENOMEM */
void *table_del(struct table *t, const char *key);
size_t table_count(const struct table *t);

/* store.c: key pairs, tasks and servers, in memory. */
enum task_state { TASK_READY, TASK_RUNNING, TASK_SUCCESS, TASK_FAILED };
enum task_kind { TASK_RESET, TASK_REPLACE, TASK_UNBIND };

struct keypair {
	char *name;
	char *id;		/* "skey-" and 8 lowercase hex digits: Tencent's KeyIds */
	char *public_key;	/* normalised: "type base64[ comment]" */
	char *fingerprint;	/* "SHA256:..." */
	int64_t created;	/* seconds since the epoch */
	/* servers whose agent reported the key bound, oldest first, as
	 * Tencent's DescribeKeyPairs AssociatedInstanceIds shows them */
	struct strv instances;
	TAILQ_ENTRY(keypair) all;
};

struct poll;
TAILQ_HEAD(task_list, task);
TAILQ_HEAD(poll_list, poll);

struct server {
	char *id;
	struct task_list open;	/* READY and RUNNING tasks, oldest first */
	struct poll_list polls;	/* waiting long polls, oldest first */
};

struct task {
	char id[UUID_LEN + 1];
	char *server_id;
	enum task_kind kind;
	enum task_state state;
	cJSON *body;		/* what the agent receives; wiped once finished */
	char *error_code;
	char *error_msg;
	unsigned result_posts;
	int64_t delivered_ms;
	struct server *server;	/* while READY or RUNNING */
	/* What a SUCCESS changes in the key pairs' instance lists: an
	 * associate makes binds[] the server's only keys; a disassociate
	 * removes binds[], or every key when unbind_all. */
	const struct keypair **binds;
	size_t n_binds;
	bool unbind_all;
	TAILQ_ENTRY(task) all;
	TAILQ_ENTRY(task) open;
};

int store_init(void);
void store_free(void);
int store_uuid(char out[UUID_LEN + 1]);
struct keypair *store_keypair_by_name(const char *name);
/* By Tencent id ("skey-...") first, then by name. */
struct keypair *store_keypair_find(const char *name_or_id);
struct keypair *store_keypair_by_id(const char *id);
/* In import order. */
struct keypair *store_keypairs_first(void);
/* -EEXIST (name taken), -EINVAL (not a public key), -ENOSPC, -ENOMEM. */
int store_keypair_add(const char *name, const char *public_key, const struct keypair **ret);
/* Makes room for n more tasks, evicting finished ones; -ENOSPC. */
int store_reserve(size_t n);
/* Queues body (owned from now on) as task id for server_id. */
int store_task_add(const char *id, const char *server_id, enum task_kind kind, cJSON *body,
		   struct task **ret);
/* Records what the task binds or unbinds once its agent reports SUCCESS. */
int store_task_bind(struct task *t, const struct keypair *const *keys, size_t n, bool unbind_all);
struct task *store_task_find(const char *id);
struct task *store_tasks_first(void);
void store_task_deliver(struct task *t, int64_t now);
void store_task_finish(struct task *t, bool success, const char *error_code, const char *error_msg);
/* "READY_RESET", "FAILED_UNBIND", ... */
void store_task_status(const struct task *t, char *buf, size_t len);
/* Finds or creates; -ENOSPC past SERVERS_MAX. */
int store_server_get(const char *id, struct server **ret);
/* Frees the server once it has neither open tasks nor waiting polls. */
void store_server_release(struct server *s);

/* hold.c: requests answered later (--delay-ms, long polls). A held
 * request whose client goes away is dropped: gone() runs and the request
 * is freed without an answer. */
struct hold;
typedef void (*hold_fn)(struct hold *h);
struct hold *hold_new(struct evhttp_request *req, hold_fn fire, hold_fn gone, void *data);
void *hold_data(const struct hold *h);
/* fire() runs after ms. */
int hold_arm(struct hold *h, int64_t ms);
/* Ends the hold: the connection is as evhttp left it; answer the request. */
struct evhttp_request *hold_release(struct hold *h);
/* At exit: runs gone() for every hold; evhttp_free() frees the requests. */
void hold_drop_all(void);

/* http.c: routing, bodies, answers. */
void http_request_cb(struct evhttp_request *req, void *arg);
/* Parses the body as one JSON value; -EINVAL when it is not. */
int http_body_json(struct evhttp_request *req, cJSON **ret);
/* The body as text (no NUL inside); -EINVAL otherwise. */
int http_body_text(struct evhttp_request *req, struct buf *b);
/* Sends json (consumed; NULL: no body). The printed text is wiped once
 * sent: task bodies carry passwords and private keys. */
void http_reply(struct evhttp_request *req, int code, cJSON *json);
void http_kps_error(struct evhttp_request *req, int code, const char *error_code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* An answer that refuses a call: the cloud's error code and message. */
struct api_fault {
	const char *code;
	char msg[256];
};
/* Fills f and returns -EINVAL, for `return api_fault(f, ...)`. */
int api_fault(struct api_fault *f, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool http_token_equal(const char *got, const char *want);
/* Wipes every string in the tree before freeing it; j is a root (no
 * siblings), as for cJSON_Delete. */
void http_json_wipe(cJSON *j);
bool http_json_is_name(const cJSON *j);
/* Decimal 0..max, digits only. */
bool http_parse_ulong(const char *s, unsigned long max, unsigned long *ret);
/* The request's query parameters into q (evhttp_clear_headers() after). */
int http_query(struct evhttp_request *req, struct evkeyvalq *q);

/* The request's body as it came, without consuming it (signatures cover
 * it; the handler reads it afterwards). */
int http_body_peek(struct evhttp_request *req, struct buf *b);

/* sign.c: the clouds' request signatures, checked against the configured
 * credentials. Each fills f with the cloud's error code and a message and
 * returns -EINVAL (-ENOMEM) when the request is not signed right. */
#define HUAWEI_DATE_SKEW_S (15 * 60)
#define TENCENT_SKEW_S (5 * 60)
/* Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=... */
int sign_huawei(struct evhttp_request *req, struct api_fault *f);
/* Authorization: TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=... */
int sign_tencent_tc3(struct evhttp_request *req, struct api_fault *f);
/* The old API's SecretId, Timestamp, Nonce, SignatureMethod, Signature
 * among the parameters q (query and form body). */
int sign_tencent_v1(struct evhttp_request *req, const struct evkeyvalq *q, struct api_fault *f);

/* huawei.c: /v3/{project_id}/... (segs[0] is "v3"). */
void huawei_handle(struct evhttp_request *req, const struct strv *segs);

/* tencent.c: the CVM calls, both API versions. The old API: Action=... on
 * / and /v2/index.php; API 3.0: POST / with X-TC-Action (tencentv3.c). */
void tencent_handle(struct evhttp_request *req);
struct cvm_call {
	bool associate;
	const char *instances[CVM_LIST_MAX];
	size_t n_instances;
	const struct keypair *keys[CVM_LIST_MAX];
	size_t n_keys;
};
/* Checks the instance ids and key ids (by_name: names too, as the old API
 * here allows) into c. */
int tencent_check_call(struct cvm_call *c, const char *const *instances, size_t n_instances,
		       const char *const *key_ids, size_t n_keys, bool by_name, struct api_fault *f);
/* "skey-" and 8 of [0-9a-z], as Tencent's key pair ids are. */
bool tencent_is_key_id(const char *s);
/* One task per instance. */
int tencent_queue(const struct cvm_call *c, struct api_fault *f);
/* {"Response": {fields..., "RequestId"}} or {"Response": {"Error", "RequestId"}}
 * with err; fields (consumed) may be NULL. */
void tencent_reply(struct evhttp_request *req, const struct api_fault *err, cJSON *fields);
/* tencentv3.c */
void tencentv3_handle(struct evhttp_request *req);
/* agentapi.c: /v1/servers/{server_id}/... */
void agentapi_handle(struct evhttp_request *req, const struct strv *segs);
/* New tasks for srv: a waiting poll gets them now. */
void agentapi_tasks_queued(struct server *srv);
