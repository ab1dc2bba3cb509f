/* sshd_config text: the managed block, which wins because sshd keeps the
 * first value it reads and the block comes first, and the Port lines, which
 * sshd adds up and which would otherwise listen next to the block's. Lines
 * are byte ranges with their own terminators, so that every line the agent
 * does not mean to touch comes back exactly, NUL bytes and invalid UTF-8
 * included. Tokens are split the way sshd's servconf.c splits them. */
#include <strings.h>

#include "sshdconf.h"

#define BLOCK_EMPTY ((struct sshdconf_block){ .password = -1, .kbdinteractive = -1 })

struct line {
	const char *p;
	size_t len;	/* without the terminator */
	size_t full;	/* with it: "\n", "\r\n" or nothing on the last line */
};

struct token {
	const char *p;
	size_t len;
};

/* Where the managed block sits, as offsets into the text. */
struct span {
	bool found;
	size_t begin;		/* the BEGIN line */
	size_t body;		/* the line after BEGIN */
	size_t end_line;	/* the END line */
	size_t end;		/* past the END line's terminator */
	bool end_terminated;
};

enum port_edit {
	PORT_KEEP,
	PORT_DISABLE,
	PORT_ENABLE,
};

/* One walk over the text that copies it to out, editing Port lines and
 * placing, replacing or removing the block on the way. */
struct pass {
	const char *text;
	size_t len;
	struct span span;
	enum port_edit ports;
	bool rewrite;		/* the block is to be placed, replaced or removed */
	struct buf block;	/* the new block text; empty removes the block */
	struct buf out;
	bool placed;
	bool in_match;
	bool changed;
};

static void pass_done(struct pass *p)
{
	buf_free(&p->block);
	buf_free(&p->out);
}

/* text may be NULL for an empty file (len 0). */
static bool line_next(const char *text, size_t len, size_t *pos, struct line *l)
{
	if (!text || *pos >= len)
		return false;
	const char *p = text + *pos;
	size_t left = len - *pos;
	const char *nl = memchr(p, '\n', left);
	if (!nl) {
		*l = (struct line){ p, left, left };
	} else {
		size_t n = (size_t)(nl - p);
		*l = (struct line){ p, n > 0 && p[n - 1] == '\r' ? n - 1 : n, n + 1 };
	}
	*pos += l->full;
	return true;
}

/* sshd's WHITESPACE, minus the "\n" a line no longer holds. */
static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && is_space(s[i]))
		i++;
	return i;
}

static bool token_is(struct token t, const char *word)
{
	return t.len == strlen(word) && strncasecmp(t.p, word, t.len) == 0;
}

#define KEYWORD_MAX 64

/* One token the way sshd's strdelim() takes it: up to whitespace, '=' or a
 * quote; a quote is dropped and the token runs on to the next quote; one
 * '=' between tokens is skipped. Returns false when sshd would get NULL
 * (an unmatched quote). *end < 0: no more tokens. */
static bool sshd_strdelim(const char *p, size_t len, ssize_t *pos, char *tok, size_t *toklen)
{
	size_t i = (size_t)*pos, j = i, n = 0;
	while (j < len && !is_space(p[j]) && p[j] != '"' && p[j] != '=')
		j++;
	for (size_t k = i; k < j; k++)
		if (n < KEYWORD_MAX)
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
			if (n < KEYWORD_MAX)
				tok[n++] = p[k];
		*toklen = n;
		*pos = (ssize_t)skip_space(p, len, q + 1);
		return true;
	}
	bool equals = p[j] == '=';
	size_t s = skip_space(p, len, j + 1);
	if (!equals && s < len && p[s] == '=')
		s = skip_space(p, len, s + 1);
	*toklen = n;
	*pos = (ssize_t)s;
	return true;
}

/* The keyword as sshd reads it (process_server_config_line: trailing white
 * space stripped, an empty first token skipped once, quotes removed), and
 * in *rest where the arguments start. Empty for comments and blanks. kw
 * holds KEYWORD_MAX bytes; a longer keyword matches nothing. */
static struct token line_keyword(const struct line *l, size_t *rest, char *kw)
{
	size_t len = l->len;
	const char *nul = memchr(l->p, '\0', len);
	if (nul)
		len = (size_t)(nul - l->p);
	while (len > 0 && (is_space(l->p[len - 1]) || l->p[len - 1] == '\f'))
		len--;
	*rest = l->len;
	ssize_t pos = 0;
	size_t n = 0;
	if (len == 0 || !sshd_strdelim(l->p, len, &pos, kw, &n))
		return (struct token){ kw, 0 };
	if (n == 0 && pos >= 0 && !sshd_strdelim(l->p, len, &pos, kw, &n))
		return (struct token){ kw, 0 };
	if (n == 0 || kw[0] == '#' || n >= KEYWORD_MAX)
		return (struct token){ kw, 0 };
	*rest = pos < 0 ? l->len : (size_t)pos;
	return (struct token){ kw, n };
}

