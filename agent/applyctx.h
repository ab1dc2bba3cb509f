/* What the modules of one apply share: the transaction's state (struct
 * apply), the steps its time is charged to, and the helpers all of them
 * use. apply.c runs the transaction and records it; applyprep.c plans it
 * before the first write; applywrite.c backs up, writes, reloads and
 * probes; applyundo.c rolls back, at once or after a crash. Internal to
 * those four: everyone else calls apply.h. */
#pragma once

#include <time.h>

#include "config.h"
#include "journal.h"
#include "listen.h"
#include "plan.h"
#include "proof.h"
#include "sshd.h"
#include "task.h"

#define PORT_WAIT_MS 5000
#define KEYS_RETRIES 5		/* redoing the edit when someone else wrote the file */

/* Where a task's time goes, for `-v` and the benchmarks. */
enum step {
	STEP_SSHD_T,
	STEP_PROVE,
	STEP_PLAN,
	STEP_BACKUP,
	STEP_CONFIG,
	STEP_RELOAD,
	STEP_WRITE,
	STEP_PROBE,
	STEP_COUNT,
};

struct apply {
	const struct config *cfg;
	struct journal *j;
	const struct task *task;
	struct result *res;
	int64_t start;			/* when apply_text began: the result's duration_ms */
	int64_t deadline;
	bool recorded;			/* the commit recorded the result */
	struct plan plan;
	struct sshd_settings sshd;	/* as sshd is before the task */
	struct sshd_units units;
	bool running;			/* sshd answers on its port */
	bool units_known;
	struct backup backup;
	bool backed_up;
	bool reloaded;
	int64_t step_us[STEP_COUNT];
	int64_t mark;
	const struct pubkey *replaced;	/* the key a keypair credential proved */
	int listen_ports[SSHD_MAX_PORTS];	/* where sshd listens today (ListenAddress ports too) */
	char stale[RESULT_MSG_MAX];	/* no new sshd was seen after the last reload: why */
	size_t n_listen_ports;
};

static inline int64_t apply_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Charges the time since the last mark to a step. */
static inline void apply_step_done(struct apply *a, enum step s)
{
	int64_t t = apply_now_us();
	a->step_us[s] += t - a->mark;
	a->mark = t;
}

/* sshd on this VM at port, as the task's user, its host keys pinned. */
static inline struct proof_target apply_target(const struct apply *a, int port)
{
	return (struct proof_target){ .address = a->cfg->address, .port = port, .user = a->plan.user.name,
				      .hostkeys = &a->sshd.hostkeys, .timeout_ms = a->cfg->connect_timeout_ms };
}

/* applyprep.c: everything before the first write. */

/* Checks the task against this VM, runs sshd -T, proves the credential
 * and plans every file; fills a->res and returns -1 on a refusal. */
int applyprep_prepare(struct apply *a, const char *server_id, struct pubkey *replaced);
/* sshd -T for the task's user (cached), its failure mapped to a->res. */
int applyprep_query_sshd(struct apply *a, struct sshd_settings *s);

/* applywrite.c: the writes, the reloads and the probe. */

/* Backs up, writes, reloads and probes; -1 with a->res set on the first
 * failure, after which the caller rolls back. */
int applywrite_transact(struct apply *a);
/* Replaces path through the fd-based walk (safefile_replace). 0 or -errno. */
int applywrite_file(const char *path, uid_t walk_uid, gid_t walk_gid, const char *home, bool create,
		    const char *data, size_t len, uid_t uid, gid_t gid, mode_t mode, struct safefile_stat *expect,
		    char *msg, size_t msglen);
/* 0 once every port has a root listener not in before, -ETIMEDOUT with msg
 * at until. */
int applywrite_wait_generation(int64_t until, const struct listeners *before, const int *ports, size_t n,
			       char *msg, size_t msglen);
/* A key exchange on port that shows one of this VM's host keys. */
bool applywrite_handshake_ok(const struct apply *a, int port, char *msg, size_t msglen);

/* applyundo.c: the rollback. */

/* Restores what the task wrote and reloads sshd back when it was
 * reloaded; drops the backups only when all of it went back. */
void applyundo_rollback(struct apply *a);
