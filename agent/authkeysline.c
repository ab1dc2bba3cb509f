/* Reading one authorized_keys line the way sshd does, as far as the agent
 * needs: its marker comment, a key at the start or after options, and the
 * expiry-time option. Anything else about the line stays opaque. */
#include <strings.h>
#include <time.h>

#include "authkeysline.h"
#include "task.h"

static bool is_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* A key at pos: "type base64 [comment]". pos is past any blanks already. */
static bool line_key_at(const char *s, size_t len, size_t pos, struct authkeys_line *l)
{
	struct pubkey_fields f;
	pubkey_split(s, len, pos, &f);
	if (!pubkey_type_known(s + f.type, f.type_len) || !pubkey_base64_valid(s + f.blob, f.blob_len))
		return false;
	l->key.type = (struct authkeys_span){ f.type, f.type_len };
	l->key.blob = (struct authkeys_span){ f.blob, f.blob_len };
	l->key.comment = (struct authkeys_span){ f.comment, f.comment_len };
	return true;
}

/* Options end at the first blank outside double quotes; \" never opens or
 * closes a quote. This is how sshd reads them. A quote left open runs to the
 * end of the line, where no key follows. */
static size_t skip_options(const char *s, size_t len, size_t pos)
{
	bool quoted = false;
	for (; pos < len && (quoted || !pubkey_is_blank(s[pos])); pos++) {
		if (s[pos] == '\\' && pos + 1 < len && s[pos + 1] == '"')
			pos++;
		else if (s[pos] == '"')
			quoted = !quoted;
	}
	return pos;
}

/* Like sshd: a key at the start, else options and then a key. */
static bool line_find_key(const char *s, size_t len, size_t pos, struct authkeys_line *l)
{
	if (line_key_at(s, len, pos, l))
		return true;
	pos = pubkey_skip_blank(s, len, skip_options(s, len, pos));
	return line_key_at(s, len, pos, l);
}

static bool marker_field(const char *s, size_t len, size_t *pos, const char *name, size_t max,
			 struct authkeys_span *ret)
{
	size_t n = strlen(name);
	if (len - *pos < n || memcmp(s + *pos, name, n) != 0)
		return false;
	size_t start = *pos + n, end = start;
	while (end < len && is_token_char(s[end]))
		end++;
	if (end == start || end - start > max)
		return false;
	*ret = (struct authkeys_span){ start, end - start };
	*pos = end;
	return true;
}

/* AUTHKEYS_MARKER " keypair=NAME task=ID SHA256:..." and nothing else. */
static bool line_marker(const char *s, size_t len, struct authkeys_line *l)
{
	size_t pos = strlen(AUTHKEYS_MARKER);
	if (len < pos || memcmp(s, AUTHKEYS_MARKER, pos) != 0)
		return false;
	if (!marker_field(s, len, &pos, " keypair=", KEYPAIR_NAME_MAX, &l->marker.name) ||
	    !marker_field(s, len, &pos, " task=", TASK_ID_MAX, &l->marker.task))
		return false;
	if (pos >= len || s[pos] != ' ' || !pubkey_fingerprint_valid(s + pos + 1, len - pos - 1))
		return false;
	l->marker.fingerprint = (struct authkeys_span){ pos + 1, len - pos - 1 };
	return true;
}

enum authkeys_line_kind authkeysline_classify(struct authkeys_line *l)
{
	const char *s = l->text;
	size_t len = l->len;
	if (len > 0 && s[len - 1] == '\n')
		len--;
	/* Also on an unterminated last line: an add terminates it later, and
	 * the line must mean the same before and after. */
	if (len > 0 && s[len - 1] == '\r')
		len--;
	/* sshd reads a line as a C string: nothing after a NUL counts. */
	const char *nul = memchr(s, '\0', len);
	if (nul)
		len = (size_t)(nul - s);

