/* authorized_keys editing: lines in, lines out. A line is looked into only
 * as far as needed to find markers and keys (authkeysline.c); everything
 * else is opaque bytes that go back out exactly as they came in. The edits
 * here only mark lines deleted or append new ones. */
#include <stdarg.h>

#include "authkeysline.h"
#include "task.h"

struct authkeys {
	char *text;
	size_t len;
	struct authkeys_line *lines;
	size_t n;
	size_t cap;
};

/* Appends a line the agent writes; it is classified like any other line. */
__attribute__((format(printf, 2, 3)))
static int lines_push_printf(struct authkeys *ak, const char *fmt, ...)
{
	if (ak->n == ak->cap) {
		size_t cap = ak->cap ? ak->cap * 2 : 16;
		struct authkeys_line *n = reallocarray(ak->lines, cap, sizeof(*n));
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
	struct authkeys_line *l = &ak->lines[ak->n++];
	*l = (struct authkeys_line){ .text = text, .len = (size_t)len, .owned = text };
	l->kind = authkeysline_classify(l);
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
		struct authkeys_line *l = &ak->lines[ak->n++];
		*l = (struct authkeys_line){ .text = p, .len = (size_t)(next - p) };
		l->kind = authkeysline_classify(l);
		p = next;
	}
	*ret = TAKE_PTR(ak);
	return 0;
}

static bool marker_selected(const struct authkeys_line *l, const struct strv *names)
{
	if (!names)
		return true;
	for (size_t i = 0; i < names->n; i++)
		if (authkeysline_span_eq(l, l->marker.name, names->v[i]))
			return true;
	return false;
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
	struct authkeys_line *marker = &ak->lines[m];
	struct authkeys_line *l = next < ak->n ? &ak->lines[next] : NULL;
	marker->deleted = true;
	if (!l || l->kind != LINE_KEY)
		return 0;

	_cleanup_(pubkey_free) struct pubkey key = { 0 };
	int r = authkeysline_pubkey(l, &key);
	if (r == -EINVAL)
		return 0;
	if (r < 0)
		return r;
	if (!authkeysline_span_eq(marker, marker->marker.fingerprint, key.fingerprint))
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
		struct authkeys_line *l = &ak->lines[i];
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
		struct authkeys_line *l = &ak->lines[i];
		if (l->deleted)
			continue;
		if (!authkeysline_has_key(l, key)) {
			prev = i;
			continue;
		}
		l->deleted = true;
		count++;
		struct authkeys_line *p = prev != SIZE_MAX ? &ak->lines[prev] : NULL;
		if (p && p->kind == LINE_MARKER && authkeysline_span_eq(p, p->marker.fingerprint, key->fingerprint)) {
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
		if (!ak->lines[i].deleted && authkeysline_has_key(&ak->lines[i], key))
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
	       pubkey_type_known(key->type, strlen(key->type)) &&
	       pubkey_base64_valid(key->base64, strlen(key->base64)) &&
	       pubkey_fingerprint_valid(key->fingerprint, strlen(key->fingerprint)) &&
	       (!key->comment || !pubkey_has_ctrl(key->comment, strlen(key->comment)));
}

int authkeys_add_expiring(struct authkeys *ak, const char *keypair, const char *task_id, const struct pubkey *key,
			  int64_t expires)
{
	char option[48];
	if (!ak || !keypair || !task_id || !str_is_token(keypair, KEYPAIR_NAME_MAX) ||
	    !str_is_token(task_id, TASK_ID_MAX) || !pubkey_writable(key) ||
	    authkeysline_expiry_option(expires, option, sizeof(option)) < 0)
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
	if (last != SIZE_MAX && !authkeysline_ends_newline(&ak->lines[last]))
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
		const struct authkeys_line *l = &ak->lines[i];
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
	int r = authkeysline_pubkey(&ak->lines[i], &key);
	if (r < 0)
		return r == -EINVAL ? 0 : r;
	if (!authkeysline_span_eq(&ak->lines[m], ak->lines[m].marker.fingerprint, key.fingerprint))
		return 0;
	*k = i;
	return 1;
}

struct entries {
	struct authkeys_entry *v;
	size_t n;
};

static int entries_push(struct entries *e, const struct authkeys_line *m, const struct authkeys_line *k)
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
		.expires = authkeysline_expiry(k),
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
		int64_t expires = authkeysline_expiry(&ak->lines[k]);
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
