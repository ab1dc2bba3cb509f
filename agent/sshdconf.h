/* sshd_config text: the agent's managed block and the Port lines. Pure: no
 * file I/O. Comments, indentation and every line the agent does not mean to
 * change come back byte for byte. */
#pragma once

#include "util.h"

#define SSHDCONF_BEGIN "# kps-agent: begin (managed by kps-agent, do not edit)"
#define SSHDCONF_END "# kps-agent: end"
#define SSHDCONF_DISABLED "# kps-agent: disabled: "
#define SSHDCONF_MAX_PORTS 16
#define SSHDCONF_EXEMPT_MAX 512

/* What the managed block holds. sshd takes the first value it reads, and the
 * block stands before the first directive of the main file, so its values
 * win over everything after it, Include'd drop-ins among them. */
struct sshdconf_block {
	int password;		/* PasswordAuthentication: -1 absent, 0 no, 1 yes */
	int kbdinteractive;	/* KbdInteractiveAuthentication: -1 absent, 0 no, 1 yes */
	int ports[SSHDCONF_MAX_PORTS];	/* Port lines, in order */
	size_t n_ports;		/* 0: no Port line in the block */
	/* PerSourcePenaltyExemptList (OpenSSH 9.8+): the admin's list with the
	 * agent's own address added; "" absent. Addresses, CIDR blocks, commas. */
	char penalty_exempt[SSHDCONF_EXEMPT_MAX];
};

/* Reads the managed block of a main sshd_config. A text without one gives
 * an empty block (-1, -1, 0 ports). -EBADMSG when a block is damaged
 * (begin without end, a directive the agent does not write). */
int sshdconf_block_read(const char *text, size_t len, struct sshdconf_block *block);

/* Writes the block into a main sshd_config: replaces the existing one, or
 * inserts it before the first line that is not a comment or blank. An empty
 * block removes it. When block->n_ports > 0, every Port line outside the
 * block is disabled as well (see sshdconf_disable_ports); when it is 0, the
 * Port lines the agent disabled in this text are enabled again. */
int sshdconf_block_write(const char *text, size_t len, const struct sshdconf_block *block, char **ret,
			 size_t *ret_len);

/* Disables every active Port line outside the managed block by prefixing it
 * with SSHDCONF_DISABLED; for Include'd files. *changed tells whether any
 * line was disabled. */
int sshdconf_disable_ports(const char *text, size_t len, char **ret, size_t *ret_len, bool *changed);

#define SSHDCONF_KEYWORD_MAX 64

/* One directive as sshd reads it: the keyword (as written), and its
 * arguments split the way sshd splits them (quotes, backslashes, a '#'
 * word ends the line). */
struct sshdconf_directive {
	unsigned line;		/* 1-based */
	char keyword[SSHDCONF_KEYWORD_MAX];
	struct strv args;
};

/* The next directive from *pos on (start with *pos = 0 and d zeroed); 1
 * with d filled, 0 at the end, -EBADMSG on an unmatched quote. The caller
 * frees d->args (strv_free) when done. */
int sshdconf_next(const char *text, size_t len, size_t *pos, struct sshdconf_directive *d);

/* The Include directives' arguments, in order, as written (globs,
 * relative or absolute), appended to out. */
int sshdconf_includes(const char *text, size_t len, struct strv *out);
