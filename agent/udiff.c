/* Myers' O(ND) difference algorithm on lines, after the common head and
 * tail are set aside (an edit of authorized_keys or sshd_config touches a
 * few lines of a long file). Past UDIFF_MAX_D edits the middle is shown as
 * removed and added whole: still a correct diff, only not a minimal one. */
#include "udiff.h"

#define UDIFF_CONTEXT ((size_t)3)
#define UDIFF_MAX_D 1000

struct line {
	const char *p;
	size_t len;	/* newline included when there is one */
};

struct lines {
	struct line *v;
	size_t n;
};

enum op_kind { OP_SAME, OP_DEL, OP_ADD };

struct op {
	enum op_kind kind;
	size_t a, b;	/* line indexes in old and new */
};

struct ops {
	struct op *v;
	size_t n;
};

static int split(const char *text, size_t len, struct lines *l)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += text[i] == '\n';
	l->v = calloc(n + 2, sizeof(*l->v));
	l->n = 0;
	if (!l->v)
		return -ENOMEM;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		l->v[l->n++] = (struct line){ p, (size_t)(next - p) };
		p = next;
	}
	return 0;
}

static bool same(const struct line *x, const struct line *y)
{
	return x->len == y->len && memcmp(x->p, y->p, x->len) == 0;
}

static void push(struct ops *o, enum op_kind k, size_t a, size_t b)
{
	o->v[o->n++] = (struct op){ k, a, b };
}

/* The lines of a and b a middle compares, and where they start. */
struct span {
	const struct lines *a, *b;
	size_t a0, a1, b0, b1;
};

/* Myers' forward pass: the frontier v (diagonal k at v[max + k]) after
 * each round d is saved in trace[d]. The number of edits, or -1 past
 * UDIFF_MAX_D; -ENOMEM as -2. */
static long forward(const struct span *sp, long *v, long max, long **trace)
{
	long n = (long)(sp->a1 - sp->a0), m = (long)(sp->b1 - sp->b0);
	for (long d = 0; d <= max && d <= UDIFF_MAX_D; d++) {
		bool done = false;
		for (long k = -d; k <= d; k += 2) {
			bool down = k == -d || (k != d && v[max + k - 1] < v[max + k + 1]);
			long x = down ? v[max + k + 1] : v[max + k - 1] + 1, y = x - k;
			while (x < n && y < m && same(&sp->a->v[sp->a0 + (size_t)x], &sp->b->v[sp->b0 + (size_t)y]))
				x++, y++;
			v[max + k] = x;
			done |= x >= n && y >= m;
		}
		trace[d] = malloc((size_t)(2 * d + 1) * sizeof(long));
		if (!trace[d])
			return -2;
		memcpy(trace[d], v + max - d, (size_t)(2 * d + 1) * sizeof(long));
		if (done)
			return d;
	}
	return -1;
}

/* Reads the script back from the saved frontiers, last edit first. */
static void backward(const struct span *sp, long found, long **trace, struct ops *o)
{
	long x = (long)(sp->a1 - sp->a0), y = (long)(sp->b1 - sp->b0);
	for (long d = found; d >= 0; d--) {
		long k = x - y, px = 0, py = 0;
		if (d > 0) {
			const long *pv = trace[d - 1] + d - 1;	/* pv[k] for k in -(d-1)..d-1 */
			long pk = (k == -d || (k != d && pv[k - 1] < pv[k + 1])) ? k + 1 : k - 1;
			px = pv[pk];
			py = px - pk;
		}
		while (x > px && y > py) {
			x--, y--;
			push(o, OP_SAME, sp->a0 + (size_t)x, sp->b0 + (size_t)y);
		}
		if (d > 0 && x == px)
			push(o, OP_ADD, sp->a0 + (size_t)x, sp->b0 + (size_t)--y);
		else if (d > 0)
			push(o, OP_DEL, sp->a0 + (size_t)--x, sp->b0 + (size_t)y);
	}
}

/* The middle: the shortest edit script (Myers), or past UDIFF_MAX_D all
 * out and all in. */
static int middle(const struct span *sp, struct ops *o)
{
	long n = (long)(sp->a1 - sp->a0), m = (long)(sp->b1 - sp->b0), max = n + m, found = -1;
	long *v = calloc((size_t)(2 * max + 3), sizeof(long));
	long **trace = calloc(UDIFF_MAX_D + 1, sizeof(*trace));
	int r = v && trace ? 0 : -ENOMEM;
	size_t start = o->n;
	if (r == 0)
		found = forward(sp, v, max, trace);
	if (found == -2)
		r = -ENOMEM;
	if (r == 0 && found >= 0)
		backward(sp, found, trace, o);
	/* Pushed backwards like the script read back above. */
	for (long i = m; r == 0 && found == -1 && i-- > 0;)
		push(o, OP_ADD, sp->a1, sp->b0 + (size_t)i);
	for (long i = n; r == 0 && found == -1 && i-- > 0;)
		push(o, OP_DEL, sp->a0 + (size_t)i, sp->b0);
	for (size_t i = start, j = o->n; r == 0 && j > i + 1; i++, j--) {
		struct op t = o->v[i];
		o->v[i] = o->v[j - 1];
		o->v[j - 1] = t;
	}
	for (long i = 0; trace && i <= UDIFF_MAX_D; i++)
		free(trace[i]);
	free(trace);
	free(v);
	return r;
}

