/* libFuzzer target for sshdconf.c. The input is an sshd_config text and,
 * after its last NUL byte, the block to write (an input without NUL is all
 * text, written with a default block). Properties: reading and writing
 * agree on which texts they take; a written block reads back; writing then
 * removing gives back what removing alone gives, which is the input itself
 * when it had no block and no disabled Port line; nothing from the first
 * Match line on changes; the Port edits touch Port lines only, only by the
 * prefix, and leave no line that sshd would still read as Port before
 * Match; Include listing gives every Include line an argument, or fails
 * and appends nothing. */
#include <strings.h>

#include "sshdconf.h"
#include "fuzz.h"

#define BLOCK_EMPTY ((struct sshdconf_block){ .password = -1, .kbdinteractive = -1 })

struct spec {
	struct sshdconf_block block;
	bool valid;	/* what block_validate should say */
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The keyword test sshdconf.c documents: the first token, case aside,
 * ended by whitespace, '=', '"', NUL or the end of the line. */
static bool keyword_is(const struct fuzz_line *l, const char *word)
{
	size_t len = fuzz_line_body(l), i = 0, n = strlen(word);
	while (i < len && is_ws(l->p[i]))
		i++;
	if (len - i < n || strncasecmp(l->p + i, word, n) != 0)
		return false;
	i += n;
	return i == len || is_ws(l->p[i]) || l->p[i] == '=' || l->p[i] == '"' || l->p[i] == '\0';
}

/* sshd's strdelim() (misc.c) with '=' as a separator: a token that may be
 * quoted; *s moves past it, its whitespace and one '='. NULL for a quote
 * that is never closed. */
static char *sshd_strdelim(char **s)
{
	static const char ws[] = " \t\r\n";
	char *old = *s;
	if (!old)
		return NULL;
	char *p = strpbrk(old, " \t\r\n\"=");
	if (!p) {
		*s = NULL;
		return old;
	}
	if (*p == '"') {
		memmove(p, p + 1, strlen(p));
		p = strchr(p, '"');
		*s = NULL;
		if (!p)
			return NULL;
		*p = '\0';
		*s = p + 1 + strspn(p + 1, ws);
		return old;
	}
	bool equals = *p == '=';
	*p = '\0';
	p += 1 + strspn(p + 1, ws);
	if (*p == '=' && !equals)
		p += 1 + strspn(p + 1, ws);
	*s = p;
	return old;
}

/* Whether sshd 9 reads the line as the directive word with an argument:
 * load_server_config() drops leading " \t\r", then
 * process_server_config_line() strips trailing whitespace and form feeds
 * and takes the keyword with strdelim(), twice when the first is empty. */
static bool sshd_keyword(const struct fuzz_line *l, const char *word, bool need_arg)
{
	size_t len = fuzz_line_body(l);
	_cleanup_(fuzz_freep) char *line = strndup(l->p, len);
	fuzz_oom(line);
	char *cp = line + strspn(line, " \t\r");
	size_t n = strlen(cp);
	if (n == 0)
		return false;
	for (n--; n > 0 && strchr(" \t\r\n\f", cp[n]); n--)
		cp[n] = '\0';
	char *str = cp;
	char *kw = sshd_strdelim(&str);
	if (kw && *kw == '\0')
		kw = sshd_strdelim(&str);
	return kw && *kw && *kw != '#' && (!need_arg || (str && *str)) && strcasecmp(kw, word) == 0;
}

static bool sshd_keyword_is(const struct fuzz_line *l, const char *word)
{
	return sshd_keyword(l, word, true);
}

/* Match with or without criteria: sshd refuses a bare "Match" (sshd -t
 * catches it), and the editor leaves everything after it alone. */
static bool is_match_line(const struct fuzz_line *l)
{
	return sshd_keyword(l, "Match", false);
}

/* A Port line as the editor must see it: as sshd reads it, with or
 * without its argument (sshd -t refuses a bare "Port"; commenting it out
 * is no harm). */
static bool is_port_line(const struct fuzz_line *l)
{
	return keyword_is(l, "Port") || sshd_keyword(l, "Port", false);
}

static bool is_marker(const struct fuzz_line *l, const char *marker)
{
	size_t a = 0, b = fuzz_line_body(l);
	while (a < b && is_ws(l->p[a]))
		a++;
	while (b > a && is_ws(l->p[b - 1]))
		b--;
	return fuzz_mem_eq(l->p + a, b - a, marker, strlen(marker));
}

/* Tracks whether a walk over the lines is inside the managed block;
 * true for the BEGIN and END lines themselves. */
static bool in_block(const struct fuzz_line *l, bool *inside)
{
	if (is_marker(l, SSHDCONF_BEGIN))
		*inside = true;
	bool was = *inside;
	if (is_marker(l, SSHDCONF_END))
		*inside = false;
	return was || is_marker(l, SSHDCONF_END);
}

static struct spec spec_decode(const uint8_t *p, size_t n)
{
	struct spec s = { .block = BLOCK_EMPTY, .valid = true };
	s.block.password = n > 0 ? p[0] % 3 - 1 : 0;
	s.block.kbdinteractive = n > 0 ? p[0] / 3 % 3 - 1 : 0;
	size_t want = n > 1 ? p[1] % (SSHDCONF_MAX_PORTS + 2) : 1;
	s.block.n_ports = want;
	if (want > SSHDCONF_MAX_PORTS) {
		s.valid = false;
		want = SSHDCONF_MAX_PORTS;
	}
	for (size_t i = 0; i < want; i++) {
		size_t at = 2 + 2 * i;
		int port = at + 1 < n ? p[at] << 8 | p[at + 1] : 2222 + (int)i;
		s.block.ports[i] = port;
		if (port < 1 || port > 65535)
			s.valid = false;
		for (size_t j = 0; j < i; j++)
			if (s.block.ports[j] == port)
				s.valid = false;
	}
	return s;
}

static bool blocks_equal(const struct sshdconf_block *a, const struct sshdconf_block *b)
{
	if (a->password != b->password || a->kbdinteractive != b->kbdinteractive ||
	    a->n_ports != b->n_ports || strcmp(a->penalty_exempt, b->penalty_exempt) != 0)
		return false;
	for (size_t i = 0; i < a->n_ports; i++)
		if (a->ports[i] != b->ports[i])
			return false;
	return true;
}

static bool block_is_empty(const struct sshdconf_block *b)
{
	return b->password == -1 && b->kbdinteractive == -1 && b->n_ports == 0 && !b->penalty_exempt[0];
}

static void check_block_sane(const struct sshdconf_block *b)
{
	fuzz_check(b->password >= -1 && b->password <= 1 && b->kbdinteractive >= -1 &&
			   b->kbdinteractive <= 1 && b->n_ports <= SSHDCONF_MAX_PORTS,
		   "a block read holds only values the agent writes");
	for (size_t i = 0; i < b->n_ports; i++) {
		fuzz_check(b->ports[i] >= 1 && b->ports[i] <= 65535, "block ports are 1..65535");
		for (size_t j = 0; j < i; j++)
			fuzz_check(b->ports[j] != b->ports[i], "block ports are distinct");
	}
}

/* The lines from the first Match line on, without the block's lines. */
static struct fuzz_lines match_tail(const char *text, size_t len)
{
	struct fuzz_lines all = fuzz_lines_split(text, len), tail = { 0 };
	bool inside = false, matched = false;
	tail.v = calloc(all.n + 1, sizeof(*tail.v));
	fuzz_oom(tail.v);
	for (size_t i = 0; i < all.n; i++) {
		if (in_block(&all.v[i], &inside))
			continue;
		matched = matched || is_match_line(&all.v[i]);
		if (matched)
			tail.v[tail.n++] = all.v[i];
	}
	fuzz_lines_free(&all);
	return tail;
}

/* The last line's terminator may go or come with a block after it. */
static void check_match_tail(const char *a, size_t a_len, const char *b, size_t b_len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines ta = match_tail(a, a_len);
	_cleanup_(fuzz_lines_free) struct fuzz_lines tb = match_tail(b, b_len);
	fuzz_check(ta.n == tb.n, "no line comes or goes from the first Match line on");
	for (size_t i = 0; i < ta.n; i++) {
		bool last = i + 1 == ta.n;
		size_t na = last ? fuzz_line_body(&ta.v[i]) : ta.v[i].len;
		size_t nb = last ? fuzz_line_body(&tb.v[i]) : tb.v[i].len;
		fuzz_check(fuzz_mem_eq(ta.v[i].p, na, tb.v[i].p, nb),
			   "no line changes from the first Match line on");
	}
}

/* Every line sshd reads as Port, outside the block and before any Match
 * (as sshd or as sshdconf.c sees one), is disabled. sshd joins a line
 * holding a NUL to the next one; such texts are left out. */
static void check_no_live_port(const char *text, size_t len)
{
	if (memchr(text, '\0', len))
		return;
	_cleanup_(fuzz_lines_free) struct fuzz_lines l = fuzz_lines_split(text, len);
	bool inside = false;
	for (size_t i = 0; i < l.n; i++) {
		if (in_block(&l.v[i], &inside))
			continue;
		if (is_match_line(&l.v[i]))
			return;
		fuzz_check(!sshd_keyword(&l.v[i], "Port", false),
			   "no line that sshd reads as Port is left before Match outside the block");
	}
}

/* a to b line by line: each line the same, or a Port line outside the
 * block and before Match with SSHDCONF_DISABLED put in front. */
static size_t check_only_disabled(const char *a, size_t a_len, const char *b, size_t b_len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines la = fuzz_lines_split(a, a_len);
	_cleanup_(fuzz_lines_free) struct fuzz_lines lb = fuzz_lines_split(b, b_len);
	size_t plen = strlen(SSHDCONF_DISABLED), changed = 0;
	bool inside = false, matched = false;
	fuzz_check(la.n == lb.n, "disabling ports keeps the number of lines");
	for (size_t i = 0; i < la.n; i++) {
		const struct fuzz_line *x = &la.v[i], *y = &lb.v[i];
		bool blk = in_block(x, &inside);
		matched = matched || (!blk && is_match_line(x));
		if (fuzz_mem_eq(x->p, x->len, y->p, y->len))
			continue;
		changed++;
		fuzz_check(!blk && !matched && is_port_line(x),
			   "only Port lines outside the block and before Match are disabled");
		fuzz_check(y->len == plen + x->len && memcmp(y->p, SSHDCONF_DISABLED, plen) == 0 &&
				   memcmp(y->p + plen, x->p, x->len) == 0,
			   "a Port line is disabled only by the prefix");
	}
	return changed;
}

static void check_disable_ports(const char *text, size_t len, bool readable)
{
	_cleanup_(fuzz_freep) char *out = NULL;
	_cleanup_(fuzz_freep) char *again = NULL;
	size_t out_len = 0, again_len = 0;
	bool changed = false, changed_again = true;
	int r = sshdconf_disable_ports(text, len, &out, &out_len, &changed);
	fuzz_check(r == 0 || r == -EBADMSG, "disable_ports returns 0 or -EBADMSG");
	fuzz_check(r == 0 || !readable, "disable_ports takes every text block_read takes");
	if (r < 0)
		return;
	fuzz_check(out && out[out_len] == '\0', "disable_ports output is terminated");
	size_t n = check_only_disabled(text, len, out, out_len);
	fuzz_check(changed == (n > 0), "disable_ports says whether it changed a line");
	check_match_tail(text, len, out, out_len);
	check_no_live_port(out, out_len);
	fuzz_check(sshdconf_disable_ports(out, out_len, &again, &again_len, &changed_again) == 0 &&
			   !changed_again && fuzz_mem_eq(out, out_len, again, again_len),
		   "disable_ports a second time changes nothing");
}

static void check_includes(const char *text, size_t len)
{
	_cleanup_strv_ struct strv out = { 0 };
	_cleanup_(fuzz_lines_free) struct fuzz_lines l = fuzz_lines_split(text, len);
	size_t lines = 0;
	for (size_t i = 0; i < l.n; i++)
		lines += sshd_keyword_is(&l.v[i], "Include");
	fuzz_check(strv_push(&out, "before") == 0, "out of memory");
	int r = sshdconf_includes(text, len, &out);
	fuzz_check(r == 0 || r == -EBADMSG, "includes returns 0 or -EBADMSG");
	fuzz_check(r == 0 || (out.n == 1 && streq(out.v[0], "before")),
		   "includes appends nothing when it fails");
	fuzz_check(out.v[out.n] == NULL, "includes keeps the vector NULL-terminated");
	fuzz_check(r < 0 || out.n - 1 >= lines, "every Include line gives at least one argument");
	fuzz_check(r < 0 || lines > 0 || out.n == 1, "no Include line, no argument");
	for (size_t i = 1; i < out.n; i++)
		fuzz_check(out.v[i] != NULL, "include arguments are strings");
}

/* Without a block, removing it changes only the Port lines the agent
 * disabled: they are enabled again. */
static void check_remove_without_block(const char *text, size_t len, const char *out,
				       size_t out_len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines la = fuzz_lines_split(text, len);
	_cleanup_(fuzz_lines_free) struct fuzz_lines lb = fuzz_lines_split(out, out_len);
	size_t plen = strlen(SSHDCONF_DISABLED);
	bool matched = false;
	fuzz_check(la.n == lb.n, "removing no block keeps the number of lines");
	for (size_t i = 0; i < la.n; i++) {
		const struct fuzz_line *x = &la.v[i], *y = &lb.v[i];
		matched = matched || is_match_line(x);
		if (fuzz_mem_eq(x->p, x->len, y->p, y->len))
			continue;
		bool prefixed = fuzz_has_prefix(x->p, x->len, SSHDCONF_DISABLED);
		struct fuzz_line orig = { prefixed ? x->p + plen : x->p, prefixed ? x->len - plen : 0 };
		fuzz_check(!matched && prefixed && is_port_line(&orig) &&
				   fuzz_mem_eq(orig.p, orig.len, y->p, y->len),
			   "writing an empty block on a text without one is the identity "
			   "(disabled Port lines aside)");
	}
}

static bool has_block_marker(const char *text, size_t len)
{
	return memmem(text, len, SSHDCONF_BEGIN, strlen(SSHDCONF_BEGIN)) ||
	       memmem(text, len, SSHDCONF_END, strlen(SSHDCONF_END));
}

/* A new block goes before the first directive; only a Port line the same
 * write enabled again may come before it. */
static void check_block_first(const char *out, size_t out_len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines l = fuzz_lines_split(out, out_len);
	for (size_t i = 0; i < l.n && !is_marker(&l.v[i], SSHDCONF_BEGIN); i++) {
		size_t body = fuzz_line_body(&l.v[i]), j = 0;
		while (j < body && (is_ws(l.v[i].p[j]) || l.v[i].p[j] == '\f'))
			j++;
		fuzz_check(j == body || l.v[i].p[j] == '#' || is_port_line(&l.v[i]),
			   "a new block stands before the first directive");
	}
}

/* Only called for a text block_read takes. */
static void check_write(const char *text, size_t len, const struct spec *spec, const char *removed,
			size_t removed_len)
{
	_cleanup_(fuzz_freep) char *out = NULL;
	_cleanup_(fuzz_freep) char *back = NULL;
	size_t out_len = 0, back_len = 0;
	int r = sshdconf_block_write(text, len, &spec->block, &out, &out_len);
	if (!spec->valid) {
		fuzz_check(r == -EINVAL, "block_write refuses an invalid block with -EINVAL");
		return;
	}
	fuzz_check(r == 0, "block_write takes every text block_read takes");
	fuzz_check(out && out[out_len] == '\0', "block_write output is terminated");

	struct sshdconf_block b;
	fuzz_check(sshdconf_block_read(out, out_len, &b) == 0 && blocks_equal(&b, &spec->block),
		   "block_write then block_read gives the block back");
	check_match_tail(text, len, out, out_len);
	if (spec->block.n_ports > 0)
		check_no_live_port(out, out_len);
	if (!has_block_marker(text, len) && !block_is_empty(&spec->block))
		check_block_first(out, out_len);

	const struct sshdconf_block empty = BLOCK_EMPTY;
	fuzz_check(sshdconf_block_write(out, out_len, &empty, &back, &back_len) == 0,
		   "a written block can be removed");
	fuzz_check(fuzz_mem_eq(back, back_len, removed, removed_len),
		   "write then remove gives what remove alone gives (the input, without a block)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const uint8_t *nul = size > 0 ? memrchr(data, '\0', size) : NULL;
	size_t len = nul ? (size_t)(nul - data) : size;
	struct spec spec = spec_decode(nul ? nul + 1 : NULL, nul ? size - len - 1 : 0);
	const struct sshdconf_block empty = BLOCK_EMPTY;

	struct sshdconf_block cur;
	int rr = sshdconf_block_read(text, len, &cur);
	fuzz_check(rr == 0 || rr == -EBADMSG, "block_read returns 0 or -EBADMSG");
	if (rr == 0)
		check_block_sane(&cur);
	check_includes(text, len);
	check_disable_ports(text, len, rr == 0);

	_cleanup_(fuzz_freep) char *removed = NULL;
	size_t removed_len = 0;
	int r = sshdconf_block_write(text, len, &empty, &removed, &removed_len);
	fuzz_check((r == 0) == (rr == 0), "removing the block works exactly when reading it does");
	if (r < 0)
		return 0;
	struct sshdconf_block none;
	fuzz_check(sshdconf_block_read(removed, removed_len, &none) == 0 && block_is_empty(&none),
		   "after removal no block is left");
	check_match_tail(text, len, removed, removed_len);
	if (!has_block_marker(text, len))
		check_remove_without_block(text, len, removed, removed_len);
	check_write(text, len, &spec, removed, removed_len);
	return 0;
}
