/* authorized_keys editing: lines in, lines out. A line is looked into only
 * as far as needed to find markers and keys; everything else is opaque bytes
 * that go back out exactly as they came in. */
#include <stdarg.h>
#include <strings.h>
#include <time.h>

#include <libssh/libssh.h>

#include "authkeys.h"
#include "task.h"

/* sshd refuses smaller RSA keys (RequiredRSASize); refuse them up front so
 * a task fails as invalid rather than at the probe after a reload. */
#define RSA_MIN_BITS 1024
#define FINGERPRINT_PREFIX "SHA256:"
#define FINGERPRINT_B64_LEN 43	/* 32 bytes, base64 without padding */

/* The key types the agent writes and recognises. Certificates are left
 * out: a task carries a plain key, and a certificate line stays opaque. */
struct key_type {
	const char *name;
	const char *curve;	/* the curve an ECDSA blob must name */
	unsigned fields;	/* SSH strings in the blob after the type name */
	bool rsa;
};

static const struct key_type key_types[] = {
	{ "ssh-ed25519", NULL, 1, false },
	{ "ssh-rsa", NULL, 2, true },
	{ "ecdsa-sha2-nistp256", "nistp256", 2, false },
	{ "ecdsa-sha2-nistp384", "nistp384", 2, false },
	{ "ecdsa-sha2-nistp521", "nistp521", 2, false },
	{ "sk-ssh-ed25519@openssh.com", NULL, 2, false },
	{ "sk-ecdsa-sha2-nistp256@openssh.com", "nistp256", 3, false },
};

/* A piece of a line's text. */
struct span {
	size_t off;
	size_t len;
};

enum line_kind {
	LINE_OTHER,
	LINE_BLANK,
	LINE_COMMENT,
	LINE_MARKER,
	LINE_KEY,
};

struct line {
	const char *text;	/* the exact bytes, terminator included */
	size_t len;
	char *owned;		/* backs text for the lines the agent added */
	enum line_kind kind;
	bool deleted;
	/* The agent terminated this unterminated last line to append after it;
	 * the newline goes away again when nothing follows. */
	bool newline_added;
	union {
		struct {
			struct span type, blob, comment;
		} key;
		struct {
			struct span name, task, fingerprint;
		} marker;
	};
};

struct authkeys {
	char *text;
	size_t len;
	struct line *lines;
	size_t n;
	size_t cap;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Tab counts as a separator; every other control character is refused. */
static bool has_ctrl_but_tab(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static bool mem_eq_str(const void *p, size_t len, const char *s)
{
	return s && strlen(s) == len && memcmp(p, s, len) == 0;
}

static size_t skip_space(const char *s, size_t len, size_t pos)
{
	while (pos < len && is_space(s[pos]))
		pos++;
	return pos;
}

static size_t skip_word(const char *s, size_t len, size_t pos)
{
	while (pos < len && !is_space(s[pos]))
		pos++;
	return pos;
}

static size_t trim_end(const char *s, size_t start, size_t end)
{
	while (end > start && is_space(s[end - 1]))
		end--;
	return end;
}

static const struct key_type *key_type_find(const char *s, size_t len)
{
	for (size_t i = 0; i < ELEMENTSOF(key_types); i++)
		if (mem_eq_str(s, len, key_types[i].name))
			return &key_types[i];
	return NULL;
}

/* -1 for anything outside the alphabet, padding included. */
static int b64_sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '/')
		return c == '+' ? 62 : 63;
	return -1;
}

/* Padded to a multiple of four, as ssh-keygen writes it. */
static bool b64_valid(const char *s, size_t len)
{
	if (len == 0 || len % 4 != 0)
		return false;
	size_t pad = 0;
	while (pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_sextet(s[i]) < 0)
			return false;
	return true;
}

