/* kps-agent: the command line, and dispatch to apply or run. */
#include <getopt.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "apply.h"
#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "netside.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: kps-agent [-c FILE] apply [--task FILE]\n"
		"       kps-agent [-c FILE] check [--task FILE]\n"
		"       kps-agent [-c FILE] submit [--task FILE]\n"
		"       kps-agent [-c FILE] list [--user USER] [--json]\n"
		"       kps-agent [-c FILE] status [--json]\n"
		"       kps-agent [-c FILE] run\n"
		"       kps-agent --version | --help\n"
		"\n"
		"Applies SSH key pair tasks from a cloud control plane to this VM.\n"
		"\n"
		"  -c, --config FILE  configuration (default %s)\n"
		"  apply              apply one task read from FILE, or stdin when FILE\n"
		"                     is - or absent; prints the result as one JSON line;\n"
		"                     exit 0 on SUCCESS, 1 on FAILED, 2 when the agent\n"
		"                     could not start\n"
		"  check              dry run of apply: the result it would give, with the\n"
		"                     diffs it would write in \"changes\"; changes nothing\n"
		"  submit             hand the task to the running daemon and print its\n"
		"                     result (exit codes as apply; 2 when no daemon answers)\n"
		"  list               the authorized_keys entries the agent manages\n"
		"  status             the daemon's state, whether it runs or not\n"
		"  --json             list, status: JSON instead of columns\n"
		"  run                run the daemon in the foreground (systemd Type=notify)\n"
		"  -v, --verbose      debug logging\n"
		"  -V, --version      print the version\n"
		"  -h, --help         this help\n",
		DEFAULT_CONFIG);
}

/* cJSON frees a half-built tree itself on a syntax error, secrets in it
 * included: every block it frees is wiped first. */
static void cjson_wiping_free(void *p)
{
	if (p)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* libevent's buffers hold tasks as they come off the network, and it
 * frees a chunk once drained, or copies part of one (a chunked answer):
 * every block it frees or moves is wiped first, as for cJSON. */
static void *event_wiping_realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	void *q = n ? malloc(n) : NULL;
	if (n && !q)
		return NULL;
	size_t old = malloc_usable_size(p);
	if (q)
		memcpy(q, p, old < n ? old : n);
	cjson_wiping_free(p);
	return q;
}

/* Secrets pass through this process: no core dumps, no ptrace by others. */
static void harden_process(void)
{
	cJSON_Hooks hooks = { .malloc_fn = malloc, .free_fn = cjson_wiping_free };
	cJSON_InitHooks(&hooks);
	event_set_mem_functions(malloc, event_wiping_realloc, cjson_wiping_free);
	struct rlimit no_core = { 0, 0 };
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &no_core);
}

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

/* The daemon's own processes: the network side and a worker are this
 * program exec'd again by the monitor under another argv[0], with their
 * socket on descriptor 3. Anyone else starting them gets exit 2. */
static int internal_main(int argc, char **argv, bool net)
{
	struct stat st;
	if (fstat(3, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "%s: started only by `kps-agent run`\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (!streq(argv[i], "-v"))
			return 2;
		log_set_debug(true);
	}
	return net ? netside_main() : worker_main();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },	     { "verbose", no_argument, NULL, 'v' },
		{ 0 },
	};
	const char *config_path = NULL;
	int c;
	harden_process();
	log_init("kps-agent");
	const char *self = argc > 0 ? argv[0] : "";
	if (streq(self, "kps-agent-net") || streq(self, "kps-agent-worker"))
		return internal_main(argc, argv, streq(self, "kps-agent-net"));
	while ((c = getopt_long(argc, argv, "+c:Vhv", opts, NULL)) != -1) {
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
	static const char *const cmds[] = { "apply", "check", "submit", "list", "status", "run" };
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
	else if (streq(cmd, "status"))
		r = cli_status(&cfg, argc - optind, argv + optind);
	else if (optind + 1 < argc) {
		fprintf(stderr, "kps-agent: run: unexpected argument %s\n", argv[optind + 1]);
		r = 2;
	} else
		r = daemon_run(&cfg, config_path);
	config_free(&cfg);
	return r;
}
