/* OpenSSH 9.8+ PerSourcePenalties, as `sshd -T` reports them: does sshd
 * penalise the address the agent's proofs and probes come from? Pure. */
#pragma once

#include <stdbool.h>

/* True when penalties are off ("no", or an sshd that has none: NULL), or
 * when address is in exempt_list (PerSourcePenaltyExemptList: a comma-
 * separated list of addresses and CIDR blocks, as sshd's addr_match_cidr_list
 * reads it; NULL or "none": empty). An address that does not parse is
 * never exempt. */
bool sshdpenalty_exempt(const char *penalties, const char *exempt_list, const char *address);

/* The PerSourcePenaltyExemptList that spares address, built on base (the
 * managed block's list, else the effective one; NULL or "none": empty):
 * 0 when effective already spares it (out untouched), 1 with the list in
 * out, -ENOSPC when it does not fit. An IPv4 address is spared in its
 * IPv4-mapped IPv6 form too: on a dual-stack socket (ssh.socket's
 * ListenStream=22 is [::]:22) sshd sees a client of 127.0.0.1 as
 * ::ffff:127.0.0.1, which an entry "127.0.0.1" does not match. */
int sshdpenalty_exempt_add(const char *penalties, const char *effective, const char *base, const char *address,
			   char *out, size_t outlen);
