/* The audit trail: one journal entry per change the agent makes and per
 * task it refuses for policy or signature, each with a stable MESSAGE_ID
 * (listed in kps-agent(8)). Without journald the same records go to the
 * log stream (stderr) as "audit EVENT KEY=value ..." lines. */
#pragma once

#include "plan.h"
#include "sshd.h"
#include "task.h"

enum audit_event {
	AUDIT_KEY_ADDED,
	AUDIT_KEY_REMOVED,
	AUDIT_KEY_EXPIRED,
	AUDIT_PASSWORD_LOGIN,
	AUDIT_PORT,
	AUDIT_REFUSED_POLICY,
	AUDIT_REFUSED_SIGNATURE,
	AUDIT_COUNT,
};

/* Any field may be NULL (not sent). */
struct audit_record {
	const char *user;
	const char *keypair;
	const char *fingerprint;	/* SHA256:... */
	const char *task_id;
	const char *requester;
	const char *path;		/* the file changed */
	const char *sha256_before;	/* of that file, hex */
	const char *sha256_after;
	const char *detail;		/* what changed, one line */
};

const char *audit_message_id(enum audit_event ev);
void audit_emit(enum audit_event ev, const struct audit_record *r);
/* hex: 64 digits and a NUL. */
void audit_sha256(const char *data, size_t len, char hex[65]);

/* After a task committed: one record per key added or removed, password
 * login and port changed. before: sshd's settings before the task. */
void audit_task(const struct task *t, const struct plan *p, const struct sshd_settings *before);
/* A task refused for policy or signature (other refusals are no change). */
void audit_refused(const struct task *t, const char *user, const struct result *res);
