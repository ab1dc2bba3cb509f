/* The emulator's state, all in memory: imported key pairs, tasks in
 * creation order, and the servers that have open tasks or waiting polls.
 * Everything is bounded; finished tasks make room for new ones. */
#include <sys/random.h>
#include <time.h>

#include "authkeys.h"
#include "emulator.h"

struct store {
	struct table *keypairs;		/* by name */
	struct table *keypair_ids;	/* by "skey-" id */
	struct table *tasks;		/* by task id */
	struct table *servers;		/* by server id */
	struct task_list all;		/* every task, oldest first */
	TAILQ_HEAD(, keypair) keypair_list;	/* in import order */
};

static struct store st;

static const char *const state_names[] = {
	[TASK_READY] = "READY_",
	[TASK_RUNNING] = "RUNNING_",
	[TASK_SUCCESS] = "SUCCESS_",
	[TASK_FAILED] = "FAILED_",
};

static const char *const kind_names[] = {
	[TASK_RESET] = "RESET",
	[TASK_REPLACE] = "REPLACE",
	[TASK_UNBIND] = "UNBIND",
};

static void keypair_free(void *p)
{
	struct keypair *k = p;
	if (!k)
		return;
	free(k->name);
	free(k->id);
	free(k->public_key);
	free(k->fingerprint);
	strv_free(&k->instances);
	free(k);
}

static void task_free(struct task *t)
{
	http_json_wipe(t->body);
	free(t->binds);
	free(t->server_id);
	free(t->error_code);
	free(t->error_msg);
	free(t);
}

static void server_free(void *p)
{
	struct server *s = p;
	if (!s)
		return;
	free(s->id);
	free(s);
}

int store_init(void)
{
	TAILQ_INIT(&st.all);
	TAILQ_INIT(&st.keypair_list);
	st.keypairs = table_new();
	st.keypair_ids = table_new();
	st.tasks = table_new();
	st.servers = table_new();
	if (!st.keypairs || !st.keypair_ids || !st.tasks || !st.servers)
		return -ENOMEM;
	return 0;
}

void store_free(void)
{
	struct task *t;
	while ((t = TAILQ_FIRST(&st.all))) {
		TAILQ_REMOVE(&st.all, t, all);
		task_free(t);
	}
	table_free(st.tasks, NULL);
	table_free(st.servers, server_free);
	table_free(st.keypair_ids, NULL);
	table_free(st.keypairs, keypair_free);
	st = (struct store){ 0 };
}

