/* sshd's Match criteria, judged for every client at once: can a Match
 * block apply to a user from some client address, host, local address, local
 * port or routing domain? The probe only sees loopback; this is what keeps a
 * promise for the others. Pure: no I/O. */
#pragma once

#include "util.h"

struct sshdmatch_user {
	const char *name;
	const struct strv *groups;	/* primary and supplementary group names */
	const int *ports;		/* the ports sshd listens on afterwards */
	size_t n_ports;
};

/* sshd's match_pattern(): '*' and '?' wildcards, case-sensitive. */
bool sshdmatch_pattern(const char *s, const char *pattern);

/* sshd's match_pattern_list(): 1 when s matches a pattern of the
 * comma-separated list and no negated one ("!pat"), -1 when a negated one
 * matches, 0 otherwise. */
int sshdmatch_pattern_list(const char *s, const char *list);

/* Whether some string can match the list: a positive pattern that no
 * negated pattern covers entirely. Errs on the side of yes. */
bool sshdmatch_list_satisfiable(const char *list);

/* The criteria of a Match line (its arguments): 1 when the block can apply
 * to the user for some client, 0 when it cannot, -EBADMSG when the line
 * is not one sshd takes. Criteria the agent cannot judge count as
 * applying. */
int sshdmatch_can_apply(const struct strv *criteria, const struct sshdmatch_user *u);
