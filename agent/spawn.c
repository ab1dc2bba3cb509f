/* Starting the daemon's other processes (worker.h): the monitor's half
 * of a worker or the network side, and their half of the CONFIG frame. */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"
#include "msgframe.h"
#include "worker.h"

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
static void worker_exec(int exe_fd, char *const argv[], char *const env[], int sock, const int *keep_fds,
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
	int high_exe = fcntl(exe_fd, F_DUPFD, 64);
	if (high_exe < 0 || dup3(high_exe, exe, O_CLOEXEC) < 0)
		_exit(127);
	close_range((unsigned)exe + 1, ~0U, 0);
	fexecve(exe, argv, env);
	_exit(127);
}

int worker_spawn(int exe_fd, const char *argv0, bool debug, const int *keep_fds, size_t n_keep, pid_t *pid,
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
		worker_exec(exe_fd, argv, env, sv[1], keep_fds, n_keep);
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
