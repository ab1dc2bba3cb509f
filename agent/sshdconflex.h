/* sshd_config lines and tokens as sshd reads them (sshdconflex.c); the
 * directive walk built on them, sshdconf_next and sshdconf_includes, is
 * declared in sshdconf.h. Only sshdconf*.c include this header. */
#pragma once

#include "sshdconf.h"

/* A line as a byte range of the text, NUL bytes and all. */
struct sshdconf_line {
	const char *p;
	size_t len;	/* without the terminator */
	size_t full;	/* with it: "\n", "\r\n" or nothing on the last line */
};

struct sshdconf_token {
	const char *p;
	size_t len;
};

/* The line at *pos, and *pos past it; false at the end. text may be NULL
 * for an empty file (len 0). */
bool sshdconflex_line_next(const char *text, size_t len, size_t *pos, struct sshdconf_line *l);
/* sshd's WHITESPACE, minus the "\n" a line no longer holds. */
bool sshdconflex_is_space(char c);
size_t sshdconflex_skip_space(const char *s, size_t len, size_t i);
/* Case-insensitive, as sshd compares keywords and yes/no. */
bool sshdconflex_token_is(struct sshdconf_token t, const char *word);
/* The keyword as sshd reads it, in kw (SSHDCONF_KEYWORD_MAX bytes), and in
 * *rest where the arguments start. Empty for comments and blanks. */
struct sshdconf_token sshdconflex_keyword(const struct sshdconf_line *l, size_t *rest, char *kw);
bool sshdconflex_is_keyword(const struct sshdconf_line *l, const char *word);
/* A line sshd may take as a directive: neither blank nor a comment. */
bool sshdconflex_is_directive(const struct sshdconf_line *l);
/* buf_steal for a buffer that may never have grown: always terminated. */
char *sshdconflex_buf_take(struct buf *b, size_t *len);
