/* Undoing one edit of a line-oriented file on a newer version of it. Pure:
 * text in, text out. */
#pragma once

#include "util.h"

/* Someone wrote the file after an edit turned base into ours; theirs is
 * what is there now. The edit is undone on theirs: the lines it added go,
 * the lines it took out come back at the end, every other line of theirs
 * stays where it is. out gets the result (appended). 0 or -ENOMEM. */
int linemerge_undo(const char *base, size_t base_len, const char *ours, size_t ours_len, const char *theirs,
		   size_t theirs_len, struct buf *out);
