/* kps-agent: `run` is the monitor, here; every other command is
 * kps-agent-tool's (helper.h), exec'd with the same arguments. The monitor
 * thus maps libc, libevent, cJSON and libinih only: not libssh, libcrypto,
 * libsystemd or libselinux, which the tool and the workers need. */
#include <getopt.h>

#include "config.h"
#include "daemon.h"
#include "harden.h"
#include "helper.h"
#include "log.h"
#include "usage.h"
#include "version.h"

/* Everything but `[options] run`: the tool parses and answers, usage
 * errors included. */
static int main_tool(char **argv)
{
	int r = helper_exec(HELPER_TOOL, argv);
	fprintf(stderr, "kps-agent: cannot start %s: %s\n", HELPER_TOOL, strerror(-r));
	return 2;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	bool debug = false;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, USAGE_SHORTOPTS, usage_options, NULL)) != -1) {
		if (c == 'c') {
			config_path = optarg;
		} else if (c == 'v') {
			debug = true;
		} else if (c == 'V') {
			printf("kps-agent %s\n", PACKAGE_VERSION);
			return 0;
		} else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			return main_tool(argv);
		}
	}
	if (optind >= argc || !streq(argv[optind], "run"))
		return main_tool(argv);
	harden_process();
	harden_events();
	log_init("kps-agent");
	log_set_debug(debug);
	if (optind + 1 < argc) {
		fprintf(stderr, "kps-agent: run: unexpected argument %s\n", argv[optind + 1]);
		return 2;
	}
	struct config cfg;
	char err[512] = "";
	if (config_load(config_path ? config_path : DEFAULT_CONFIG, config_path != NULL, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "kps-agent: %s\n", err);
		config_free(&cfg);
		return 2;
	}
	int r = daemon_run(&cfg, config_path);
	config_free(&cfg);
	return r;
}
