/* Process hardening shared by the monitor, the network side and the tool
 * (harden.h). */
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "harden.h"
#include "util.h"

/* cJSON frees a half-built tree itself on a syntax error, secrets in it
 * included: every block it frees is wiped first. */
void harden_wiping_free(void *p)
{
	if (p)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void harden_process(void)
{
	cJSON_Hooks hooks = { .malloc_fn = malloc, .free_fn = harden_wiping_free };
	cJSON_InitHooks(&hooks);
	struct rlimit no_core = { 0, 0 };
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	setrlimit(RLIMIT_CORE, &no_core);
}
