/* The worker (worker.h): spawned by the monitor, exec'd fresh. */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "apply.h"
#include "config.h"
#include "journal.h"
#include "log.h"
#include "msgframe.h"
#include "task.h"
#include "worker.h"

#define WORKER_LOCK_WAIT_MS 30000	/* a rollback waits this long for the state dir */

/* The environment without what is the monitor's alone: systemd's
 * notification socket and passed descriptors. */
static char **worker_env(void)
{
	static const char *const drop[] = { "NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "LISTEN_FDS=",
					    "LISTEN_PID=", "LISTEN_FDNAMES=" };
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 1, sizeof(char *));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		bool keep = true;
		for (size_t d = 0; d < ELEMENTSOF(drop); d++)
			keep &= strncmp(environ[i], drop[d], strlen(drop[d])) != 0;
		if (keep)
			env[k++] = environ[i];
	}
	return env;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void worker_exec(int self_fd, char *const argv[], char *const env[], int sock, const int *keep_fds,
			size_t n_keep)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGIO };
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
		signal(sigs[i], SIG_DFL);
	/* Above every target first, so that no move overwrites a source. */
	int high[8];
	if (n_keep >= ELEMENTSOF(high))
		_exit(127);
	high[0] = fcntl(sock, F_DUPFD, 64);
	for (size_t i = 0; i < n_keep; i++)
		high[i + 1] = keep_fds[i] >= 0 ? fcntl(keep_fds[i], F_DUPFD, 64) : -1;
	for (size_t i = 0; i <= n_keep; i++)
		if (high[i] >= 0 && dup2(high[i], WORKER_SOCKET_FD + (int)i) < 0)
			_exit(127);
	/* The executable goes just above them, closed by the exec itself. */
	int exe = WORKER_SOCKET_FD + 1 + (int)n_keep;
	int high_exe = fcntl(self_fd, F_DUPFD, 64);
	if (high_exe < 0 || dup3(high_exe, exe, O_CLOEXEC) < 0)
		_exit(127);
	close_range((unsigned)exe + 1, ~0U, 0);
	fexecve(exe, argv, env);
	_exit(127);
}

int worker_spawn(int self_fd, const char *argv0, bool debug, const int *keep_fds, size_t n_keep, pid_t *pid,
		 int *fd)
{
	int sv[2];
	char *argv[3];
	size_t k = 0;
	argv[k++] = (char *)argv0;
	if (debug)
		argv[k++] = (char *)"-v";
	argv[k] = NULL;
	_cleanup_free_ char **env = worker_env();
	if (!env)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t p = fork();
	if (p == 0) {
		close(sv[0]);
		worker_exec(self_fd, argv, env, sv[1], keep_fds, n_keep);
	}
	int e = errno;
	close(sv[1]);
	if (p < 0) {
		close(sv[0]);
		return -e;
	}
	*pid = p;
	*fd = sv[0];
	return 0;
}

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

int worker_config(int fd, struct config *cfg)
{
	struct msgframe f;
	char *payload = NULL;
	char err[512] = "";
	int r = msgframe_recv(fd, 1U << MSGFRAME_CONFIG, WORKER_CONFIG_MAX, &f, &payload);
	if (r < 0) {
		log_warnx("no configuration from the monitor: %s", strerror(-r));
		config_init_defaults(cfg);
		return r;
	}
	r = config_load_settings(payload, f.len, cfg, err, sizeof(err));
	if (r < 0)
		log_warnx("the monitor's configuration: %s", err);
	free(payload);
	return r;
}

int worker_main(void)
{
	struct config cfg;
	struct msgframe f = { 0 };
	char *payload = NULL;
	struct result res;
	prctl(PR_SET_NAME, "kps-agent-worker", 0, 0, 0);
	int r = worker_config(WORKER_SOCKET_FD, &cfg);
	if (r == 0)
		r = msgframe_recv(WORKER_SOCKET_FD, 1U << MSGFRAME_TASK | 1U << MSGFRAME_RECOVER, TASK_MAX_BYTES + 4096,
				  &f, &payload);
	if (r < 0 || f.len < 8) {
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
	config_free(&cfg);
	r = json ? msgframe_send(WORKER_SOCKET_FD, MSGFRAME_RESULT, json, strlen(json)) : -ENOMEM;
	return r < 0 ? 1 : 0;
}
