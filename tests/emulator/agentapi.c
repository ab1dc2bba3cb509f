/* The agent's side (contract section 5): the long poll that hands out a
 * server's tasks and the result POST that closes them.
 *
 * A poll answers at once with every READY task of its server, oldest first,
 * and with RUNNING ones handed out longer than --redeliver-ms ago without a
 * result (the agent drops task ids it has seen). Otherwise it waits: a task
 * queued for the server answers the oldest waiting poll; at the end of the
 * wait the answer is 204. A poll without ?wait= is held POLL_HOLD_DEFAULT_S:
 * neither cloud documents a hold for this side, and a minute keeps an idle
 * agent to one request a minute. */
#include <event2/keyvalq_struct.h>

#include "emulator.h"

#define POLL_HOLD_DEFAULT_S 60

struct poll {
	struct hold *hold;
	struct server *srv;
	int64_t deadline_ms;
	TAILQ_ENTRY(poll) link;
};

static bool agent_authorized(struct evhttp_request *req)
{
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *prefix = "Bearer ";
	if (!auth || strncmp(auth, prefix, strlen(prefix)) != 0)
		return false;
	return http_token_equal(auth + strlen(prefix), emu.opt.agent_token);
}

/* The tasks srv's poll hands out at now, marked RUNNING; NULL when there
 * are none. *next is when a RUNNING task falls due again (INT64_MAX: none). */
static cJSON *poll_take(struct server *srv, int64_t now, int64_t *next, int *err)
{
	cJSON *list = NULL;
	*next = INT64_MAX;
	*err = 0;
	struct task *t;
	TAILQ_FOREACH(t, &srv->open, open) {
		int64_t due = t->delivered_ms + emu.opt.redeliver_ms;
		if (t->state == TASK_RUNNING && due > now) {
			if (due < *next)
				*next = due;
			continue;
		}
		if (!list && !(list = cJSON_CreateArray()))
			break;
		if (tasksign_enabled()) {
			cJSON *env = tasksign_wrap(t->body);
			if (!env || !cJSON_AddItemToArray(list, env)) {
				cJSON_Delete(env);
				break;
			}
		} else if (!cJSON_AddItemReferenceToArray(list, t->body)) {
			break;
		}
		store_task_deliver(t, now);
	}
	if (t) {
		/* out of memory: what was marked goes out again later */
		cJSON_Delete(list);
		*err = -ENOMEM;
		return NULL;
	}
	return list;
}

static void poll_free(struct poll *p)
{
	struct server *srv = p->srv;
	TAILQ_REMOVE(&srv->polls, p, link);
	free(p);
	store_server_release(srv);
}

static void reply_tasks(struct evhttp_request *req, cJSON *list)
{
	cJSON *answer = cJSON_CreateObject();
	if (!answer || !cJSON_AddItemToObject(answer, "tasks", list)) {
		cJSON_Delete(list);
		cJSON_Delete(answer);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
		return;
	}
	http_reply(req, 200, answer);
}

/* Answers p when it has tasks or its wait is over; else waits on. */
static void poll_check(struct poll *p)
{
	int64_t now = now_ms(), next;
	int err;
	cJSON *list = poll_take(p->srv, now, &next, &err);
	if (!list && !err && now < p->deadline_ms) {
		if (hold_arm(p->hold, (next < p->deadline_ms ? next : p->deadline_ms) - now) == 0)
			return;
		err = -ENOMEM;
	}
	struct evhttp_request *req = hold_release(p->hold);
	poll_free(p);
	if (err < 0)
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
	else if (list)
		reply_tasks(req, list);
	else
		http_reply(req, 204, NULL);
}

static void poll_fire(struct hold *h)
{
	poll_check(hold_data(h));
}

static void poll_gone(struct hold *h)
{
	poll_free(hold_data(h));
}

void agentapi_tasks_queued(struct server *srv)
{
	struct poll *p = TAILQ_FIRST(&srv->polls);
	if (p)
		poll_check(p);
}

