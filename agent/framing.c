/* The local channel's line framing and the control plane's task list. */
#include <cjson/cJSON.h>
#include <string.h>

#include "framing.h"
#include "task.h"
#include "util.h"

/* A line of n bytes whose last two are tail[0], tail[1]. */
static struct frame line_frame(const struct framer *f, const char tail[2], size_t n)
{
	size_t len = n;
	int last = 1;	/* tail[last] is the byte at len - 1 */
	if (n > f->line_max)
		return (struct frame){ .kind = FRAME_TOO_LONG, .take = n };
	if (len > 0 && tail[last] == '\n') {
		len--;
		last--;
	}
	if (len > 0 && tail[last] == '\r')
		len--;
	if (len + 2 > f->line_max)
		return (struct frame){ .kind = FRAME_TOO_LONG, .take = n };
	return (struct frame){ .kind = len ? FRAME_LINE : FRAME_EMPTY, .take = n, .len = len };
}

struct frame framer_next(struct framer *f, const char tail[2], size_t avail, ssize_t eol, bool eof)
{
	if (avail == 0)
		return (struct frame){ .kind = FRAME_NEED_MORE };
	if (f->discarding) {
		f->discarding = eol < 0;
		return (struct frame){ .kind = FRAME_SKIP, .take = eol < 0 ? avail : (size_t)eol + 1 };
	}
	if (eol >= 0)
		return line_frame(f, tail, (size_t)eol + 1);
	if (eof && avail < f->line_max)
		return line_frame(f, tail, avail);
	if (avail < f->line_max)
		return (struct frame){ .kind = FRAME_NEED_MORE };
	/* No newline in a whole line's worth: answer now, drop the rest of
	 * the line as it comes. */
	f->discarding = !eof;
	return (struct frame){ .kind = FRAME_TOO_LONG, .take = avail };
}

/* The answer carries tasks, and tasks may carry a password. */
static void wipe_deletep(cJSON **root)
{
	task_json_wipe_delete(*root);
}

/* The raw answer before cJSON reads it: cJSON ends a string at a NUL and
 * at the escape \u0000, and the task handed on would lose the rest of that
 * field without task_parse, which refuses the escape, ever seeing it. */
static bool tasklist_text_ok(const char *body, size_t len)
{
	bool in_string = false;
	if (memchr(body, '\0', len))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (in_string && body[i] == '\\') {
			if (len - i > 5 && memcmp(body + i + 1, "u0000", 5) == 0)
				return false;
			i++;
		} else if (body[i] == '"') {
			in_string = !in_string;
		}
	}
	return true;
}

/* Nothing but white space after the answer, and one "tasks": cJSON would
 * take the first of two, a reader taking the last other tasks. */
static bool tasklist_whole(const cJSON *root, const char *end, const char *body_end)
{
	unsigned n = 0;
	const cJSON *c;
	while (end < body_end && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
		end++;
	cJSON_ArrayForEach(c, root)
		n += c->string && streq(c->string, "tasks");
	return end == body_end && n == 1;
}

int tasklist_parse(const char *body, size_t len,
		   int (*each)(const char *text, size_t text_len, unsigned index, void *arg), void *arg)
{
	if (!tasklist_text_ok(body, len))
		return -EBADMSG;
	const char *end = NULL;
	_cleanup_(wipe_deletep) cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
	if (!cJSON_IsObject(root) || !cJSON_IsArray(tasks) || !tasklist_whole(root, end, body + len))
		return -EBADMSG;
	unsigned i = 0;
	const cJSON *t;
	cJSON_ArrayForEach(t, tasks) {
		int r;
		i++;
		if (!cJSON_IsObject(t)) {
			r = each(NULL, 0, i, arg);
		} else {
			char *text = cJSON_PrintUnformatted(t);
			if (!text)
				return -ENOMEM;
			size_t tlen = strlen(text);
			r = each(text, tlen, i, arg);
			explicit_bzero(text, tlen);
			cJSON_free(text);
		}
		if (r < 0)
			return r;
	}
	return 0;
}
