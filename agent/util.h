/* Small helpers every module uses: cleanup attributes, a growable buffer,
 * string vectors and the secret type. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_cjson_ _cleanup_(cjson_deletep)
#define _cleanup_strv_ _cleanup_(strv_freep)
#define _cleanup_buf_ _cleanup_(buf_freep)
#define _cleanup_secret_ _cleanup_(secret_wipe)

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define streq(a, b) (strcmp((a), (b)) == 0)

#define TAKE_PTR(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define TAKE_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(const int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		(void)fclose(*f);	/* read streams only: a close error loses nothing */
}

static inline void cjson_deletep(cJSON **j)
{
	cJSON_Delete(*j);
}

/* A growable byte buffer; data is always NUL-terminated. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

int buf_reserve(struct buf *b, size_t more);
/* Appends what fd has to read until EOF, NUL-terminated; -EFBIG past max
 * bytes in all. */
int buf_read_fd(struct buf *b, int fd, size_t max);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);
/* Wipes the contents before freeing: for buffers that held a secret. */
void buf_wipe(struct buf *b);
static inline void buf_freep(struct buf *b)
{
	buf_free(b);
}
/* Hands the data over to the caller; the buffer is empty afterwards. */
char *buf_steal(struct buf *b, size_t *len);

/* A NULL-terminated vector of owned strings. */
struct strv {
	char **v;
	size_t n;
};

int strv_push(struct strv *s, const char *str);
int strv_push_take(struct strv *s, char *str);
bool strv_contains(const struct strv *s, const char *str);
void strv_free(struct strv *s);
static inline void strv_freep(struct strv *s)
{
	strv_free(s);
}

/* A secret (password, private key). It has no function that formats it.
 * Its bytes live in pages of their own (mmap), locked (mlock) and left out
 * of core dumps (MADV_DONTDUMP); its cleanup wipes them before unmapping. */
#define SECRET_MAX ((size_t)64 * 1024)
struct secret {
	char *data;
	size_t len;
};

int secret_set(struct secret *s, const char *src, size_t len);
void secret_wipe(struct secret *s);

/* Wipes a string that cJSON or another library allocated before freeing it. */
void wipe_string(char *s);

/* Monotonic clock in milliseconds. */
int64_t now_ms(void);

/* Character class checks used by validators. */
bool str_has_ctrl(const char *s, size_t len);
bool str_is_token(const char *s, size_t max);	/* 1..max of [A-Za-z0-9._-] */
