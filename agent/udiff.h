/* A unified diff of two texts, line by line, as `diff -u` prints it (three
 * lines of context). Pure: text in, text out. */
#pragma once

#include "util.h"

/* Appends the diff of old (NULL: the file does not exist) and new to out,
 * labelled with path; nothing when they are equal. 0 or -ENOMEM. */
int udiff(const char *old, size_t old_len, const char *new, size_t new_len, const char *path, struct buf *out);