static bool line_is_keyword(const struct line *l, const char *word)
{
	size_t rest;
	char kw[KEYWORD_MAX];
	return token_is(line_keyword(l, &rest, kw), word);
}

/* A line sshd may take as a directive; the block must come before it. */
static bool line_is_directive(const struct line *l)
{
	for (size_t i = 0; i < l->len; i++) {
		char c = l->p[i];
		if (!is_space(c) && c != '\f')
			return c != '#';
	}
	return false;
}

static bool line_is_marker(const struct line *l, const char *marker)
{
	size_t a = skip_space(l->p, l->len, 0);
	size_t b = l->len;
	while (b > a && is_space(l->p[b - 1]))
		b--;
	return b - a == strlen(marker) && memcmp(l->p + a, marker, b - a) == 0;
}

static int block_find(const char *text, size_t len, struct span *span)
{
	*span = (struct span){ 0 };
	bool inside = false;
	size_t pos = 0;
	struct line l;

	while (line_next(text, len, &pos, &l)) {
		size_t off = (size_t)(l.p - text);
		if (line_is_marker(&l, SSHDCONF_BEGIN)) {
			if (inside || span->found)
				return -EBADMSG;
			inside = true;
			span->begin = off;
			span->body = pos;
		} else if (line_is_marker(&l, SSHDCONF_END)) {
			if (!inside)
				return -EBADMSG;
			inside = false;
			span->found = true;
			span->end_line = off;
			span->end = pos;
			span->end_terminated = l.full > l.len;
		}
	}
	return inside ? -EBADMSG : 0;
}

/* The one value of a block directive: nothing but whitespace may follow. */
static int line_value(const struct line *l, size_t rest, struct token *v)
{
	size_t i = rest;
	while (i < l->len && !is_space(l->p[i]))
		i++;
	*v = (struct token){ l->p + rest, i - rest };
	if (v->len == 0 || skip_space(l->p, l->len, i) != l->len)
		return -EBADMSG;
	return 0;
}

static int parse_flag(struct token v, int *flag)
{
	/* A second line would leave the block meaning what sshd reads first,
	 * not what the struct says: the agent never writes one. */
	if (*flag != -1)
		return -EBADMSG;
	if (token_is(v, "yes"))
		*flag = 1;
	else if (token_is(v, "no"))
		*flag = 0;
	else
		return -EBADMSG;
	return 0;
}

static bool port_listed(const struct sshdconf_block *b, size_t n, int port)
{
	for (size_t i = 0; i < n; i++)
		if (b->ports[i] == port)
			return true;
	return false;
}

static int parse_port(struct token v, struct sshdconf_block *b)
{
	if (b->n_ports >= SSHDCONF_MAX_PORTS || v.len > 5)
		return -EBADMSG;
	int port = 0;
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -EBADMSG;
		port = port * 10 + (v.p[i] - '0');
	}
	if (port < 1 || port > 65535 || port_listed(b, b->n_ports, port))
		return -EBADMSG;
	b->ports[b->n_ports++] = port;
	return 0;
}

/* Addresses and CIDR blocks, as the agent writes them: nothing sshd would
 * read as more than one token. */
static bool exempt_chars_ok(const char *p, size_t n)
{
	return n > 0 && strspn(p, "0123456789abcdefABCDEF.:/,") >= n;
}

static int parse_exempt(struct token v, struct sshdconf_block *b)
{
	if (b->penalty_exempt[0] || v.len >= sizeof(b->penalty_exempt) || !exempt_chars_ok(v.p, v.len))
		return -EBADMSG;
	memcpy(b->penalty_exempt, v.p, v.len);
	b->penalty_exempt[v.len] = '\0';
	return 0;
}

static int block_parse_line(const struct line *l, struct sshdconf_block *b)
{
	size_t rest;
	char buf[KEYWORD_MAX];
	struct token kw = line_keyword(l, &rest, buf);
	struct token v;
	int r = line_value(l, rest, &v);
	if (r < 0)
		return r;
	if (token_is(kw, "PasswordAuthentication"))
		return parse_flag(v, &b->password);
	if (token_is(kw, "KbdInteractiveAuthentication"))
		return parse_flag(v, &b->kbdinteractive);
	if (token_is(kw, "Port"))
		return parse_port(v, b);
	if (token_is(kw, "PerSourcePenaltyExemptList"))
		return parse_exempt(v, b);
	return -EBADMSG;
}

