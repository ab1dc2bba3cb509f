/* libevent's allocator, wiping (harden.h). */
#include <malloc.h>

#include <event2/event.h>

#include "harden.h"
#include "util.h"


/* libevent's buffers hold tasks as they come off the network, and it
 * frees a chunk once drained, or copies part of one (a chunked answer):
 * every block it frees or moves is wiped first, as for cJSON. */
static void *evmem_wiping_realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	void *q = n ? malloc(n) : NULL;
	if (n && !q)
		return NULL;
	size_t old = malloc_usable_size(p);
	if (q)
		memcpy(q, p, old < n ? old : n);
	harden_wiping_free(p);
	return q;
}

void harden_events(void)
{
	event_set_mem_functions(malloc, evmem_wiping_realloc, harden_wiping_free);
}
