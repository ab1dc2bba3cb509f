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
