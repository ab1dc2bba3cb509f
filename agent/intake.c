/* Signed or not, every task goes through here before anything else looks
 * at it; the daemon's network side never does (it only frames lines). */
#include <strings.h>
#include <time.h>

#include "intake.h"
#include "signature.h"

/* A signed task binds itself to one VM and one window of time. */
static int signed_rules(const struct task *t, const char *server_id, struct result *res)
{
	if (!t->has_expiry)
		return result_fail(res, ERR_BAD_SIGNATURE, "a signed task must carry expires_at");
	if (!server_id)
		return result_fail(res, ERR_BAD_SIGNATURE,
				   "this VM's server_id is unknown: a signed task cannot be bound to it");
	if (strcasecmp(server_id, t->server_id) != 0)
		return result_fail(res, ERR_WRONG_SERVER, "task is for server %s, this is %s", t->server_id, server_id);
	return 0;
}

int intake_task(const struct config *cfg, const char *server_id, const char *text, size_t len, struct task *task,
		struct result *res, bool *trusted)
{
	char *inner = NULL;
	size_t inner_len = 0;
	bool sign = cfg->verify_keys.n > 0;
	*trusted = true;
	*task = (struct task){ .disable_password = -1 };
	if (sign && signature_unwrap(&cfg->verify_keys, text, len, &inner, &inner_len, res) < 0) {
		*trusted = false;
		return -1;
	}
	int r = task_parse(sign ? inner : text, sign ? inner_len : len, task, res);
	if (inner) {
		explicit_bzero(inner, inner_len);
		free(inner);
	}
	if (r < 0)
		return -1;
	/* The journal keeps the id while the task may come again. */
	if (task->has_expiry)
		res->hold_until = task->expires_at;
	if (sign && signed_rules(task, server_id, res) < 0)
		return -1;
	if (task->key_expires_at && task->key_expires_at <= (int64_t)time(NULL))
		return result_fail(res, ERR_INVALID_TASK, "key_expires_at has passed: the key would never work");
	return 0;
}
