/* libFuzzer target for the control plane's answer parser (framing.c,
 * tasklist_parse). The input is the answer's body. Properties: it is
 * refused (-EBADMSG) exactly when it is not an object with an array
 * "tasks"; every element is handed over once, in order, counted from 1;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	cJSON *root = cJSON_ParseWithLength(body, size);
	const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
	bool good = cJSON_IsObject(root) && cJSON_IsArray(tasks);
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
	fuzz_check(r == (good ? 0 : -EBADMSG), "refused exactly when not {\"tasks\": [...]}");
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