static int block_parse(const char *text, const struct span *span, struct sshdconf_block *b)
{
	size_t pos = span->body;
	struct line l;

	*b = BLOCK_EMPTY;
	while (line_next(text, span->end_line, &pos, &l)) {
		int r = block_parse_line(&l, b);
		if (r < 0)
			return r;
	}
	return 0;
}

static bool block_is_empty(const struct sshdconf_block *b)
{
	return b->password == -1 && b->kbdinteractive == -1 && b->n_ports == 0 && !b->penalty_exempt[0];
}

static int block_validate(const struct sshdconf_block *b)
{
	size_t n = strnlen(b->penalty_exempt, sizeof(b->penalty_exempt));
	if (n == sizeof(b->penalty_exempt) || (n && !exempt_chars_ok(b->penalty_exempt, n)))
		return -EINVAL;
	if (b->password < -1 || b->password > 1 || b->kbdinteractive < -1 || b->kbdinteractive > 1)
		return -EINVAL;
	if (b->n_ports > SSHDCONF_MAX_PORTS)
		return -EINVAL;
	for (size_t i = 0; i < b->n_ports; i++)
		if (b->ports[i] < 1 || b->ports[i] > 65535 || port_listed(b, i, b->ports[i]))
			return -EINVAL;
	return 0;
}

static int block_format(const struct sshdconf_block *b, struct buf *out)
{
	int r;
	if (block_is_empty(b))
		return 0;
	r = buf_puts(out, SSHDCONF_BEGIN "\n");
	if (r >= 0 && b->password >= 0)
		r = buf_printf(out, "PasswordAuthentication %s\n", b->password ? "yes" : "no");
	if (r >= 0 && b->kbdinteractive >= 0)
		r = buf_printf(out, "KbdInteractiveAuthentication %s\n", b->kbdinteractive ? "yes" : "no");
	for (size_t i = 0; r >= 0 && i < b->n_ports; i++)
		r = buf_printf(out, "Port %d\n", b->ports[i]);
	if (r >= 0 && b->penalty_exempt[0])
		r = buf_printf(out, "PerSourcePenaltyExemptList %s\n", b->penalty_exempt);
	if (r >= 0)
		r = buf_puts(out, SSHDCONF_END "\n");
	return r;
}

static bool line_is_disabled_port(const struct line *l, struct line *orig)
{
	size_t n = strlen(SSHDCONF_DISABLED);
	if (l->len < n || memcmp(l->p, SSHDCONF_DISABLED, n) != 0)
		return false;
	*orig = (struct line){ l->p + n, l->len - n, l->full - n };
	return line_is_keyword(orig, "Port");
}

static int pass_line(struct pass *p, const struct line *l)
{
	struct line orig;

	/* A Match block runs to the end of the file: sshd refuses Port in
	 * one, and what it holds is the administrator's, not ours. */
	if (line_is_keyword(l, "Match"))
		p->in_match = true;
	if (!p->in_match && p->ports == PORT_DISABLE && line_is_keyword(l, "Port")) {
		p->changed = true;
		int r = buf_puts(&p->out, SSHDCONF_DISABLED);
		if (r < 0)
			return r;
		return buf_append(&p->out, l->p, l->full);
	}
	if (!p->in_match && p->ports == PORT_ENABLE && line_is_disabled_port(l, &orig)) {
		p->changed = true;
		return buf_append(&p->out, orig.p, orig.full);
	}
	return buf_append(&p->out, l->p, l->full);
}

/* The existing block, at its own place. */
static int pass_block(struct pass *p)
{
	if (!p->rewrite)
		return buf_append(&p->out, p->text + p->span.begin, p->span.end - p->span.begin);
	p->placed = true;
	if (p->block.len > 0) {
		/* An unterminated END was appended after a text whose last line had
		 * no terminator (pass_append): it stays unterminated so that a
		 * later removal still finds the newline that belongs to it. */
		size_t n = p->block.len - (p->span.end_terminated ? 0 : 1);
		return buf_append(&p->out, p->block.data, n);
	}
	if (!p->span.end_terminated && p->out.len > 0 && p->out.data[p->out.len - 1] == '\n')
		p->out.data[--p->out.len] = '\0';
	return 0;
}

static int pass_insert(struct pass *p, const struct line *l)
{
	if (!p->rewrite || p->placed || p->span.found || !line_is_directive(l))
		return 0;
	p->placed = true;
	return buf_append(&p->out, p->block.data, p->block.len);
}

