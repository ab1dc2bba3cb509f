/* What a task changes, worked out before anything is written: the new
 * authorized_keys, the new sshd_config files, and what the probe must see
 * afterwards. Reads files; writes nothing. */
#pragma once

#include <sys/types.h>

#include "authkeys.h"
#include "config.h"
#include "safefile.h"
#include "sshd.h"
#include "sshdconf.h"
#include "task.h"

#define PLAN_MAX_CONF 32
#define PLAN_KEYS_MAX ((size_t)8 * 1024 * 1024)
#define PLAN_CONF_MAX ((size_t)1024 * 1024)

struct plan_file {
	char *path;
	uid_t walk_uid;		/* whose path (safefile walk) */
	gid_t walk_gid;
	const char *home;
	bool dir_missing;	/* ~/.ssh does not exist yet */
	struct safefile_stat st;
	char *old;
	size_t old_len;
	char *new;		/* NULL: unchanged */
	size_t new_len;
	uid_t uid;		/* owner and mode to write with */
	gid_t gid;
	mode_t mode;
};

struct plan_user {
	char *name;
	uid_t uid;
	gid_t gid;
	char *home;
};

struct plan {
	struct plan_user user;
	struct plan_file keys;
	struct plan_file conf[PLAN_MAX_CONF];	/* [0] the main sshd_config */
	size_t n_conf;
	size_t block;		/* the file holding the managed block: [0], or the vendor layout's drop-in */
	char *vendor_dir;	/* the vendor layout: the directory of the vendor config, never written */
	char *main_stage1;	/* main file listening on old and new port, or NULL */
	size_t main_stage1_len;
	struct sshdconf_block want;	/* the managed block afterwards */
	int stage1_ports[SSHDCONF_MAX_PORTS];
	size_t n_stage1_ports;
	struct pubkey *accept;	/* keys sshd must accept afterwards */
	size_t n_accept;
	struct pubkey *refuse;	/* keys sshd must refuse afterwards */
	size_t n_refuse;
	int password;		/* effective PasswordAuthentication afterwards: -1 no check */
	int kbdinteractive;	/* effective KbdInteractiveAuthentication: -1 no check */
	int port;		/* the port sshd listens on afterwards: 0 unchanged */
	bool port_change;
	bool keep_password;	/* [policy] allow_password_login = no: a disassociate leaves it */
};

/* Resolves the user (getpwnam_r). -ENOENT when there is none. */
int plan_user(const char *name, struct plan_user *u);

/* Reads the authorized_keys file sshd uses for the user and works out its
 * new text. replaced: the key proved by a keypair credential, or NULL. On
 * failure returns -1 with res set. */
int plan_keys(struct plan *p, const struct config *cfg, const struct sshd_settings *s, const struct task *t,
	      const struct pubkey *replaced, struct result *res);

/* Forgets what plan_keys worked out, to run it again on a file that changed. */
void plan_keys_reset(struct plan *p);

/* Reads sshd_config (and, for a port change, its Include'd files) and works
 * out their new texts. On failure returns -1 with res set. */
int plan_sshd_config(struct plan *p, const struct config *cfg, const struct sshd_settings *s, const struct task *t,
		     struct result *res);

/* Checks the effective settings of a written candidate against the plan;
 * stage1 checks the make-before-break ports. -1 with res set when a Match
 * block, a drop-in or a ListenAddress overrides the order. */
int plan_check_effective(const struct plan *p, const struct sshd_settings *s, bool stage1, struct result *res);

void plan_free(struct plan *p);
