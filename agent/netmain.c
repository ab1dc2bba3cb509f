/* kps-agent-net: the network side (netside.h), started only by the
 * monitor with its link on descriptor 3. It maps libevent, OpenSSL and
 * libseccomp, not the apply path's libraries. */
#include "harden.h"
#include "helper.h"
#include "log.h"
#include "netside.h"

int main(int argc, char **argv)
{
	harden_process();
	harden_events();
	log_init("kps-agent");
	int r = helper_role(argc, argv, NETSIDE_LINK_FD);
	return r ? r : netside_main();
}
