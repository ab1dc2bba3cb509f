/* One authorized_keys line as the agent reads it: opaque bytes, looked into
 * only as far as needed to tell the agent's marker or a key from the rest.
 * The authkeys module's own header: only authkeys*.c include it. */
#pragma once

#include "authkeys.h"

/* A piece of a line's text. */
struct authkeys_span {
	size_t off;
	size_t len;
};

enum authkeys_line_kind {
	LINE_OTHER,
	LINE_BLANK,
	LINE_COMMENT,
	LINE_MARKER,
	LINE_KEY,
};

struct authkeys_line {
	const char *text;	/* the exact bytes, terminator included */
	size_t len;
	char *owned;		/* backs text for the lines the agent added */
	enum authkeys_line_kind kind;
	bool deleted;
	/* The agent terminated this unterminated last line to append after it;
	 * the newline goes away again when nothing follows. */
	bool newline_added;
	union {
		struct {
			struct authkeys_span type, blob, comment;
		} key;
		struct {
			struct authkeys_span name, task, fingerprint;
		} marker;
	};
};

/* What the line is, with the spans of a marker or a key filled in. */
enum authkeys_line_kind authkeysline_classify(struct authkeys_line *l);
/* The span's text is str. */
bool authkeysline_span_eq(const struct authkeys_line *l, struct authkeys_span sp, const char *str);
/* A key line carrying key (type and blob; options and comment aside). */
bool authkeysline_has_key(const struct authkeys_line *l, const struct pubkey *key);
bool authkeysline_ends_newline(const struct authkeys_line *l);
/* The key on a key line, fully parsed; -EINVAL when pubkey_from_parts
 * will not have it. A comment with control characters in it is dropped. */
int authkeysline_pubkey(const struct authkeys_line *l, struct pubkey *key);
/* The key line's expiry-time option, unix seconds; 0 when it has none. */
int64_t authkeysline_expiry(const struct authkeys_line *l);
/* The option the agent writes before a key, "expiry-time=\"...Z\" " (UTC,
 * to the second), or "" when expires is 0. -EINVAL past year 9999. */
int authkeysline_expiry_option(int64_t expires, char *buf, size_t size);
