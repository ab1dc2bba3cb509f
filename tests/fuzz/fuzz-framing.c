/* libFuzzer target for the local channel's line framing (framing.c). The
 * first byte picks the longest line (small, to reach the limits), the
 * second seeds how the rest, the stream, is cut into reads. Properties:
 * the frames do not depend on how the stream was cut; they are exactly
 * those of a plain model that splits the whole stream at '\n' (a line, an
 * empty line, or one "too long" per over-long line); every frame takes
 * at least one byte it was given and, at the end of the stream, every
 * byte is taken. */
#include "framing.h"
#include "fuzz.h"

#define EVENTS_MAX 4096

struct event {
	enum frame_kind kind;
	const uint8_t *p;
	size_t len;
};

struct events {
	struct event v[EVENTS_MAX];
	size_t n;
};

static void push(struct events *e, enum frame_kind kind, const uint8_t *p, size_t len)
{
	if (e->n < EVENTS_MAX)
		e->v[e->n] = (struct event){ .kind = kind, .p = p, .len = len };
	e->n++;
}

/* One line of the model: n bytes, its '\n' included when it has one. */
static void model_line(struct events *e, const uint8_t *p, size_t n, bool terminated, size_t max)
{
	size_t len = n - (terminated ? 1 : 0);
	if (!terminated && n >= max) {
		push(e, FRAME_TOO_LONG, NULL, 0);
		return;
	}
	if (n > max) {
		push(e, FRAME_TOO_LONG, NULL, 0);
		return;
	}
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (len + 2 > max)
		push(e, FRAME_TOO_LONG, NULL, 0);
	else if (len == 0)
		push(e, FRAME_EMPTY, NULL, 0);
	else
		push(e, FRAME_LINE, p, len);
}

static void model(struct events *e, const uint8_t *s, size_t size, size_t max)
{
	size_t start = 0;
	for (size_t i = 0; i < size; i++)
		if (s[i] == '\n') {
			model_line(e, s + start, i + 1 - start, true, max);
			start = i + 1;
		}
	if (start < size)
		model_line(e, s + start, size - start, false, max);
}

static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Takes what the framer asks for from the unread window [*pos, end). */
static void drain(struct framer *f, struct events *e, const uint8_t *s, size_t *pos, size_t end, bool eof)
{
	for (;;) {
		size_t avail = end - *pos;
		const uint8_t *nl = memchr(s + *pos, '\n', avail);
		ssize_t eol = nl ? nl - (s + *pos) : -1;
		size_t line_end = framer_line_end(avail, eol);
		char tail[2] = "";
		for (size_t k = line_end < 2 ? line_end : 2, i = 0; i < k; i++)
			tail[2 - k + i] = (char)s[*pos + line_end - k + i];
		struct frame fr = framer_next(f, tail, avail, eol, eof);
		if (fr.kind == FRAME_NEED_MORE)
			return;
		fuzz_check(fr.take >= 1 && fr.take <= avail, "a frame takes between 1 and avail bytes");
		if (fr.kind == FRAME_LINE) {
			fuzz_check(fr.len >= 1 && fr.len <= fr.take, "a line lies inside what it takes");
			fuzz_check(!memchr(s + *pos, '\n', fr.len), "a line holds no newline");
			push(e, FRAME_LINE, s + *pos, fr.len);
		} else if (fr.kind != FRAME_SKIP) {
			push(e, fr.kind, NULL, 0);
		}
		*pos += fr.take;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct events want, got;
	if (size < 2)
		return 0;
	size_t max = 3 + data[0] % 64;
	uint32_t seed = 0x9e3779b9u ^ data[1];
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	want.n = got.n = 0;
	model(&want, s, n, max);

	struct framer f = { .line_max = max };
	size_t pos = 0, end = 0;
	while (end < n) {
		size_t chunk = 1 + next_rand(&seed) % (2 * max + 1);
		end = chunk < n - end ? end + chunk : n;
		drain(&f, &got, s, &pos, end, false);
	}
	drain(&f, &got, s, &pos, n, true);
	fuzz_check(pos == n, "at the end of the stream every byte is taken");

	fuzz_check(got.n == want.n, "as many frames as the model has");
	for (size_t i = 0; i < got.n && i < EVENTS_MAX; i++) {
		fuzz_check(got.v[i].kind == want.v[i].kind, "the frames of the model, in order");
		fuzz_check(got.v[i].len == want.v[i].len && (!got.v[i].len ||
							       !memcmp(got.v[i].p, want.v[i].p, got.v[i].len)),
			   "each line as the model cut it");
	}
	return 0;
}
