/* sshd_config read the way sshd's servconf.c reads it: lines with their
 * own terminators, the keyword as strdelim() takes it, the arguments as
 * argv_split() splits them. sshdconf.c edits on top of this; plan.c and
 * sshd.c walk the directives with sshdconf_next. Pure: no I/O. */
#include <strings.h>

#include "sshdconflex.h"

bool sshdconflex_line_next(const char *text, size_t len, size_t *pos, struct sshdconf_line *l)
{
	if (!text || *pos >= len)
		return false;
	const char *p = text + *pos;
	size_t left = len - *pos;
	const char *nl = memchr(p, '\n', left);
	if (!nl) {
		*l = (struct sshdconf_line){ p, left, left };
	} else {
		size_t n = (size_t)(nl - p);
		*l = (struct sshdconf_line){ p, n > 0 && p[n - 1] == '\r' ? n - 1 : n, n + 1 };
	}
	*pos += l->full;
	return true;
}

bool sshdconflex_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

size_t sshdconflex_skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && sshdconflex_is_space(s[i]))
		i++;
	return i;
}

bool sshdconflex_token_is(struct sshdconf_token t, const char *word)
{
	return t.len == strlen(word) && strncasecmp(t.p, word, t.len) == 0;
}

/* One token the way sshd's strdelim() takes it: up to whitespace, '=' or a
 * quote; a quote is dropped and the token runs on to the next quote; one
 * '=' between tokens is skipped. Returns false when sshd would get NULL
 * (an unmatched quote). *pos < 0: no more tokens. */
static bool sshd_strdelim(const char *p, size_t len, ssize_t *pos, char *tok, size_t *toklen)
{
	size_t i = (size_t)*pos, j = i, n = 0;
	while (j < len && !sshdconflex_is_space(p[j]) && p[j] != '"' && p[j] != '=')
		j++;
	for (size_t k = i; k < j; k++)
		if (n < SSHDCONF_KEYWORD_MAX)
			tok[n++] = p[k];
	if (j == len) {
		*toklen = n;
		*pos = -1;
		return true;
	}
	if (p[j] == '"') {
		size_t q = j + 1;
		while (q < len && p[q] != '"')
			q++;
		if (q == len)
			return false;
		for (size_t k = j + 1; k < q; k++)
			if (n < SSHDCONF_KEYWORD_MAX)
				tok[n++] = p[k];
		*toklen = n;
		*pos = (ssize_t)sshdconflex_skip_space(p, len, q + 1);
		return true;
	}
	bool equals = p[j] == '=';
	size_t s = sshdconflex_skip_space(p, len, j + 1);
	if (!equals && s < len && p[s] == '=')
		s = sshdconflex_skip_space(p, len, s + 1);
	*toklen = n;
	*pos = (ssize_t)s;
	return true;
}

/* The keyword as sshd reads it (process_server_config_line: trailing white
 * space stripped, an empty first token skipped once, quotes removed), and
 * in *rest where the arguments start. Empty for comments and blanks. kw
 * holds SSHDCONF_KEYWORD_MAX bytes; a longer keyword matches nothing. */
struct sshdconf_token sshdconflex_keyword(const struct sshdconf_line *l, size_t *rest, char *kw)
{
	size_t len = l->len;
	const char *nul = memchr(l->p, '\0', len);
	if (nul)
		len = (size_t)(nul - l->p);
	while (len > 0 && (sshdconflex_is_space(l->p[len - 1]) || l->p[len - 1] == '\f'))
		len--;
	*rest = l->len;
	ssize_t pos = 0;
	size_t n = 0;
	if (len == 0 || !sshd_strdelim(l->p, len, &pos, kw, &n))
		return (struct sshdconf_token){ kw, 0 };
	if (n == 0 && pos >= 0 && !sshd_strdelim(l->p, len, &pos, kw, &n))
		return (struct sshdconf_token){ kw, 0 };
	if (n == 0 || kw[0] == '#' || n >= SSHDCONF_KEYWORD_MAX)
		return (struct sshdconf_token){ kw, 0 };
	*rest = pos < 0 ? l->len : (size_t)pos;
	return (struct sshdconf_token){ kw, n };
}

bool sshdconflex_is_keyword(const struct sshdconf_line *l, const char *word)
{
	size_t rest;
	char kw[SSHDCONF_KEYWORD_MAX];
	return sshdconflex_token_is(sshdconflex_keyword(l, &rest, kw), word);
}

