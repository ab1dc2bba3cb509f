/* What the libFuzzer targets share: the entry point, a property check that
 * stops the run with a message libFuzzer keeps next to the crash input,
 * and a way to look at a text line by line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() makes libFuzzer save the input and stop with a non-zero status. */
#define fuzz_check(cond, what)                                                          \
	do {                                                                            \
		if (!(cond))                                                            \
			fuzz_fail(__FILE__, __LINE__, #cond, (what));                   \
	} while (0)

__attribute__((noreturn)) static inline void fuzz_fail(const char *file, int line,
							const char *cond, const char *what)
{
	fprintf(stderr, "\nfuzz: property failed: %s\n  at %s:%d: %s\n", what, file, line,
		cond);
	fflush(stderr);
	abort();
}

static inline void fuzz_oom(void *p)
{
	fuzz_check(p != NULL, "out of memory in the fuzz target");
}

static inline void fuzz_freep(void *p)
{
	free(*(void **)p);
}

static inline bool fuzz_mem_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static inline bool fuzz_has_prefix(const char *p, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(p, prefix, n) == 0;
}

/* A line as the editors see it: the bytes up to and including its "\n"
 * (the last line may have none). */
struct fuzz_line {
	const char *p;
	size_t len;	/* terminator included */
};

struct fuzz_lines {
	struct fuzz_line *v;
	size_t n;
};

static inline void fuzz_lines_free(struct fuzz_lines *l)
{
	free(l->v);
	*l = (struct fuzz_lines){ 0 };
}

static inline struct fuzz_lines fuzz_lines_split(const char *text, size_t len)
{
	struct fuzz_lines l = { 0 };
	size_t cap = 1;
	for (size_t i = 0; i < len; i++)
		cap += text[i] == '\n';
	l.v = calloc(cap, sizeof(*l.v));
	fuzz_oom(l.v);
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t next = nl ? (size_t)(nl - text) + 1 : len;
		l.v[l.n++] = (struct fuzz_line){ text + pos, next - pos };
		pos = next;
	}
	return l;
}

/* The line without its "\n" or "\r\n". */
static inline size_t fuzz_line_body(const struct fuzz_line *l)
{
	size_t n = l->len;
	if (n > 0 && l->p[n - 1] == '\n')
		n -= n > 1 && l->p[n - 2] == '\r' ? 2 : 1;
	return n;
}
