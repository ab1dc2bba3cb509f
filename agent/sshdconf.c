/* sshd_config text: the managed block, which wins because sshd keeps the
 * first value it reads and the block comes first, and the Port lines, which
 * sshd adds up and which would otherwise listen next to the block's. Lines
 * are byte ranges with their own terminators, so that every line the agent
 * does not mean to touch comes back exactly, NUL bytes and invalid UTF-8
 * included. Lines and tokens are read as sshd reads them (sshdconflex.c). */
#include <strings.h>

#include "sshdconf.h"
#include "sshdconflex.h"

#define BLOCK_EMPTY ((struct sshdconf_block){ .password = -1, .kbdinteractive = -1 })

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

static bool line_is_marker(const struct sshdconf_line *l, const char *marker)
{
	size_t a = sshdconflex_skip_space(l->p, l->len, 0);
	size_t b = l->len;
	while (b > a && sshdconflex_is_space(l->p[b - 1]))
		b--;
	return b - a == strlen(marker) && memcmp(l->p + a, marker, b - a) == 0;
}

static int block_find(const char *text, size_t len, struct span *span)
{
	*span = (struct span){ 0 };
	bool inside = false;
	size_t pos = 0;
	struct sshdconf_line l;

	while (sshdconflex_line_next(text, len, &pos, &l)) {
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
static int line_value(const struct sshdconf_line *l, size_t rest, struct sshdconf_token *v)
{
	size_t i = rest;
	while (i < l->len && !sshdconflex_is_space(l->p[i]))
		i++;
	*v = (struct sshdconf_token){ l->p + rest, i - rest };
	if (v->len == 0 || sshdconflex_skip_space(l->p, l->len, i) != l->len)
		return -EBADMSG;
	return 0;
}

static int parse_flag(struct sshdconf_token v, int *flag)
{
	/* A second line would leave the block meaning what sshd reads first,
	 * not what the struct says: the agent never writes one. */
	if (*flag != -1)
		return -EBADMSG;
	if (sshdconflex_token_is(v, "yes"))
		*flag = 1;
	else if (sshdconflex_token_is(v, "no"))
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

static int parse_port(struct sshdconf_token v, struct sshdconf_block *b)
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

static int parse_exempt(struct sshdconf_token v, struct sshdconf_block *b)
{
	if (b->penalty_exempt[0] || v.len >= sizeof(b->penalty_exempt) || !exempt_chars_ok(v.p, v.len))
		return -EBADMSG;
	memcpy(b->penalty_exempt, v.p, v.len);
	b->penalty_exempt[v.len] = '\0';
	return 0;
}

static int block_parse_line(const struct sshdconf_line *l, struct sshdconf_block *b)
{
	size_t rest;
	char buf[SSHDCONF_KEYWORD_MAX];
	struct sshdconf_token kw = sshdconflex_keyword(l, &rest, buf);
	struct sshdconf_token v;
	int r = line_value(l, rest, &v);
	if (r < 0)
		return r;
	if (sshdconflex_token_is(kw, "PasswordAuthentication"))
		return parse_flag(v, &b->password);
	if (sshdconflex_token_is(kw, "KbdInteractiveAuthentication"))
		return parse_flag(v, &b->kbdinteractive);
	if (sshdconflex_token_is(kw, "Port"))
		return parse_port(v, b);
	if (sshdconflex_token_is(kw, "PerSourcePenaltyExemptList"))
		return parse_exempt(v, b);
	return -EBADMSG;
}

static int block_parse(const char *text, const struct span *span, struct sshdconf_block *b)
{
	size_t pos = span->body;
	struct sshdconf_line l;

	*b = BLOCK_EMPTY;
	while (sshdconflex_line_next(text, span->end_line, &pos, &l)) {
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

static bool line_is_disabled_port(const struct sshdconf_line *l, struct sshdconf_line *orig)
{
	size_t n = strlen(SSHDCONF_DISABLED);
	if (l->len < n || memcmp(l->p, SSHDCONF_DISABLED, n) != 0)
		return false;
	*orig = (struct sshdconf_line){ l->p + n, l->len - n, l->full - n };
	return sshdconflex_is_keyword(orig, "Port");
}

static int pass_line(struct pass *p, const struct sshdconf_line *l)
{
	struct sshdconf_line orig;

	/* A Match block runs to the end of the file: sshd refuses Port in
	 * one, and what it holds is the administrator's, not ours. */
	if (sshdconflex_is_keyword(l, "Match"))
		p->in_match = true;
	if (!p->in_match && p->ports == PORT_DISABLE && sshdconflex_is_keyword(l, "Port")) {
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

static int pass_insert(struct pass *p, const struct sshdconf_line *l)
{
	if (!p->rewrite || p->placed || p->span.found || !sshdconflex_is_directive(l))
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
	struct sshdconf_line l;

	while (sshdconflex_line_next(p->text, p->len, &pos, &l)) {
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

static int pass_steal(struct pass *p, char **ret, size_t *ret_len)
{
	size_t n;
	char *s = sshdconflex_buf_take(&p->out, &n);
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

