/* The three-way line merge behind a rollback: undo one edit (base -> ours)
 * on a file someone else changed since (theirs), line by line. Pure. */
#include "linemerge.h"

/* The lines of a file, hashed. */
struct lines {
	struct line {
		const char *p;
		size_t n;
		uint64_t h;
	} *v;
	size_t n;
	size_t *slot;	/* open addressing: index + 1, 0 empty */
	size_t mask;
};

static uint64_t line_hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return h;
}

static void lines_free(struct lines *l)
{
	free(l->v);
	free(l->slot);
}

static int lines_split(const char *text, size_t len, struct lines *l)
{
	size_t n = 0, cap = 1;
	*l = (struct lines){ 0 };
	for (size_t i = 0; i < len; i++)
		cap += text[i] == '\n';
	l->v = calloc(cap, sizeof(*l->v));
	size_t size = 2;
	while (size < 2 * cap)
		size *= 2;
	l->slot = calloc(size, sizeof(*l->slot));
	if (!l->v || !l->slot)
		return -ENOMEM;
	l->mask = size - 1;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
		l->v[n] = (struct line){ .p = p, .n = ln, .h = line_hash(p, ln) };
		size_t k = l->v[n].h & l->mask;
		while (l->slot[k])
			k = (k + 1) & l->mask;
		l->slot[k] = ++n;
		p += ln + 1;
	}
	l->n = n;
	return 0;
}

static bool lines_has(const struct lines *l, const struct line *x)
{
	for (size_t k = x->h & l->mask; l->slot[k]; k = (k + 1) & l->mask) {
		const struct line *y = &l->v[l->slot[k] - 1];
		if (y->h == x->h && y->n == x->n && memcmp(y->p, x->p, x->n) == 0)
			return true;
	}
	return false;
}

static int emit_line(struct buf *out, const struct line *x)
{
	int r = buf_append(out, x->p, x->n);
	return r < 0 ? r : buf_append(out, "\n", 1);
}

int linemerge_undo(const char *base, size_t base_len, const char *ours, size_t ours_len, const char *theirs,
		     size_t theirs_len, struct buf *out)
{
	struct lines b, o, t;
	int r = lines_split(base, base_len, &b);
	int r2 = lines_split(ours, ours_len, &o);
	int r3 = lines_split(theirs, theirs_len, &t);
	if (r == 0)
		r = r2 < 0 ? r2 : r3;
	for (size_t i = 0; r == 0 && i < t.n; i++)
		if (!lines_has(&o, &t.v[i]) || lines_has(&b, &t.v[i]))
			r = emit_line(out, &t.v[i]);
	for (size_t i = 0; r == 0 && i < b.n; i++)
		if (!lines_has(&o, &b.v[i]) && !lines_has(&t, &b.v[i]))
			r = emit_line(out, &b.v[i]);
	lines_free(&b);
	lines_free(&o);
	lines_free(&t);
	return r;
}