/* s must pass b64_valid; out holds len / 4 * 3 bytes. */
static size_t b64_decode(const char *s, size_t len, unsigned char *out)
{
	size_t n = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < len && s[i] != '='; i++) {
		acc = (acc << 6) | (uint32_t)b64_sextet(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

struct reader {
	const unsigned char *p;
	size_t len;
};

static bool reader_string(struct reader *rd, const unsigned char **s, size_t *len)
{
	if (rd->len < 4)
		return false;
	size_t n = (size_t)rd->p[0] << 24 | (size_t)rd->p[1] << 16 | (size_t)rd->p[2] << 8 | rd->p[3];
	if (n > rd->len - 4)
		return false;
	*s = rd->p + 4;
	*len = n;
	rd->p += 4 + n;
	rd->len -= 4 + n;
	return true;
}

static size_t mpint_bits(const unsigned char *p, size_t len)
{
	while (len > 0 && *p == 0) {
		p++;
		len--;
	}
	if (len == 0)
		return 0;
	size_t bits = len * 8;
	for (unsigned char top = 0x80; top && !(*p & top); top >>= 1)
		bits--;
	return bits;
}

/* libssh trusts the type it is told over the one in the blob: it takes
 * "ssh-rsa <blob named ssh-ed25519 holding RSA numbers>" and fingerprints
 * a blob sshd never sees. So the blob's own type name, curve and shape are
 * checked here. */
static int blob_check(const struct key_type *kt, const char *b64, size_t len)
{
	_cleanup_free_ unsigned char *blob = malloc(len / 4 * 3);
	if (!blob)
		return -ENOMEM;
	struct reader rd = { blob, b64_decode(b64, len, blob) };
	const unsigned char *s;
	size_t n;
	if (!reader_string(&rd, &s, &n) || !mem_eq_str(s, n, kt->name))
		return -EINVAL;
	for (unsigned i = 0; i < kt->fields; i++) {
		if (!reader_string(&rd, &s, &n))
			return -EINVAL;
		if (i == 0 && kt->curve && !mem_eq_str(s, n, kt->curve))
			return -EINVAL;
		if (i == 1 && kt->rsa && mpint_bits(s, n) < RSA_MIN_BITS)
			return -EINVAL;
	}
	return rd.len == 0 ? 0 : -EINVAL;
}

static void ssh_key_freep(ssh_key *k)
{
	if (*k)
		ssh_key_free(*k);
}

static void pubkey_hash_freep(unsigned char **h)
{
	if (*h)
		ssh_clean_pubkey_hash(h);
}

static int fingerprint_make(const char *type, const char *b64, char **ret)
{
	_cleanup_(ssh_key_freep) ssh_key k = NULL;
	enum ssh_keytypes_e t = ssh_key_type_from_name(type);
	if (t == SSH_KEYTYPE_UNKNOWN || ssh_pki_import_pubkey_base64(b64, t, &k) != SSH_OK)
		return -EINVAL;
	if (ssh_key_type(k) != t)
		return -EINVAL;
	_cleanup_(pubkey_hash_freep) unsigned char *hash = NULL;
	size_t hlen = 0;
	if (ssh_get_publickey_hash(k, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK)
		return -EINVAL;
	char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	if (!fp)
		return -ENOMEM;
	*ret = strdup(fp);
	ssh_string_free_char(fp);
	return *ret ? 0 : -ENOMEM;
}

static bool fingerprint_valid(const char *s, size_t len)
{
	size_t plen = strlen(FINGERPRINT_PREFIX);
	if (len != plen + FINGERPRINT_B64_LEN || memcmp(s, FINGERPRINT_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < len; i++)
		if (b64_sextet(s[i]) < 0)
			return false;
	return true;
}

/* The checks behind pubkey_parse, on pieces already split; comment may be
 * NULL. */
static int pubkey_from_parts(const char *type, size_t tlen, const char *b64, size_t blen,
			     const char *comment, size_t clen, struct pubkey *key)
{
	const struct key_type *kt = key_type_find(type, tlen);
	if (!kt || !b64_valid(b64, blen))
		return -EINVAL;
	int r = blob_check(kt, b64, blen);
	if (r < 0)
		return r;

	_cleanup_(pubkey_free) struct pubkey k = { 0 };
	k.type = strndup(type, tlen);
	k.base64 = strndup(b64, blen);
	if (comment && clen > 0)
		k.comment = strndup(comment, clen);
	if (!k.type || !k.base64 || (comment && clen > 0 && !k.comment))
		return -ENOMEM;
	r = fingerprint_make(k.type, k.base64, &k.fingerprint);
	if (r < 0)
		return r;
	*key = k;
	k = (struct pubkey){ 0 };	/* NOLINT(clang-analyzer-deadcode.DeadStores): the _cleanup_ reads it */
	return 0;
}

int pubkey_parse(const char *text, size_t len, struct pubkey *key)
{
	if (!text || !key || len == 0 || len > PUBLIC_KEY_MAX || has_ctrl_but_tab(text, len))
		return -EINVAL;
	size_t type = skip_space(text, len, 0);
	size_t type_end = skip_word(text, len, type);
	size_t b64 = skip_space(text, len, type_end);
	size_t b64_end = skip_word(text, len, b64);
	size_t comment = skip_space(text, len, b64_end);
	size_t comment_end = trim_end(text, comment, len);
	if (b64_end == b64)
		return -EINVAL;
	return pubkey_from_parts(text + type, type_end - type, text + b64, b64_end - b64,
				 text + comment, comment_end - comment, key);
}

char *pubkey_format(const struct pubkey *key)
{
	char *s = NULL;
	int r;
	if (key->comment)
		r = asprintf(&s, "%s %s %s", key->type, key->base64, key->comment);
	else
		r = asprintf(&s, "%s %s", key->type, key->base64);
	return r < 0 ? NULL : s;
}

void pubkey_free(struct pubkey *key)
{
	if (!key)
		return;
	free(key->type);
	free(key->base64);
	free(key->comment);
	free(key->fingerprint);
	*key = (struct pubkey){ 0 };
}

bool pubkey_equal(const struct pubkey *a, const struct pubkey *b)
{
	return a->type && b->type && a->base64 && b->base64 && streq(a->type, b->type) &&
	       streq(a->base64, b->base64);
}

/* A key at pos: "type base64 [comment]". */
static bool line_key_at(const char *s, size_t len, size_t pos, struct line *l)
{
	size_t type_end = skip_word(s, len, pos);
	if (!key_type_find(s + pos, type_end - pos))
		return false;
	size_t blob = skip_space(s, len, type_end);
	size_t blob_end = skip_word(s, len, blob);
	if (!b64_valid(s + blob, blob_end - blob))
		return false;
	size_t comment = skip_space(s, len, blob_end);
	l->key.type = (struct span){ pos, type_end - pos };
	l->key.blob = (struct span){ blob, blob_end - blob };
	l->key.comment = (struct span){ comment, trim_end(s, comment, len) - comment };
	return true;
}

/* Options end at the first blank outside double quotes; \" never opens or
 * closes a quote. This is how sshd reads them. A quote left open runs to the
 * end of the line, where no key follows. */
static size_t skip_options(const char *s, size_t len, size_t pos)
{
	bool quoted = false;
	for (; pos < len && (quoted || !is_space(s[pos])); pos++) {
		if (s[pos] == '\\' && pos + 1 < len && s[pos + 1] == '"')
			pos++;
		else if (s[pos] == '"')
			quoted = !quoted;
	}
	return pos;
}

/* Like sshd: a key at the start, else options and then a key. */
static bool line_find_key(const char *s, size_t len, size_t pos, struct line *l)
{
	if (line_key_at(s, len, pos, l))
		return true;
	pos = skip_space(s, len, skip_options(s, len, pos));
	return line_key_at(s, len, pos, l);
}

static bool marker_field(const char *s, size_t len, size_t *pos, const char *name, size_t max,
			 struct span *ret)
{
	size_t n = strlen(name);
	if (len - *pos < n || memcmp(s + *pos, name, n) != 0)
		return false;
	size_t start = *pos + n, end = start;
	while (end < len && is_token_char(s[end]))
		end++;
	if (end == start || end - start > max)
		return false;
	*ret = (struct span){ start, end - start };
	*pos = end;
	return true;
}

/* AUTHKEYS_MARKER " keypair=NAME task=ID SHA256:..." and nothing else. */
static bool line_marker(const char *s, size_t len, struct line *l)
{
	size_t pos = strlen(AUTHKEYS_MARKER);
	if (len < pos || memcmp(s, AUTHKEYS_MARKER, pos) != 0)
		return false;
	if (!marker_field(s, len, &pos, " keypair=", KEYPAIR_NAME_MAX, &l->marker.name) ||
	    !marker_field(s, len, &pos, " task=", TASK_ID_MAX, &l->marker.task))
		return false;
	if (pos >= len || s[pos] != ' ' || !fingerprint_valid(s + pos + 1, len - pos - 1))
		return false;
	l->marker.fingerprint = (struct span){ pos + 1, len - pos - 1 };
	return true;
}

static enum line_kind line_classify(struct line *l)
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
	size_t pos = skip_space(s, len, 0);
	if (pos == len)
		return LINE_BLANK;
	if (s[pos] == '#')
		return LINE_COMMENT;
	return line_find_key(s, len, pos, l) ? LINE_KEY : LINE_OTHER;
}

static bool span_eq(const struct line *l, struct span sp, const char *str)
{
	return str && mem_eq_str(l->text + sp.off, sp.len, str);
}

static bool line_has_key(const struct line *l, const struct pubkey *key)
{
	return l->kind == LINE_KEY && span_eq(l, l->key.type, key->type) &&
	       span_eq(l, l->key.blob, key->base64);
}

static bool line_ends_newline(const struct line *l)
{
	return l->len > 0 && l->text[l->len - 1] == '\n';
}

/* Appends a line the agent writes; it is classified like any other line. */
__attribute__((format(printf, 2, 3)))
static int lines_push_printf(struct authkeys *ak, const char *fmt, ...)
{
	if (ak->n == ak->cap) {
		size_t cap = ak->cap ? ak->cap * 2 : 16;
		struct line *n = reallocarray(ak->lines, cap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		ak->lines = n;
		ak->cap = cap;
	}
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	int len = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -ENOMEM;
	struct line *l = &ak->lines[ak->n++];
	*l = (struct line){ .text = text, .len = (size_t)len, .owned = text };
	l->kind = line_classify(l);
	return 0;
}

static size_t count_lines(const char *text, size_t len)
{
	size_t n = 0;
	for (const char *p = text, *end = text + len; p < end; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
	}
	return n;
}

void authkeys_free(struct authkeys *ak)
{
	if (!ak)
		return;
	for (size_t i = 0; i < ak->n; i++)
		free(ak->lines[i].owned);
	free(ak->lines);
	free(ak->text);
	free(ak);
}

static void authkeys_freep(struct authkeys **ak)
{
	authkeys_free(*ak);
}

int authkeys_parse(const char *text, size_t len, struct authkeys **ret)
{
	if (!ret || (len > 0 && !text))
		return -EINVAL;
	_cleanup_(authkeys_freep) struct authkeys *ak = calloc(1, sizeof(*ak));
	if (!ak)
		return -ENOMEM;
	ak->text = malloc(len + 1);
	if (!ak->text)
		return -ENOMEM;
	if (len > 0)
		memcpy(ak->text, text, len);
	ak->len = len;

	size_t n = count_lines(ak->text, len);
	ak->cap = n > 0 ? n : 1;
	ak->lines = calloc(ak->cap, sizeof(*ak->lines));
	if (!ak->lines)
		return -ENOMEM;
	for (char *p = ak->text, *end = ak->text + len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *next = nl ? nl + 1 : end;
		struct line *l = &ak->lines[ak->n++];
		*l = (struct line){ .text = p, .len = (size_t)(next - p) };
		l->kind = line_classify(l);
		p = next;
	}
	*ret = TAKE_PTR(ak);
	return 0;
}

static bool marker_selected(const struct line *l, const struct strv *names)
{
	if (!names)
		return true;
	for (size_t i = 0; i < names->n; i++)
		if (span_eq(l, l->marker.name, names->v[i]))
			return true;
	return false;
}

/* The key on a key line, fully parsed; -EINVAL when libssh will not have it.
 * A comment with control characters in it is dropped rather than handed on. */
static int line_pubkey(const struct line *l, struct pubkey *key)
{
	const char *s = l->text;
	const char *comment = s + l->key.comment.off;
	size_t clen = l->key.comment.len;
	if (has_ctrl_but_tab(comment, clen))
		clen = 0;
	return pubkey_from_parts(s + l->key.type.off, l->key.type.len, s + l->key.blob.off,
				 l->key.blob.len, comment, clen, key);
}

struct pubkeys {
	struct pubkey *v;
	size_t n;
	size_t cap;
};

static void pubkeys_free(struct pubkeys *p)
{
	for (size_t i = 0; i < p->n; i++)
		pubkey_free(&p->v[i]);
	free(p->v);
	*p = (struct pubkeys){ 0 };
}

static int pubkeys_push(struct pubkeys *p, struct pubkey *key)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4;
		struct pubkey *n = reallocarray(p->v, cap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		p->v = n;
		p->cap = cap;
	}
	p->v[p->n++] = *key;
	*key = (struct pubkey){ 0 };
	return 0;
}

/* The marker at m and the live line after it: both go when that line holds
 * the key the marker names, else the marker alone goes (it is stale) and
 * the line stays. Returns 1 when both went. */
static int entry_remove(struct authkeys *ak, size_t m, size_t next, struct pubkeys *removed)
{
	struct line *marker = &ak->lines[m];
	struct line *l = next < ak->n ? &ak->lines[next] : NULL;
	marker->deleted = true;
	if (!l || l->kind != LINE_KEY)
		return 0;

	_cleanup_(pubkey_free) struct pubkey key = { 0 };
	int r = line_pubkey(l, &key);
	if (r == -EINVAL)
		return 0;
	if (r < 0)
		return r;
	if (!span_eq(marker, marker->marker.fingerprint, key.fingerprint))
		return 0;
	l->deleted = true;
	if (removed) {
		r = pubkeys_push(removed, &key);
		if (r < 0)
			return r;
	}
	return 1;
}

static int pubkeys_hand_over(struct pubkeys *p, struct pubkey **removed, size_t *n_removed)
{
	if (p->n == 0)
		return 0;
	struct pubkey *n = reallocarray(*removed, *n_removed + p->n, sizeof(*n));
	if (!n)
		return -ENOMEM;
	memcpy(n + *n_removed, p->v, p->n * sizeof(*n));
	*removed = n;
	*n_removed += p->n;
	free(p->v);
	*p = (struct pubkeys){ 0 };
	return 0;
}

int authkeys_remove_managed(struct authkeys *ak, const struct strv *names, struct pubkey **removed,
			    size_t *n_removed)
{
	if (!ak || (removed && !n_removed))
		return -EINVAL;
	_cleanup_(pubkeys_free) struct pubkeys keys = { 0 };
	size_t marker = SIZE_MAX;
	for (size_t i = 0; i < ak->n; i++) {
		struct line *l = &ak->lines[i];
		if (l->deleted)
			continue;
		if (marker != SIZE_MAX) {
			int r = entry_remove(ak, marker, i, removed ? &keys : NULL);
			marker = SIZE_MAX;
			if (r < 0)
				return r;
			if (r > 0)
				continue;
		}
		if (l->kind == LINE_MARKER && marker_selected(l, names))
			marker = i;
	}
	if (marker != SIZE_MAX)
		ak->lines[marker].deleted = true;
	return removed ? pubkeys_hand_over(&keys, removed, n_removed) : 0;
}

int authkeys_remove_key(struct authkeys *ak, const struct pubkey *key)
{
	if (!ak || !key || !key->type || !key->base64)
		return -EINVAL;
	int count = 0;
	size_t prev = SIZE_MAX;	/* the live line before this one */
	for (size_t i = 0; i < ak->n; i++) {
		struct line *l = &ak->lines[i];
		if (l->deleted)
			continue;
		if (!line_has_key(l, key)) {
			prev = i;
			continue;
		}
		l->deleted = true;
		count++;
		struct line *p = prev != SIZE_MAX ? &ak->lines[prev] : NULL;
		if (p && p->kind == LINE_MARKER && span_eq(p, p->marker.fingerprint, key->fingerprint)) {
			p->deleted = true;
			count++;
			prev = SIZE_MAX;
		}
	}
	return count;
}

bool authkeys_has_key(const struct authkeys *ak, const struct pubkey *key)
{
	if (!ak || !key || !key->type || !key->base64)
		return false;
	for (size_t i = 0; i < ak->n; i++)
		if (!ak->lines[i].deleted && line_has_key(&ak->lines[i], key))
			return true;
	return false;
}

static size_t last_live(const struct authkeys *ak)
{
	for (size_t i = ak->n; i > 0; i--)
		if (!ak->lines[i - 1].deleted)
			return i - 1;
	return SIZE_MAX;
}

/* What the agent writes must read back as what it means; a key that would
 * not is refused before anything changes. */
static bool pubkey_writable(const struct pubkey *key)
{
	return key && key->type && key->base64 && key->fingerprint &&
	       key_type_find(key->type, strlen(key->type)) &&
	       b64_valid(key->base64, strlen(key->base64)) &&
	       fingerprint_valid(key->fingerprint, strlen(key->fingerprint)) &&
	       (!key->comment || !has_ctrl_but_tab(key->comment, strlen(key->comment)));
}

/* The option as the agent writes it: UTC, to the second. */
static int expiry_option(int64_t expires, char *buf, size_t size)
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

int authkeys_add_expiring(struct authkeys *ak, const char *keypair, const char *task_id, const struct pubkey *key,
			  int64_t expires)
{
	char option[48];
	if (!ak || !keypair || !task_id || !str_is_token(keypair, KEYPAIR_NAME_MAX) ||
	    !str_is_token(task_id, TASK_ID_MAX) || !pubkey_writable(key) ||
	    expiry_option(expires, option, sizeof(option)) < 0)
		return -EINVAL;

	_cleanup_free_ char *formatted = pubkey_format(key);
	if (!formatted)
		return -ENOMEM;
	size_t last = last_live(ak);
	size_t n = ak->n;
	int r = lines_push_printf(ak, "%s keypair=%s task=%s %s\n", AUTHKEYS_MARKER, keypair, task_id,
				  key->fingerprint);
	if (r >= 0)
		r = lines_push_printf(ak, "%s%s\n", option, formatted);
	/* Only an entry that reads back as managed may go out. */
	if (r >= 0 && (ak->lines[n].kind != LINE_MARKER || ak->lines[n + 1].kind != LINE_KEY))
		r = -EINVAL;
	if (r < 0) {
		while (ak->n > n)
			free(ak->lines[--ak->n].owned);
		return r;
	}
	if (last != SIZE_MAX && !line_ends_newline(&ak->lines[last]))
		ak->lines[last].newline_added = true;
	return 0;
}

int authkeys_add(struct authkeys *ak, const char *keypair, const char *task_id, const struct pubkey *key)
{
	return authkeys_add_expiring(ak, keypair, task_id, key, 0);
}

int authkeys_serialise(const struct authkeys *ak, char **ret, size_t *ret_len)
{
	if (!ak || !ret)
		return -EINVAL;
	_cleanup_buf_ struct buf b = { 0 };
	size_t last = last_live(ak);
	int r = buf_reserve(&b, ak->len + 1);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ak->n; i++) {
		const struct line *l = &ak->lines[i];
		if (l->deleted)
			continue;
		r = buf_append(&b, l->text, l->len);
		if (r >= 0 && l->newline_added && i != last)
			r = buf_append(&b, "\n", 1);
		if (r < 0)
			return r;
	}
	*ret = buf_steal(&b, ret_len);
	return *ret ? 0 : -ENOMEM;
}

/* -- expiring entries ------------------------------------------------- */

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

/* expiry-time="..." among the options before the key (any case, as sshd
 * takes option names); 0 when there is none. */
static int64_t line_expiry(const struct line *l)
{
	static const char name[] = "expiry-time=\"";
	const char *s = l->text;
	size_t end = l->key.type.off, n = sizeof(name) - 1;
	for (size_t pos = skip_space(s, end, 0); pos < end; pos++) {
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

static size_t next_live(const struct authkeys *ak, size_t i)
{
	for (i++; i < ak->n && ak->lines[i].deleted; i++)
		;
	return i;
}

/* 1 with *k set when the marker at m heads a live entry: the key line
 * under it carries the marker's fingerprint. */
static int entry_key_line(const struct authkeys *ak, size_t m, size_t *k)
{
	size_t i = next_live(ak, m);
	if (ak->lines[m].kind != LINE_MARKER || ak->lines[m].deleted || i >= ak->n || ak->lines[i].kind != LINE_KEY)
		return 0;
	_cleanup_(pubkey_free) struct pubkey key = { 0 };
	int r = line_pubkey(&ak->lines[i], &key);
	if (r < 0)
		return r == -EINVAL ? 0 : r;
	if (!span_eq(&ak->lines[m], ak->lines[m].marker.fingerprint, key.fingerprint))
		return 0;
	*k = i;
	return 1;
}

struct entries {
	struct authkeys_entry *v;
	size_t n;
};

static int entries_push(struct entries *e, const struct line *m, const struct line *k)
{
	struct authkeys_entry *nv = reallocarray(e->v, e->n + 1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	e->v = nv;
	struct authkeys_entry *x = &e->v[e->n];
	*x = (struct authkeys_entry){
		.keypair = strndup(m->text + m->marker.name.off, m->marker.name.len),
		.task_id = strndup(m->text + m->marker.task.off, m->marker.task.len),
		.fingerprint = strndup(m->text + m->marker.fingerprint.off, m->marker.fingerprint.len),
		.expires = line_expiry(k),
	};
	e->n++;
	return x->keypair && x->task_id && x->fingerprint ? 0 : -ENOMEM;
}

void authkeys_entries_free(struct authkeys_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].keypair);
		free(v[i].task_id);
		free(v[i].fingerprint);
	}
	free(v);
}

/* The entries, and with now > 0 those expired at now are deleted. */
static int entries_walk(struct authkeys *ak, int64_t now, struct authkeys_entry **ret, size_t *n)
{
	struct entries e = { 0 };
	int r = 0, gone = 0;
	for (size_t i = 0; r >= 0 && i < ak->n; i++) {
		size_t k;
		r = entry_key_line(ak, i, &k);
		if (r <= 0)
			continue;
		int64_t expires = line_expiry(&ak->lines[k]);
		if (now > 0 && (!expires || expires > now))
			continue;
		r = ret ? entries_push(&e, &ak->lines[i], &ak->lines[k]) : 0;
		if (now > 0) {
			ak->lines[i].deleted = ak->lines[k].deleted = true;
			gone++;
		}
		i = k;
	}
	if (r < 0) {
		authkeys_entries_free(e.v, e.n);
		return r;
	}
	if (ret) {
		*ret = e.v;
		*n = e.n;
	}
	return gone;
}

int authkeys_managed(const struct authkeys *ak, struct authkeys_entry **ret, size_t *n)
{
	if (!ak || !ret || !n)
		return -EINVAL;
	/* With now = 0 nothing is deleted: the cast only lets the walk share code. */
	int r = entries_walk((struct authkeys *)ak, 0, ret, n);
	return r < 0 ? r : 0;
}

int authkeys_remove_expired(struct authkeys *ak, int64_t now, struct authkeys_entry **removed, size_t *n)
{
	if (!ak || now <= 0 || (removed && !n))
		return -EINVAL;
	return entries_walk(ak, now, removed, n);
}
