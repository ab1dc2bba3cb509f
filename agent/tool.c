/* kps-agent-tool: the commands of kps-agent other than run (kps-agent
 * execs it with its own argv, main.c), and, as argv[0] kps-agent-worker,
 * the daemon's workers (worker.h). It links the apply path (libssh,
 * libsystemd, libselinux); the monitor and the network side do not. */
#include <getopt.h>

#include "apply.h"
#include "cli.h"
#include "config.h"
#include "harden.h"
#include "helper.h"
#include "log.h"
#include "safefile.h"
#include "selinux.h"
#include "usage.h"
#include "version.h"
#include "worker.h"

/* apply and check: one task in, one result out. */
static int cmd_apply(const struct config *cfg, int argc, char **argv, unsigned flags)
{
	static const struct option opts[] = { { "task", required_argument, NULL, 't' }, { 0 } };
	const char *task_path = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+t:", opts, NULL)) != -1) {
		if (c != 't') {
			usage(stderr);
			return 2;
		}
		task_path = optarg;
	}
	if (optind < argc) {
		fprintf(stderr, "kps-agent: %s: unexpected argument %s\n", argv[0], argv[optind]);
		return 2;
	}
	char *text = NULL;
	size_t len = 0;
	int r = cli_read_task(task_path, &text, &len);
	if (r < 0) {
		fprintf(stderr, "kps-agent: cannot read task %s: %s\n", task_path ? task_path : "from stdin",
			strerror(-r));
		return 2;
	}
	struct result res;
	r = apply_text(cfg, text, len, flags, &res);
	/* The task text may hold a password or private key. The analyzer
	 * takes cli_read_task's -errno for a possible 0, text unset. */
	explicit_bzero(text, len);	/* NOLINT(clang-analyzer-core.NonNullParamChecker) */
	free(text);
	_cleanup_free_ char *json = result_to_json(&res);
	result_free(&res);
	if (!json)
		return 2;
	/* The result is recorded; a caller that cannot read it gets exit 2. */
	if (printf("%s\n", json) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, "kps-agent: cannot write the result: %s\n", strerror(errno));
		return 2;
	}
	return r == 0 ? 0 : 1;
}

/* A worker: exec'd by the monitor under argv[0] kps-agent-worker, with
 * its socket on descriptor 3. Anyone else starting one gets exit 2. */
static int worker_role(int argc, char **argv)
{
	int r = helper_role(argc, argv, WORKER_SOCKET_FD);
	return r ? r : worker_main();
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	int c;
	harden_process();
	log_init("kps-agent");
	safefile_set_labeller(&selinux_labeller);
	const char *self = argc > 0 ? argv[0] : "";
	if (streq(self, "kps-agent-worker"))
		return worker_role(argc, argv);
	while ((c = getopt_long(argc, argv, USAGE_SHORTOPTS, usage_options, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'V':
			printf("kps-agent %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			log_set_debug(true);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	static const char *const cmds[] = { "apply", "check", "submit", "list", "status" };
	size_t k = 0;
	while (k < ELEMENTSOF(cmds) && !streq(cmd, cmds[k]))
		k++;
	if (k == ELEMENTSOF(cmds)) {
		fprintf(stderr, "kps-agent: unknown command %s\n", cmd);
		usage(stderr);
		return 2;
	}
	struct config cfg;
	char err[512] = "";
	if (config_load(config_path ? config_path : DEFAULT_CONFIG, config_path != NULL, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "kps-agent: %s\n", err);
		config_free(&cfg);
		return 2;
	}
	int r;
	if (streq(cmd, "apply") || streq(cmd, "check"))
		r = cmd_apply(&cfg, argc - optind, argv + optind, streq(cmd, "check") ? APPLY_CHECK : 0);
	else if (streq(cmd, "submit"))
		r = cli_submit(&cfg, argc - optind, argv + optind);
	else if (streq(cmd, "list"))
		r = cli_list(&cfg, argc - optind, argv + optind);
	else
		r = cli_status(&cfg, argc - optind, argv + optind);
	config_free(&cfg);
	return r;
}