static int emit_line(struct buf *out, char mark, const struct line *l)
{
	int r = buf_printf(out, "%c%.*s", mark, (int)l->len, l->p);
	if (r >= 0 && (l->len == 0 || l->p[l->len - 1] != '\n'))
		r = buf_puts(out, "\n\\ No newline at end of file\n");
	return r < 0 ? -ENOMEM : 0;
}

/* diff -u's range: "start,count", the count left out when it is 1 and the
 * start one before the hunk when the count is 0. */
static int emit_range(struct buf *out, char sign, size_t first, size_t count)
{
	if (count == 1)
		return buf_printf(out, "%c%zu", sign, first + 1);
	return buf_printf(out, "%c%zu,%zu", sign, count ? first + 1 : first, count);
}

static int emit_hunk(const struct ops *o, size_t from, size_t to, const struct lines *a, const struct lines *b,
		     struct buf *out)
{
	size_t na = 0, nb = 0, fa = o->v[from].a, fb = o->v[from].b;
	for (size_t i = from; i < to; i++) {
		na += o->v[i].kind != OP_ADD;
		nb += o->v[i].kind != OP_DEL;
	}
	int r = buf_puts(out, "@@ ");
	if (r >= 0)
		r = emit_range(out, '-', fa, na);
	if (r >= 0)
		r = buf_puts(out, " ");
	if (r >= 0)
		r = emit_range(out, '+', fb, nb);
	if (r >= 0)
		r = buf_puts(out, " @@\n");
	for (size_t i = from; r >= 0 && i < to; i++) {
		const struct op *op = &o->v[i];
		if (op->kind == OP_SAME)
			r = emit_line(out, ' ', &a->v[op->a]);
		else if (op->kind == OP_DEL)
			r = emit_line(out, '-', &a->v[op->a]);
		else
			r = emit_line(out, '+', &b->v[op->b]);
	}
	return r < 0 ? -ENOMEM : 0;
}

static int emit_hunks(const struct ops *o, const struct lines *a, const struct lines *b, struct buf *out)
{
	size_t i = 0;
	while (i < o->n) {
		while (i < o->n && o->v[i].kind == OP_SAME)
			i++;
		if (i == o->n)
			break;
		size_t from = i > UDIFF_CONTEXT ? i - UDIFF_CONTEXT : 0, last = i;
		/* Changes closer than twice the context share a hunk. */
		for (size_t j = i; j < o->n && j <= last + 2 * UDIFF_CONTEXT; j++)
			if (o->v[j].kind != OP_SAME)
				last = j;
		size_t to = last + 1 + UDIFF_CONTEXT < o->n ? last + 1 + UDIFF_CONTEXT : o->n;
		int r = emit_hunk(o, from, to, a, b, out);
		if (r < 0)
			return r;
		i = to;
	}
	return 0;
}

int udiff(const char *old, size_t old_len, const char *new, size_t new_len, const char *path, struct buf *out)
{
	struct lines a = { 0 }, b = { 0 };
	struct ops o = { 0 };
	if (old && old_len == new_len && memcmp(old, new, old_len) == 0)
		return 0;
	int r = split(old ? old : "", old ? old_len : 0, &a);
	if (r == 0)
		r = split(new, new_len, &b);
	if (r == 0 && !(o.v = calloc(a.n + b.n + 1, sizeof(*o.v))))
		r = -ENOMEM;
	size_t head = 0, tail = 0;
	while (r == 0 && head < a.n && head < b.n && same(&a.v[head], &b.v[head]))
		push(&o, OP_SAME, head, head), head++;
	while (r == 0 && tail < a.n - head && tail < b.n - head && same(&a.v[a.n - 1 - tail], &b.v[b.n - 1 - tail]))
		tail++;
	struct span sp = { &a, &b, head, a.n - tail, head, b.n - tail };
	if (r == 0)
		r = middle(&sp, &o);
	for (size_t i = 0; r == 0 && i < tail; i++)
		push(&o, OP_SAME, a.n - tail + i, b.n - tail + i);
	if (r == 0 && buf_printf(out, "--- %s%s\n+++ b%s\n", old ? "a" : "", old ? path : "/dev/null", path) < 0)
		r = -ENOMEM;
	if (r == 0)
		r = emit_hunks(&o, &a, &b, out);
	free(a.v);
	free(b.v);
	free(o.v);
	return r;
}
