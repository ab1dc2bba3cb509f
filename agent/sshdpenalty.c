/* PerSourcePenalties (OpenSSH 9.8+): sshd refuses, for a while, an address
 * whose connections end without a login, and every proof the agent refuses
 * and every probe it makes ends that way. This tells whether the agent's
 * address is spared; sshd_config's PerSourcePenaltyExemptList decides. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sshdpenalty.h"

struct sshdpenalty_addr {
	int family;
	unsigned char bytes[16];
	size_t len;
};

static bool sshdpenalty_parse_addr(const char *s, struct sshdpenalty_addr *a)
{
	if (inet_pton(AF_INET, s, a->bytes) == 1) {
		a->family = AF_INET;
		a->len = 4;
		return true;
	}
	if (inet_pton(AF_INET6, s, a->bytes) == 1) {
		a->family = AF_INET6;
		a->len = 16;
		return true;
	}
	return false;
}

/* One entry, "ADDR" or "ADDR/BITS"; false for anything malformed, as sshd
 * would refuse it at startup anyway. */
static bool sshdpenalty_entry_matches(const char *entry, const struct sshdpenalty_addr *want)
{
	char buf[64];
	size_t len = strlen(entry);
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, entry, len + 1);
	char *slash = strchr(buf, '/');
	long bits = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end)
			return false;
	}
	struct sshdpenalty_addr net;
	if (!sshdpenalty_parse_addr(buf, &net) || net.family != want->family)
		return false;
	if (bits < 0)
		bits = (long)net.len * 8;
	if (bits > (long)net.len * 8)
		return false;
	size_t whole = (size_t)bits / 8;
	if (memcmp(net.bytes, want->bytes, whole) != 0)
		return false;
	unsigned rest = (unsigned)bits % 8;
	if (!rest)
		return true;
	unsigned char mask = (unsigned char)(0xffU << (8 - rest));
	return (net.bytes[whole] & mask) == (want->bytes[whole] & mask);
}

bool sshdpenalty_exempt(const char *penalties, const char *exempt_list, const char *address)
{
	if (!penalties || strcasecmp(penalties, "no") == 0)
		return true;
	struct sshdpenalty_addr want;
	if (!address || !sshdpenalty_parse_addr(address, &want))
		return false;
	if (!exempt_list || strcasecmp(exempt_list, "none") == 0)
		return false;
	const char *p = exempt_list;
	while (*p) {
		size_t n = strcspn(p, ",");
		char entry[64];
		if (n < sizeof(entry)) {
			memcpy(entry, p, n);
			entry[n] = '\0';
			if (sshdpenalty_entry_matches(entry, &want))
				return true;
		}
		p += n + (p[n] == ',');
	}
	return false;
}

/* Appends ",item" (or "item" to an empty list); -ENOSPC when it does not fit. */
static int list_add(char *out, size_t outlen, const char *item)
{
	size_t len = strlen(out);
	int n = snprintf(out + len, outlen - len, "%s%s", len ? "," : "", item);
	return n < 0 || (size_t)n >= outlen - len ? -ENOSPC : 0;
}

int sshdpenalty_exempt_add(const char *penalties, const char *effective, const char *base, const char *address,
			   char *out, size_t outlen)
{
	struct in_addr a4;
	char mapped[64] = "";
	if (address && inet_pton(AF_INET, address, &a4) == 1)
		snprintf(mapped, sizeof(mapped), "::ffff:%s", address);
	bool plain = sshdpenalty_exempt(penalties, effective, address);
	bool as_mapped = !mapped[0] || sshdpenalty_exempt(penalties, effective, mapped);
	if (plain && as_mapped)
		return 0;
	if (!base || strcasecmp(base, "none") == 0)
		base = "";
	if (snprintf(out, outlen, "%s", base) >= (int)outlen)
		return -ENOSPC;
	if (!plain && !sshdpenalty_exempt("yes", base, address) && list_add(out, outlen, address) < 0)
		return -ENOSPC;
	if (!as_mapped && !sshdpenalty_exempt("yes", base, mapped) && list_add(out, outlen, mapped) < 0)
		return -ENOSPC;
	return 1;
}
