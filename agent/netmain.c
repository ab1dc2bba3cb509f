/* kps-agent-net: the network side (netside.h), started only by the
 * monitor with its link on descriptor 3. It maps libevent, OpenSSL and
 * libseccomp, not the apply path's libraries. */
#include <sys/stat.h>

#include "harden.h"
#include "log.h"
#include "netside.h"

int main(int argc, char **argv)
{
	struct stat st;
	harden_process();
	harden_events();
	log_init("kps-agent");
	if (fstat(NETSIDE_LINK_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "%s: started only by `kps-agent run`\n", argc > 0 ? argv[0] : "kps-agent-net");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (!streq(argv[i], "-v"))
			return 2;
		log_set_debug(true);
	}
	return netside_main();
}
