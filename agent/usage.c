/* kps-agent --help (usage.h): the monitor and the tool both print it. */
#include "usage.h"
#include "version.h"

const struct option usage_options[] = {
	{ "config", required_argument, NULL, 'c' }, { "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },	     { "verbose", no_argument, NULL, 'v' },
	{ 0 },
};

void usage(FILE *out)
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