static void do_poll(struct evhttp_request *req, const char *server_id)
{
	struct evkeyvalq q;
	unsigned long wait = POLL_HOLD_DEFAULT_S;
	int r = http_query(req, &q);
	const char *w = evhttp_find_header(&q, "wait");
	bool ok = r == 0 && (!w || http_parse_ulong(w, POLL_WAIT_MAX_S, &wait));
	evhttp_clear_headers(&q);
	if (!ok) {
		http_kps_error(req, 400, KPS_INVALID, "wait must be an integer 0-%d", POLL_WAIT_MAX_S);
		return;
	}
	struct server *srv = NULL;
	r = store_server_get(server_id, &srv);
	if (r < 0) {
		http_kps_error(req, 503, KPS_UNAVAILABLE, "too many servers (at most %d)", SERVERS_MAX);
		return;
	}
	struct poll *p = calloc(1, sizeof(*p));
	if (!p) {
		store_server_release(srv);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
		return;
	}
	p->srv = srv;
	p->deadline_ms = now_ms() + (int64_t)wait * 1000;
	TAILQ_INSERT_TAIL(&srv->polls, p, link);
	p->hold = hold_new(req, poll_fire, poll_gone, p);
	if (!p->hold) {
		poll_free(p);
		http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
		return;
	}
	poll_check(p);
}

/* Contract section 4, checked as far as the control plane relies on it. */
static const char *check_result(const cJSON *res, const char *task_id, bool *success)
{
	if (!cJSON_IsObject(res))
		return "the result must be a JSON object";
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(res, "task_id");
	if (!cJSON_IsString(id) || !streq(id->valuestring, task_id))
		return "task_id must be the task of the path";
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(res, "server_id");
	if (sid && !cJSON_IsString(sid))
		return "server_id must be a string";
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(res, "status");
	if (!cJSON_IsString(status) || (!streq(status->valuestring, "SUCCESS") && !streq(status->valuestring, "FAILED")))
		return "status must be SUCCESS or FAILED";
	*success = streq(status->valuestring, "SUCCESS");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(res, "error_code");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(res, "error_msg");
	if ((code && !cJSON_IsString(code)) || (msg && !cJSON_IsString(msg)))
		return "error_code and error_msg must be strings";
	if (!*success && (!code || !msg))
		return "a FAILED result carries error_code and error_msg";
	return NULL;
}

static void do_result(struct evhttp_request *req, const char *server_id, const char *task_id)
{
	if (emu.opt.fail_results > 0) {
		emu.opt.fail_results--;
		http_kps_error(req, 503, KPS_UNAVAILABLE, "result refused on purpose (--fail-results)");
		return;
	}
	cJSON *res = NULL;
	if (http_body_json(req, &res) < 0) {
		http_kps_error(req, 400, KPS_INVALID, "the body is not one JSON value");
		return;
	}
	bool success = false;
	const char *why = check_result(res, task_id, &success);
	struct task *t = store_task_find(task_id);
	if (why) {
		http_kps_error(req, 400, KPS_INVALID, "%s", why);
	} else if (!t || !streq(t->server_id, server_id)) {
		http_kps_error(req, 404, KPS_NO_TASK, "no task %s for server %s", task_id, server_id);
	} else {
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(res, "error_code");
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(res, "error_msg");
		store_task_finish(t, success, code ? code->valuestring : NULL, msg ? msg->valuestring : NULL);
		cJSON *answer = cJSON_CreateObject();
		if (answer)
			http_reply(req, 200, answer);
		else
			http_kps_error(req, 500, KPS_INTERNAL, "out of memory");
	}
	cJSON_Delete(res);
}

void agentapi_handle(struct evhttp_request *req, const struct strv *segs)
{
	if (!agent_authorized(req)) {
		http_kps_error(req, 401, KPS_UNAUTHORIZED, "bearer token missing or wrong");
		return;
	}
	/* v1 servers {id} tasks [{task_id} result] */
	char **s = segs->v;
	bool poll = segs->n == 4 && streq(s[1], "servers") && streq(s[3], "tasks");
	bool result = segs->n == 6 && streq(s[1], "servers") && streq(s[3], "tasks") && streq(s[5], "result");
	if (!poll && !result) {
		http_kps_error(req, 404, KPS_NO_PATH, "no such path");
		return;
	}
	if (!str_is_token(s[2], NAME_MAX_LEN) || (result && !str_is_token(s[4], NAME_MAX_LEN))) {
		http_kps_error(req, 400, KPS_INVALID, "server and task ids are 1-64 of [A-Za-z0-9._-]");
		return;
	}
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	if (m != (poll ? EVHTTP_REQ_GET : EVHTTP_REQ_POST)) {
		http_kps_error(req, 405, KPS_BAD_METHOD, "method not allowed here");
		return;
	}
	if (poll)
		do_poll(req, s[2]);
	else
		do_result(req, s[2], s[4]);
}
