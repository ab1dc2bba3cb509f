/* libFuzzer target for the control plane's answer parser (framing.c,
 * tasklist_parse). The input is the answer's body. Properties: it is
 * refused (-EBADMSG) exactly when it is not an object with one array
 * "tasks" and nothing but white space after it, or holds a NUL byte or the
 * escape \u0000 (which cJSON would read as the end of a string); every
 * element is handed over once, in order, counted from 1;
 * an object as text that parses back to an object, anything else as NULL;
 * a callee that says stop stops the walk there with its error. */
#include <cjson/cJSON.h>
#include <errno.h>

#include "framing.h"
#include "fuzz.h"

struct seen {
	unsigned calls;
	unsigned stop_at;	/* 0: never */
};

static int each(const char *text, size_t len, unsigned index, void *arg)
{
	struct seen *s = arg;
	s->calls++;
	fuzz_check(index == s->calls, "elements come in order, counted from 1");
	if (text) {
		fuzz_check(strlen(text) == len, "the length is the text's");
		cJSON *back = cJSON_ParseWithLength(text, len);
		fuzz_check(cJSON_IsObject(back), "an object's text parses back to an object");
		cJSON_Delete(back);
	}
	return s->stop_at && index == s->stop_at ? -ENOBUFS : 0;
}

/* "\u0000" after an odd run of backslashes: an escape, not an escaped
 * backslash followed by "u0000". (Outside a string a backslash is no JSON.) */
static bool has_nul_escape(const char *s, size_t n)
{
	for (size_t i = 0; i + 6 <= n; i++) {
		if (memcmp(s + i, "\\u0000", 6) != 0)
			continue;
		size_t run = 1;
		while (run <= i && s[i - run] == '\\')
			run++;
		if (run % 2)
			return true;
	}
	return false;
}

/* Nothing but JSON white space from end on, and "tasks" named once. */
static bool whole(const cJSON *root, const char *end, const char *body_end)
{
	unsigned n = 0;
	const cJSON *c;
	for (; end && end < body_end; end++)
		if (!strchr(" \t\r\n", *end) || !*end)
			return false;
	cJSON_ArrayForEach(c, root)
		n += c->string && strcmp(c->string, "tasks") == 0;
	return end && n == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(body, size, &end, false);
	const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
	bool good = cJSON_IsObject(root) && cJSON_IsArray(tasks) && whole(root, end, body + size) &&
		    !memchr(body, '\0', size) && !has_nul_escape(body, size);
	unsigned elements = good ? (unsigned)cJSON_GetArraySize(tasks) : 0;
	const cJSON *t;
	unsigned objects = 0, i = 0, first_object = 0;
	if (good)
		cJSON_ArrayForEach(t, tasks) {
			i++;
			if (cJSON_IsObject(t) && !objects++)
				first_object = i;
		}
	cJSON_Delete(root);

	struct seen s = { 0 };
	int r = tasklist_parse(body, size, each, &s);
	fuzz_check(r == (good ? 0 : -EBADMSG), "refused exactly when not one whole {\"tasks\": [...]}");
	fuzz_check(s.calls == elements, "each element handed over once");

	/* Stop at the first object, if any. */
	struct seen stop = { .stop_at = first_object };
	r = tasklist_parse(body, size, each, &stop);
	if (good && first_object) {
		fuzz_check(r == -ENOBUFS && stop.calls == first_object, "a stop ends the walk with its error");
	} else {
		fuzz_check(r == (good ? 0 : -EBADMSG) && stop.calls == elements, "no stop, the whole walk");
	}
	(void)objects;
	return 0;
}