int store_uuid(char out[UUID_LEN + 1])
{
	uint8_t b[16];
	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		return -EIO;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

struct keypair *store_keypair_by_name(const char *name)
{
	return table_get(st.keypairs, name);
}

struct keypair *store_keypair_by_id(const char *id)
{
	return table_get(st.keypair_ids, id);
}

struct keypair *store_keypairs_first(void)
{
	return TAILQ_FIRST(&st.keypair_list);
}

struct keypair *store_keypair_find(const char *name_or_id)
{
	struct keypair *k = table_get(st.keypair_ids, name_or_id);
	return k ? k : table_get(st.keypairs, name_or_id);
}

/* "skey-" and 8 lowercase hex digits, unlike every id and name in use. */
static int keypair_new_id(char **ret)
{
	for (int tries = 0; tries < 100; tries++) {
		uint32_t v;
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			return -EIO;
		char id[16];
		snprintf(id, sizeof(id), "skey-%08x", v);
		if (!store_keypair_find(id)) {
			*ret = strdup(id);
			return *ret ? 0 : -ENOMEM;
		}
	}
	return -EEXIST;
}

int store_keypair_add(const char *name, const char *public_key, const struct keypair **ret)
{
	if (store_keypair_find(name))
		return -EEXIST;
	if (table_count(st.keypairs) >= KEYPAIRS_MAX)
		return -ENOSPC;
	_cleanup_(pubkey_free) struct pubkey key = { 0 };
	if (pubkey_parse(public_key, strlen(public_key), &key) < 0)
		return -EINVAL;

	struct keypair *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->name = strdup(name);
	k->public_key = pubkey_format(&key);
	k->fingerprint = TAKE_PTR(key.fingerprint);
	k->created = (int64_t)time(NULL);
	int r = keypair_new_id(&k->id);
	if (r == 0 && (!k->name || !k->public_key || !k->fingerprint))
		r = -ENOMEM;
	if (r == 0)
		r = table_put(st.keypairs, k->name, k);
	if (r == 0) {
		r = table_put(st.keypair_ids, k->id, k);
		if (r < 0)
			table_del(st.keypairs, k->name);
	}
	if (r < 0) {
		keypair_free(k);
		return r;
	}
	TAILQ_INSERT_TAIL(&st.keypair_list, k, all);
	*ret = k;
	return 0;
}

int store_server_get(const char *id, struct server **ret)
{
	struct server *s = table_get(st.servers, id);
	if (s) {
		*ret = s;
		return 0;
	}
	if (table_count(st.servers) >= SERVERS_MAX)
		return -ENOSPC;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->id = strdup(id);
	TAILQ_INIT(&s->open);
	TAILQ_INIT(&s->polls);
	int r = s->id ? table_put(st.servers, s->id, s) : -ENOMEM;
	if (r < 0) {
		server_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void store_server_release(struct server *s)
{
	if (!s || !TAILQ_EMPTY(&s->open) || !TAILQ_EMPTY(&s->polls))
		return;
	table_del(st.servers, s->id);
	server_free(s);
}

static bool task_is_open(const struct task *t)
{
	return t->state == TASK_READY || t->state == TASK_RUNNING;
}

int store_reserve(size_t n)
{
	if (n > TASKS_MAX)
		return -ENOSPC;
	struct task *t = TAILQ_FIRST(&st.all);
	while (table_count(st.tasks) + n > TASKS_MAX && t) {
		struct task *next = TAILQ_NEXT(t, all);
		if (!task_is_open(t)) {
			TAILQ_REMOVE(&st.all, t, all);
			table_del(st.tasks, t->id);
			task_free(t);
		}
		t = next;
	}
	return table_count(st.tasks) + n > TASKS_MAX ? -ENOSPC : 0;
}

int store_task_add(const char *id, const char *server_id, enum task_kind kind, cJSON *body,
		   struct task **ret)
{
	struct task *t = calloc(1, sizeof(*t));
	if (!t) {
		http_json_wipe(body);
		return -ENOMEM;
	}
	snprintf(t->id, sizeof(t->id), "%s", id);
	t->body = body;
	t->kind = kind;
	t->state = TASK_READY;
	t->server_id = strdup(server_id);
	if (!t->server_id) {
		task_free(t);
		return -ENOMEM;
	}
	struct server *s = NULL;
	int r = table_count(st.tasks) >= TASKS_MAX ? -ENOSPC : store_server_get(server_id, &s);
	if (r == 0)
		r = table_put(st.tasks, t->id, t);
	if (r < 0) {
		store_server_release(s);
		task_free(t);
		return r;
	}
	t->server = s;
	TAILQ_INSERT_TAIL(&s->open, t, open);
	TAILQ_INSERT_TAIL(&st.all, t, all);
	if (ret)
		*ret = t;
	return 0;
}

int store_task_bind(struct task *t, const struct keypair *const *keys, size_t n, bool unbind_all)
{
	if (n > 0) {
		t->binds = calloc(n, sizeof(*t->binds));
		if (!t->binds)
			return -ENOMEM;
		memcpy(t->binds, keys, n * sizeof(*t->binds));
	}
	t->n_binds = n;
	t->unbind_all = unbind_all;
	return 0;
}

static void keypair_unbind(struct keypair *k, const char *server)
{
	for (size_t i = 0; i < k->instances.n; i++) {
		if (!streq(k->instances.v[i], server))
			continue;
		free(k->instances.v[i]);
		memmove(k->instances.v + i, k->instances.v + i + 1, (k->instances.n - i) * sizeof(char *));
		k->instances.n--;
		return;
	}
}

/* Past SERVERS_MAX a key pair forgets its oldest instance: the list is
 * what DescribeKeyPairs shows, bounded as everything here is. */
static void keypair_bind(struct keypair *k, const char *server)
{
	if (strv_contains(&k->instances, server))
		return;
	if (k->instances.n >= SERVERS_MAX)
		keypair_unbind(k, k->instances.v[0]);
	(void)strv_push(&k->instances, server);	/* out of memory: the list stays as it was */
}

/* An associate makes its keys the server's only ones (the agent removes
 * the entries of earlier associations); a disassociate removes its keys. */
static void task_apply_binds(const struct task *t)
{
	struct keypair *k;
	if (t->kind != TASK_UNBIND || t->unbind_all)
		TAILQ_FOREACH(k, &st.keypair_list, all)
			keypair_unbind(k, t->server_id);
	for (size_t i = 0; i < t->n_binds; i++) {
		k = (struct keypair *)t->binds[i];
		if (t->kind == TASK_UNBIND)
			keypair_unbind(k, t->server_id);
		else
			keypair_bind(k, t->server_id);
	}
}

struct task *store_task_find(const char *id)
{
	return table_get(st.tasks, id);
}

struct task *store_tasks_first(void)
{
	return TAILQ_FIRST(&st.all);
}

void store_task_deliver(struct task *t, int64_t now)
{
	t->state = TASK_RUNNING;
	t->delivered_ms = now;
}

void store_task_finish(struct task *t, bool success, const char *error_code, const char *error_msg)
{
	struct server *s = t->server;
	if (s) {
		TAILQ_REMOVE(&s->open, t, open);
		t->server = NULL;
		/* the first result counts; a repeated one changes nothing */
		if (success)
			task_apply_binds(t);
	}
	/* Nothing is delivered again: the credential goes. */
	http_json_wipe(t->body);
	t->body = NULL;
	t->state = success ? TASK_SUCCESS : TASK_FAILED;
	free(t->error_code);
	free(t->error_msg);
	t->error_code = !success && error_code ? strdup(error_code) : NULL;
	t->error_msg = !success && error_msg ? strdup(error_msg) : NULL;
	t->result_posts++;
	store_server_release(s);
}

void store_task_status(const struct task *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", state_names[t->state], kind_names[t->kind]);
}
