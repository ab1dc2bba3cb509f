/* The INI configuration parsed once into struct config; nothing else reads
 * the file. */
#pragma once

#include "signature.h"
#include "util.h"

#define CONFIG_PATH_MAX 4096
/* A user name as the config takes it: 1-32 of [A-Za-z0-9._-], no leading '-'. */
#define CONFIG_USER_MAX 32

enum reload_kind {
	RELOAD_AUTO,
	RELOAD_SYSTEMD,
	RELOAD_PIDFILE,
	RELOAD_COMMAND,
	RELOAD_NONE,
};

struct config {
	char *path;			/* the file read; NULL when built-in defaults */
	struct buf settings;		/* every key set, in order: section, key, value, each NUL-ended */
	/* [agent] */
	char *state_dir;
	char *user;
	int task_timeout_s;		/* whole task, rollback included */
	size_t results_keep;		/* acknowledged results kept, newest first */
	/* The network side's user, as written (not resolved here: `run` looks
	 * it up and falls back to nobody when it is missing). */
	char unprivileged_user[CONFIG_USER_MAX + 1];
	/* [sshd] */
	char *sshd_binary;
	char *sshd_config;
	enum reload_kind reload;
	char *reload_arg;		/* unit, pid file path, or command line */
	char *address;
	int connect_timeout_ms;		/* each libssh exchange */
	int probe_timeout_ms;		/* retries of the post-change probe */
	bool key_fragment;		/* a key file of its own where sshd reads a directory of them */
	/* [control_plane] */
	char *url;
	char *server_id;
	char *token_file;
	char *ca_file;
	int poll_wait_s;		/* the long poll's hold asked of the server */
	int poll_jitter_pct;		/* each cycle and the first poll: up to this % of poll_wait more */
	/* [channel] */
	char *socket;
	char *device;
	/* [control_plane] verify_key: the file, and its keys read at load */
	char *verify_key;
	struct signature_keys verify_keys;
	/* [policy]: what tasks may do on this VM */
	struct strv policy_users;	/* empty: any user */
	bool allow_root;
	bool allow_port;
	bool allow_password_login;
};

/* Loads path (and path's conf.d/ drop-ins, in order) over the defaults.
 * When must_exist is false a missing file gives the defaults. On error
 * returns -errno with a message naming file, line and key in err. */
int config_load(const char *path, bool must_exist, struct config *cfg, char *err, size_t errlen);
void config_init_defaults(struct config *cfg);
/* The same configuration from cfg->settings of another process's load (the
 * monitor hands its own to the processes it starts, so that they run on
 * what it runs on, whatever the file says meanwhile). The key file of
 * verify_key is read again. */
int config_load_settings(const char *data, size_t len, struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);

/* This VM's id: [control_plane] server_id, else the DMI product UUID
 * (lower case). NULL when neither is known. Caller frees. */
char *config_server_id(const struct config *cfg);