	if (line_marker(s, len, l))
		return LINE_MARKER;
	size_t pos = pubkey_skip_blank(s, len, 0);
	if (pos == len)
		return LINE_BLANK;
	if (s[pos] == '#')
		return LINE_COMMENT;
	return line_find_key(s, len, pos, l) ? LINE_KEY : LINE_OTHER;
}

bool authkeysline_span_eq(const struct authkeys_line *l, struct authkeys_span sp, const char *str)
{
	return str && strlen(str) == sp.len && memcmp(l->text + sp.off, str, sp.len) == 0;
}

bool authkeysline_has_key(const struct authkeys_line *l, const struct pubkey *key)
{
	return l->kind == LINE_KEY && authkeysline_span_eq(l, l->key.type, key->type) &&
	       authkeysline_span_eq(l, l->key.blob, key->base64);
}

bool authkeysline_ends_newline(const struct authkeys_line *l)
{
	return l->len > 0 && l->text[l->len - 1] == '\n';
}

/* A comment with control characters in it is dropped rather than handed on. */
int authkeysline_pubkey(const struct authkeys_line *l, struct pubkey *key)
{
	const char *s = l->text;
	const char *comment = s + l->key.comment.off;
	size_t clen = l->key.comment.len;
	if (pubkey_has_ctrl(comment, clen))
		clen = 0;
	return pubkey_from_parts(s + l->key.type.off, l->key.type.len, s + l->key.blob.off,
				 l->key.blob.len, comment, clen, key);
}

int authkeysline_expiry_option(int64_t expires, char *buf, size_t size)
{
	time_t t = (time_t)expires;
	struct tm tm;
	if (!expires) {
		buf[0] = '\0';
		return 0;
	}
	if (expires < 0 || !gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 ||
	    !strftime(buf, size, "expiry-time=\"%Y%m%d%H%M%SZ\" ", &tm))
		return -EINVAL;
	return 0;
}

int authkeys_expiry_parse(const char *s, size_t len, int64_t *ret)
{
	bool utc = len > 0 && (s[len - 1] == 'Z' || s[len - 1] == 'z');
	int f[6] = { 0, 0, 0, 0, 0, 0 };
	static const int width[6] = { 4, 2, 2, 2, 2, 2 };
	size_t n = len - utc, pos = 0;
	if (n != 8 && n != 12 && n != 14)
		return -EINVAL;
	for (int i = 0; pos < n; i++)
		for (int w = 0; w < width[i]; w++, pos++) {
			if (s[pos] < '0' || s[pos] > '9')
				return -EINVAL;
			f[i] = f[i] * 10 + (s[pos] - '0');
		}
	if (f[0] < 1970 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 59)
		return -EINVAL;
	struct tm tm = { .tm_year = f[0] - 1900, .tm_mon = f[1] - 1, .tm_mday = f[2], .tm_hour = f[3],
			 .tm_min = f[4], .tm_sec = f[5], .tm_isdst = -1 };
	time_t t = utc ? timegm(&tm) : mktime(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ret = (int64_t)t;
	return 0;
}

/* Among the options before the key, in any case, as sshd takes option
 * names; a comma inside quotes does not end an option. */
int64_t authkeysline_expiry(const struct authkeys_line *l)
{
	static const char name[] = "expiry-time=\"";
	const char *s = l->text;
	size_t end = l->key.type.off, n = sizeof(name) - 1;
	for (size_t pos = pubkey_skip_blank(s, end, 0); pos < end; pos++) {
		if (end - pos > n && strncasecmp(s + pos, name, n) == 0) {
			const char *v = s + pos + n;
			const char *q = memchr(v, '"', end - pos - n);
			int64_t t;
			return q && authkeys_expiry_parse(v, (size_t)(q - v), &t) == 0 ? t : 0;
		}
		for (bool quoted = false; pos < end && (quoted || s[pos] != ','); pos++) {
			if (s[pos] == '\\' && pos + 1 < end && s[pos + 1] == '"')
				pos++;
			else if (s[pos] == '"')
				quoted = !quoted;
		}
	}
	return 0;
}