/* A text of comments and blanks only: the block goes at the end. */
static int pass_append(struct pass *p)
{
	if (!p->rewrite || p->placed || p->block.len == 0)
		return 0;
	p->placed = true;
	if (p->len == 0 || p->text[p->len - 1] == '\n')
		return buf_append(&p->out, p->block.data, p->block.len);
	/* The newline that ends the last line comes with the block, and the
	 * block takes over the missing terminator: removing the block then
	 * gives the text back as it was. */
	int r = buf_puts(&p->out, "\n");
	if (r < 0)
		return r;
	return buf_append(&p->out, p->block.data, p->block.len - 1);
}

static int pass_run(struct pass *p)
{
	size_t pos = 0;
	struct line l;

	while (line_next(p->text, p->len, &pos, &l)) {
		int r;
		if (p->span.found && (size_t)(l.p - p->text) == p->span.begin) {
			r = pass_block(p);
			pos = p->span.end;
		} else {
			r = pass_insert(p, &l);
			if (r >= 0)
				r = pass_line(p, &l);
		}
		if (r < 0)
			return r;
	}
	return pass_append(p);
}

/* buf_steal() leaves a buffer that never grew unterminated: a zero-length
 * append allocates and terminates it first. */
static char *buf_take(struct buf *b, size_t *len)
{
	if (buf_append(b, "", 0) < 0)
		return NULL;
	return buf_steal(b, len);
}

static int pass_steal(struct pass *p, char **ret, size_t *ret_len)
{
	size_t n;
	char *s = buf_take(&p->out, &n);
	if (!s)
		return -ENOMEM;
	*ret = s;
	if (ret_len)
		*ret_len = n;
	return 0;
}

int sshdconf_block_read(const char *text, size_t len, struct sshdconf_block *block)
{
	struct span span;
	struct sshdconf_block b = BLOCK_EMPTY;

	if (!block || (!text && len))
		return -EINVAL;
	int r = block_find(text, len, &span);
	if (r < 0)
		return r;
	if (span.found) {
		r = block_parse(text, &span, &b);
		if (r < 0)
			return r;
	}
	*block = b;
	return 0;
}

int sshdconf_block_write(const char *text, size_t len, const struct sshdconf_block *block, char **ret,
			 size_t *ret_len)
{
	_cleanup_(pass_done) struct pass p = {
		.text = text,
		.len = len,
		.rewrite = true,
	};
	struct sshdconf_block old;

	if (!block || !ret || (!text && len))
		return -EINVAL;
	int r = block_validate(block);
	if (r < 0)
		return r;
	r = block_find(text, len, &p.span);
	if (r < 0)
		return r;
	/* A block someone edited is not ours to overwrite. */
	if (p.span.found) {
		r = block_parse(text, &p.span, &old);
		if (r < 0)
			return r;
	}
	/* The agent's disabled lines exist exactly while the block holds
	 * ports: without them, the file's own Port lines apply again. */
	p.ports = block->n_ports > 0 ? PORT_DISABLE : PORT_ENABLE;
	r = block_format(block, &p.block);
	if (r < 0)
		return r;
	r = pass_run(&p);
	if (r < 0)
		return r;
	return pass_steal(&p, ret, ret_len);
}

int sshdconf_disable_ports(const char *text, size_t len, char **ret, size_t *ret_len, bool *changed)
{
	_cleanup_(pass_done) struct pass p = {
		.text = text,
		.len = len,
		.ports = PORT_DISABLE,
	};

	if (!ret || (!text && len))
		return -EINVAL;
	int r = block_find(text, len, &p.span);
	if (r < 0)
		return r;
	r = pass_run(&p);
	if (r < 0)
		return r;
	if (changed)
		*changed = p.changed;
	return pass_steal(&p, ret, ret_len);
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
	return strv_push_take(out, buf_take(&arg, NULL));
}

/* The arguments after the keyword, split as sshd's argv_split() splits a
 * line: up to a '#' that starts a word. */
static int line_args(const struct line *l, size_t rest, struct strv *out)
{
	const char *s = l->p + rest;
	const char *nul = memchr(s, '\0', l->len - rest);
	size_t n = nul ? (size_t)(nul - s) : l->len - rest;

	/* sshd strips trailing whitespace, form feeds included, first. */
	while (n > 0 && (is_space(s[n - 1]) || s[n - 1] == '\f'))
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
	struct line l;
	strv_free(&d->args);
	while (line_next(text, len, pos, &l)) {
		size_t rest;
		d->line++;
		struct token kw = line_keyword(&l, &rest, d->keyword);
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
