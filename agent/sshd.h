/* The local sshd: what it would do (`sshd -T`), whether it runs, and how
 * to make it reload. */
#pragma once

#include <limits.h>
#include <sys/types.h>

#include "config.h"
#include "util.h"

#define SSHD_MAX_PORTS 16

struct sshd_settings {
	char *authorized_keys_file;	/* AuthorizedKeysFile as sshd -T prints it: every entry, unexpanded */
	int ports[SSHD_MAX_PORTS];
	size_t n_ports;
	struct strv listen;		/* listenaddress values, "addr:port" */
	int password;			/* passwordauthentication: 0/1 */
	int kbdinteractive;		/* kbdinteractiveauthentication: 0/1 */
	int pubkey;			/* pubkeyauthentication: 0/1 */
	char *pidfile;
	char *permit_root_login;	/* permitrootlogin: yes, prohibit-password, ...; NULL unknown */
	struct strv hostkeys;
	char *penalties;		/* persourcepenalties (9.8+), NULL before */
	char *penalty_exempt;		/* persourcepenaltyexemptlist, NULL when unset */
};

/* The main sshd_config that sshd reads: [sshd] config, or, where that file
 * is absent and a vendor copy exists with "/usr" before its last "/etc/"
 * (openSUSE and SLES 16 ship /usr/etc/ssh/sshd_config and no
 * /etc/ssh/sshd_config), the vendor copy, which is never written:
 * *vendor tells which. buf holds the vendor path. */
const char *sshd_main_config(const struct config *cfg, char *buf, size_t size, bool *vendor);

/* The OpenSSH version of the sshd binary as major * 100 + minor (902 for
 * 9.2, 1006 for 10.6), from `sshd -V`; -errno when it says none. */
int sshd_version(const struct config *cfg);

/* Parses `sshd -T` output. Pure. -EBADMSG when a needed key is missing. */
int sshd_settings_parse(const char *text, size_t len, struct sshd_settings *s);
void sshd_settings_free(struct sshd_settings *s);

/* Runs `sshd -T -f config -C user=U,host=localhost,addr=ADDR`: it
 * validates like `sshd -t` and gives the effective values for the user.
 * -ENOENT: no sshd binary; -EINVAL: sshd refused the config (msg has its
 * first line of complaint); other -errno. */
int sshd_query(const struct config *cfg, const char *user, struct sshd_settings *s, struct buf *raw, char *msg,
	       size_t msglen);

/* A digest (64 hex digits) of everything an `sshd -T -C user=U` answer
 * depends on: the sshd binary, every file sshd reads for its config (the
 * main file and, recursively, what its Include globs match, the globbed
 * directories too), /etc/passwd and /etc/group (Match User and Group), the
 * user and the address. Equal digests, equal answers: the answer can be
 * reused. */
int sshd_inputs_digest(const struct config *cfg, const char *user, char digest[65]);

/* Expands %h %u %U %% of an AuthorizedKeysFile entry; relative results go
 * under home. NULL on a bad pattern or ENOMEM. */
char *sshd_expand_keys_path(const char *pattern, const char *home, const char *user, uid_t uid);

/* The listening sshd's pid from its pid file, or 0 when none runs. */
pid_t sshd_running_pid(const struct sshd_settings *s);

/* What a reload does, as a list of steps: pure, so the choice of units is
 * unit-tested without a running systemd. */
enum reload_step_kind {
	STEP_BUS_RELOAD,	/* ReloadUnit(unit) */
	STEP_BUS_DAEMON_RELOAD,	/* Reload() the manager: generators rerun */
	STEP_BUS_RESTART,	/* RestartUnit(unit) */
	STEP_BUS_STOP,		/* StopUnit(unit) */
	STEP_BUS_START,		/* StartUnit(unit) */
	STEP_SIGNAL,		/* SIGHUP to the pid in the pid file */
	STEP_COMMAND,		/* exec argv */
	STEP_START_SSHD,	/* exec the sshd binary (arg) with -f config (arg2): it daemonizes */
};

struct reload_step {
	enum reload_step_kind kind;
	const char *arg;	/* unit, pid file, command line or sshd binary */
	const char *arg2;	/* STEP_START_SSHD: the config */
};

/* What systemd knows of the ssh units; all false without a bus. */
struct sshd_units {
	bool bus;
	bool ssh_service;	/* ssh.service is loaded (Debian, Ubuntu) */
	bool sshd_service;	/* sshd.service is loaded (Fedora, RHEL, Arch) */
	bool service_active;	/* that service is running */
	bool ssh_socket_active;	/* ssh.socket listens (Ubuntu 22.10+): socket activation */
};

#define RELOAD_MAX_STEPS 6
struct reload_plan {
	struct reload_step steps[RELOAD_MAX_STEPS];
	size_t n;
	char config[PATH_MAX];	/* STEP_START_SSHD's config (arg2 points here) */
};

/* -ENOENT when there is nothing to reload with (auto without units and
 * without a pid file). */
int sshd_reload_plan(const struct config *cfg, const struct sshd_settings *s, const struct sshd_units *units,
		     bool port_changed, struct reload_plan *plan);

/* How to bring sshd back when a reload left none serving (it could not
 * bind, it exited): systemd restarts the unit (the socket unit where sshd
 * is socket-activated), and without systemd the sshd binary is started
 * with the config. Pure. */
int sshd_start_plan(const struct config *cfg, const struct sshd_units *units, struct reload_plan *plan);

/* Asks systemd (sd-bus) about the ssh units; units->bus false without one. */
void sshd_units_query(struct sshd_units *units);

/* Carries the plan out. msg says which step failed. */
int sshd_reload_run(const struct reload_plan *plan, char *msg, size_t msglen);

/* Runs argv with a clean environment, stdout captured (bounded), stderr's
 * first line in msg, killed after timeout_ms. Returns the exit status
 * (0..255), or -errno (-ETIMEDOUT). */
int sshd_exec(char *const argv[], int timeout_ms, struct buf *out, char *msg, size_t msglen);