/* A line sshd may take as a directive; the block must come before it. */
bool sshdconflex_is_directive(const struct sshdconf_line *l)
{
	for (size_t i = 0; i < l->len; i++) {
		char c = l->p[i];
		if (!sshdconflex_is_space(c) && c != '\f')
			return c != '#';
	}
	return false;
}

/* buf_steal() leaves a buffer that never grew unterminated: a zero-length
 * append allocates and terminates it first. */
char *sshdconflex_buf_take(struct buf *b, size_t *len)
{
	if (buf_append(b, "", 0) < 0)
		return NULL;
	return buf_steal(b, len);
}

/* An argument as sshd's argv_split() makes it: single or double quotes,
 * backslash before a quote, a backslash or (unquoted) a space. */
static int arg_next(const char *s, size_t n, size_t *i, struct strv *out)
{
	_cleanup_buf_ struct buf arg = { 0 };
	char quote = 0;

	for (; *i < n; (*i)++) {
		char c = s[*i];
		char next = (char)(*i + 1 < n ? s[*i + 1] : '\0');
		if (c == '\\' && (next == '\'' || next == '"' || next == '\\' || (!quote && next == ' ')))
			c = s[++*i];
		else if (!quote && (c == ' ' || c == '\t'))
			break;
		else if (!quote && (c == '"' || c == '\'')) {
			quote = c;
			continue;
		} else if (quote && c == quote) {
			quote = 0;
			continue;
		}
		int r = buf_append(&arg, &c, 1);
		if (r < 0)
			return r;
	}
	if (quote)
		return -EBADMSG;
	return strv_push_take(out, sshdconflex_buf_take(&arg, NULL));
}

/* The arguments after the keyword, split as sshd's argv_split() splits a
 * line: up to a '#' that starts a word. */
static int line_args(const struct sshdconf_line *l, size_t rest, struct strv *out)
{
	const char *s = l->p + rest;
	const char *nul = memchr(s, '\0', l->len - rest);
	size_t n = nul ? (size_t)(nul - s) : l->len - rest;

	/* sshd strips trailing whitespace, form feeds included, first. */
	while (n > 0 && (sshdconflex_is_space(s[n - 1]) || s[n - 1] == '\f'))
		n--;
	for (size_t i = 0;;) {
		while (i < n && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i >= n || s[i] == '#')
			return 0;
		int r = arg_next(s, n, &i, out);
		if (r < 0)
			return r;
	}
}

int sshdconf_next(const char *text, size_t len, size_t *pos, struct sshdconf_directive *d)
{
	struct sshdconf_line l;
	strv_free(&d->args);
	while (sshdconflex_line_next(text, len, pos, &l)) {
		size_t rest;
		d->line++;
		struct sshdconf_token kw = sshdconflex_keyword(&l, &rest, d->keyword);
		if (kw.len == 0)
			continue;
		d->keyword[kw.len] = '\0';
		int r = line_args(&l, rest, &d->args);
		return r < 0 ? r : 1;
	}
	return 0;
}

/* Moves every string of add to the end of out, or none of them. */
static int strv_extend_take(struct strv *out, struct strv *add)
{
	if (add->n == 0)
		return 0;
	char **v = realloc(out->v, (out->n + add->n + 1) * sizeof(char *));
	if (!v)
		return -ENOMEM;
	memcpy(v + out->n, add->v, add->n * sizeof(char *));
	out->v = v;
	out->n += add->n;
	v[out->n] = NULL;
	free(add->v);
	*add = (struct strv){ 0 };
	return 0;
}

int sshdconf_includes(const char *text, size_t len, struct strv *out)
{
	_cleanup_strv_ struct strv found = { 0 };
	struct sshdconf_directive d = { 0 };
	size_t pos = 0;
	int r;

	if (!out || (!text && len))
		return -EINVAL;
	while ((r = sshdconf_next(text, len, &pos, &d)) > 0) {
		if (strcasecmp(d.keyword, "Include") != 0)
			continue;
		/* sshd refuses an Include without a file. */
		int e = d.args.n ? 0 : -EBADMSG;
		for (size_t i = 0; e == 0 && i < d.args.n; i++)
			e = strv_push(&found, d.args.v[i]);
		if (e < 0) {
			r = e;
			break;
		}
	}
	strv_free(&d.args);
	return r < 0 ? r : strv_extend_take(out, &found);
}
