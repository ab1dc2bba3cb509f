/* The worker (worker.h): spawned by the monitor, exec'd fresh. */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "apply.h"
#include "config.h"
#include "journal.h"
#include "log.h"
#include "managed.h"
#include "msgframe.h"
#include "task.h"
#include "worker.h"

#define WORKER_LOCK_WAIT_MS 30000	/* a rollback waits this long for the state dir */

/* A task cut off (its worker died or ran out of time): roll back what it
 * left, and the result recorded for it, else its failure, recorded. */
static void worker_recover(const struct config *cfg, const char *payload, size_t len, struct result *res)
{
	unsigned flags = msgframe_get32(payload);
	enum error_code code = (enum error_code)msgframe_get32(payload + 4);
	const char *id = payload + 8;
	size_t id_len = strnlen(id, len - 8);
	const char *why = id_len < len - 8 ? id + id_len + 1 : "the task was cut off";
	struct journal j;
	char msg[256] = "";
	_cleanup_free_ char *sid = config_server_id(cfg);
	result_init(res);
	if (id_len <= TASK_ID_MAX)
		memcpy(res->task_id, id, id_len);
	result_set_server_id(res, sid ? sid : "");
	if (journal_open(cfg->state_dir, cfg->results_keep, &j, msg, sizeof(msg)) == 0 &&
	    journal_lock(&j, WORKER_LOCK_WAIT_MS) == 0) {
		apply_recover(cfg, &j, flags, code, why);
		if (!res->task_id[0] || journal_lookup(&j, res->task_id, res) < 0) {
			result_fail(res, code, "%s", why);
			if (res->task_id[0])
				journal_record(&j, res);
		}
		/* Recorded before the worker died, maybe not yet in the outbox:
		 * posting it twice is harmless, never is not. */
		if (res->task_id[0] && (flags & APPLY_OUTBOX))
			journal_outbox_put(&j, res);
	} else {
		result_fail(res, code, "%s", why);
	}
	journal_close(&j);
}

/* Keys past their key_expires_at leave authorized_keys: after every task,
 * and alone when the monitor's expiry timer asks. The monitor learns the
 * next expiry from the last frame. */
static int worker_sweep(const struct config *cfg)
{
	int64_t next = 0;
	prctl(PR_SET_NAME, "kps-agent-sweep", 0, 0, 0);
	int r = managed_sweep(cfg, (int64_t)time(NULL), &next);
	if (r < 0 && r != -EBUSY)
		log_warnx("expired keys: %s", strerror(-r));
	uint8_t out[12];
	msgframe_put32(out, (uint32_t)(r < 0 ? -r : 0));
	msgframe_put32(out + 4, (uint32_t)((uint64_t)next >> 32));
	msgframe_put32(out + 8, (uint32_t)(uint64_t)next);
	return msgframe_send(WORKER_SOCKET_FD, MSGFRAME_SWEPT, out, sizeof(out));
}

/* What OpenSSL otherwise does at the task's first key or hash: its
 * configuration read, the random generator seeded, SHA-256 fetched. Done
 * while the worker waits for its job, which for the monitor's spare is
 * before the task arrives. */
static void worker_warm(void)
{
	unsigned char b[32];
	unsigned int n = 0;
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	if (RAND_bytes(b, sizeof(b)) != 1 || EVP_Digest(b, sizeof(b), b, &n, EVP_sha256(), NULL) != 1)
		log_debug("worker: OpenSSL did not warm up; the task will do it");
	explicit_bzero(b, sizeof(b));
}

int worker_main(void)
{
	struct config cfg;
	struct msgframe f = { 0 };
	char *payload = NULL;
	struct result res;
	/* Its name says what it does: kps-agent-spare until its job comes
	 * (it may be the monitor's spare, queue.c), kps-agent-worker on its
	 * task, kps-agent-sweep once its result is sent. */
	prctl(PR_SET_NAME, "kps-agent-spare", 0, 0, 0);
	int r = worker_config(WORKER_SOCKET_FD, &cfg);
	worker_warm();
	if (r == 0)
		r = msgframe_recv(WORKER_SOCKET_FD, 1U << MSGFRAME_TASK | 1U << MSGFRAME_RECOVER | 1U << MSGFRAME_SWEEP,
				  TASK_MAX_BYTES + 4096, &f, &payload);
	prctl(PR_SET_NAME, "kps-agent-worker", 0, 0, 0);
	if (r == 0 && f.type == MSGFRAME_SWEEP && f.len == 0) {
		free(payload);
		r = worker_sweep(&cfg);
		config_free(&cfg);
		return r < 0 ? 1 : 0;
	}
	if (r < 0 || f.len < 8 || f.type == MSGFRAME_SWEEP) {
		if (r == 0)
			log_warnx("worker: no task from the monitor: %s", strerror(EBADMSG));
		if (payload)
			explicit_bzero(payload, f.len);
		free(payload);
		config_free(&cfg);
		return 2;
	}
	if (f.type == MSGFRAME_TASK)
		apply_text(&cfg, payload + 4, f.len - 4, msgframe_get32(payload), &res);
	else
		worker_recover(&cfg, payload, f.len, &res);
	explicit_bzero(payload, f.len);
	free(payload);
	_cleanup_free_ char *json = result_to_json(&res);
	result_free(&res);
	/* Renamed before the result leaves: whoever sees the result and then
	 * looks for a worker on a task finds none. */
	prctl(PR_SET_NAME, "kps-agent-sweep", 0, 0, 0);
	r = json ? msgframe_send(WORKER_SOCKET_FD, MSGFRAME_RESULT, json, strlen(json)) : -ENOMEM;
	if (r == 0)
		r = worker_sweep(&cfg);
	config_free(&cfg);
	return r < 0 ? 1 : 0;
}
