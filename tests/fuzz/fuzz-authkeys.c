/* libFuzzer target for authkeys.c. The input is an authorized_keys text
 * and, after its last NUL byte, a small script of edits (an input without
 * NUL is all text, edited by a default script). Properties: the text
 * serialises back byte for byte; removing the managed entries takes only
 * markers and the key lines right under them; entries added and then
 * removed leave exactly what removing alone leaves (the input itself when
 * it has no marker); every edit keeps has_key and the text consistent. */
#include "authkeys.h"
#include "task.h"
#include "fuzz.h"

#define SCRIPT_MAX 16

/* Keys made with ssh-keygen for this target. */
static const char *const key_texts[] = {
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID92B4qLqpIVvrna1Tfc36Ww74gR2TpC5AQaGSiwBxmv "
	"alice@laptop",
	"ecdsa-sha2-nistp256 "
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHDDI6P6kyyW1DXhrs7Q"
	"buBc4LCQncr7A3pfepM5BlFkEWKTN3jTC3GS4B0c2rhLuoGLl50WBvfHgASn7ZFBAi0= ci-runner",
	"ecdsa-sha2-nistp384 "
	"AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBskZTO65qHXn6hQaz8y"
	"8ktYWGXSICPdGlNec8Z1H5RpkRUmRzdRF3a88pWVFXFsOSKjpI6Y4zjLS/pQzXjXChcEFqdL"
	"tFu6BGjLaDS44OyurCTPrBCbUSUzRaLnwiI15Q==",
	"ssh-rsa "
	"AAAAB3NzaC1yc2EAAAADAQABAAABAQC/OPlZz30yO5xpLmGlhfENe9SzBHO18QqDM4KyA+uV"
	"MKmw0fXTlbC54zdFJD1MbSad3gt1itR+vLu8tv2U3TV0eyCMxOdauXGig54/IEzOazZSydT6"
	"/xXTi4leh8HPUOp7v3rsxSEaoSGapy7aEGqS8/IuzSKkzvzkw1+T++oIHuDtmGmjvB61IeyP"
	"QZ57oz89ABfZBoubcHVR4AvZcmzBO+zYoIQ4i1iUKkViQtsbUur0MzSxmLSNcwcPND05ZQzN"
	"cWSdFh29NDmLhWPk7+Nl1uG2s44+LcBSKkkbOEXBqMuOpEysUT0qSdOwuwIlfEOpa7lWac8O"
	"pXT1oepkTsH1 bob rsa",
};
#define N_KEYS ELEMENTSOF(key_texts)

static const char *const names[] = { "kp1", "web.key", "ci_runner-2", "A" };
static const char *const task_ids[] = { "t-1", "aee8d2fe-5484-4753-9177-5a38dc15546c" };

/* One byte of script: the low two bits say what, the rest with what. */
enum op_kind {
	OP_ADD,
	OP_ADD_TOO,
	OP_REMOVE_KEY,
	OP_REMOVE_MANAGED,
};

struct op {
	enum op_kind kind;
	size_t key, name, task;
	bool all;	/* OP_REMOVE_MANAGED: names NULL */
};

static const uint8_t default_script[] = { 0x00, 0x15, 0x03 };

static struct pubkey keys[N_KEYS];

static void keys_load(void)
{
	static bool loaded;
	if (loaded)
		return;
	for (size_t i = 0; i < N_KEYS; i++)
		fuzz_check(pubkey_parse(key_texts[i], strlen(key_texts[i]), &keys[i]) == 0,
			   "the target's own keys parse");
	loaded = true;
}

static struct op op_decode(uint8_t b)
{
	return (struct op){
		.kind = (enum op_kind)(b & 3),
		.key = (size_t)(b >> 2) % N_KEYS,
		.name = (size_t)(b >> 4) % ELEMENTSOF(names),
		.task = (size_t)(b >> 6) % ELEMENTSOF(task_ids),
		.all = (b >> 6) & 1,
	};
}

static bool op_is_add(const struct op *op)
{
	return op->kind == OP_ADD || op->kind == OP_ADD_TOO;
}

static struct authkeys *parse(const char *text, size_t len)
{
	struct authkeys *ak = NULL;
	fuzz_check(authkeys_parse(text, len, &ak) == 0 && ak, "authkeys_parse takes any bytes");
	return ak;
}

static char *serialise(const struct authkeys *ak, size_t *len)
{
	char *s = NULL;
	fuzz_check(authkeys_serialise(ak, &s, len) == 0 && s, "authkeys_serialise succeeds");
	return s;
}

struct removed {
	struct pubkey *v;
	size_t n;
};

static void removed_free(struct removed *r)
{
	for (size_t i = 0; i < r->n; i++)
		pubkey_free(&r->v[i]);
	free(r->v);
	*r = (struct removed){ 0 };
}

static void remove_managed(struct authkeys *ak, const struct strv *sel, struct removed *out)
{
	fuzz_check(authkeys_remove_managed(ak, sel, &out->v, &out->n) == 0,
		   "authkeys_remove_managed succeeds");
	for (size_t i = 0; i < out->n; i++)
		fuzz_check(out->v[i].type && out->v[i].base64 && out->v[i].fingerprint,
			   "removed keys are whole keys");
}

static bool is_marker(const struct fuzz_line *l)
{
	return fuzz_has_prefix(l->p, l->len, AUTHKEYS_MARKER);
}

static bool is_key_line(const struct fuzz_line *l)
{
	static const char *const types[] = { "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp" };
	for (size_t i = 0; i < ELEMENTSOF(types); i++)
		if (memmem(l->p, l->len, types[i], strlen(types[i])))
			return true;
	return false;
}

static bool lines_equal(const struct fuzz_line *a, const struct fuzz_line *b)
{
	return fuzz_mem_eq(a->p, a->len, b->p, b->len);
}

/* Whether out is in with some lines taken away, each a marker or a key line
 * right under a marker taken away with it: a walk over in that tracks, for
 * every number of lines taken so far, whether the line before was a marker
 * that went. */
static bool removal_allowed(const char *in, size_t in_len, const char *out, size_t out_len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines a = fuzz_lines_split(in, in_len);
	_cleanup_(fuzz_lines_free) struct fuzz_lines b = fuzz_lines_split(out, out_len);
	if (b.n > a.n)
		return false;
	size_t d = a.n - b.n;
	_cleanup_(fuzz_freep) bool *cur = calloc(2 * (d + 1), sizeof(bool));
	_cleanup_(fuzz_freep) bool *next = calloc(2 * (d + 1), sizeof(bool));
	fuzz_oom(cur);
	fuzz_oom(next);
	cur[0] = true;
	for (size_t i = 0; i < a.n; i++) {
		bool marker = is_marker(&a.v[i]), key = is_key_line(&a.v[i]);
		memset(next, 0, 2 * (d + 1) * sizeof(bool));
		for (size_t k = 0; k <= d && k <= i; k++)
			for (size_t f = 0; f < 2; f++) {
				if (!cur[2 * k + f])
					continue;
				if (i - k < b.n && lines_equal(&a.v[i], &b.v[i - k]))
					next[2 * k] = true;
				if (k < d && (marker || (f && key)))
					next[2 * (k + 1) + marker] = true;
			}
		bool *t = cur;
		cur = next;
		next = t;
	}
	return cur[2 * d] || cur[2 * d + 1];
}

static bool has_marker_line(const char *text, size_t len)
{
	_cleanup_(fuzz_lines_free) struct fuzz_lines l = fuzz_lines_split(text, len);
	for (size_t i = 0; i < l.n; i++)
		if (is_marker(&l.v[i]))
			return true;
	return false;
}

/* The text with every managed entry removed, checked against the input. */
static char *check_remove_alone(const char *text, size_t len, size_t *out_len,
				struct removed *removed)
{
	struct authkeys *ak = parse(text, len);
	remove_managed(ak, NULL, removed);
	char *out = serialise(ak, out_len);
	authkeys_free(ak);
	fuzz_check(removal_allowed(text, len, out, *out_len),
		   "remove_managed removes only markers and the key line under a marker");
	if (!has_marker_line(text, len))
		fuzz_check(fuzz_mem_eq(out, *out_len, text, len) && removed->n == 0,
			   "remove_managed on a text without markers changes nothing");
	for (size_t i = 0; i < removed->n; i++)
		fuzz_check(memmem(text, len, removed->v[i].fingerprint,
				  strlen(removed->v[i].fingerprint)),
			   "a removed key's fingerprint is on a marker of the input");
	return out;
}

/* Adds one entry and checks that exactly its two lines were appended. */
static void do_add(struct authkeys *ak, const struct op *op)
{
	size_t before_len, after_len;
	_cleanup_free_ char *before = serialise(ak, &before_len);
	const struct pubkey *k = &keys[op->key];
	fuzz_check(authkeys_add(ak, names[op->name], task_ids[op->task], k) == 0,
		   "authkeys_add of a valid key succeeds");
	fuzz_check(authkeys_has_key(ak, k), "has_key is true after add");

	_cleanup_free_ char *after = serialise(ak, &after_len);
	_cleanup_free_ char *line = pubkey_format(k);
	_cleanup_free_ char *entry = NULL;
	fuzz_oom(line);
	fuzz_check(asprintf(&entry, "%s keypair=%s task=%s %s\n%s\n", AUTHKEYS_MARKER,
			    names[op->name], task_ids[op->task], k->fingerprint, line) > 0,
		   "out of memory");
	size_t n = strlen(entry);
	size_t nl = before_len > 0 && before[before_len - 1] != '\n';
	fuzz_check(after_len == before_len + nl + n && memcmp(after, before, before_len) == 0 &&
			   (!nl || after[before_len] == '\n') &&
			   memcmp(after + before_len + nl, entry, n) == 0,
		   "add appends its marker and key line, ending an unterminated last line");
}

/* Adds every entry the script adds, then removes all managed entries. */
static void check_add_then_remove(const char *text, size_t len, const struct op *ops, size_t n_ops,
				  const char *alone, size_t alone_len,
				  const struct removed *alone_removed)
{
	struct authkeys *ak = parse(text, len);
	size_t adds = 0, with_len, out_len;
	for (size_t i = 0; i < n_ops; i++)
		if (op_is_add(&ops[i])) {
			do_add(ak, &ops[i]);
			adds++;
		}
	_cleanup_free_ char *with = serialise(ak, &with_len);
	_cleanup_(removed_free) struct removed removed = { 0 };
	remove_managed(ak, NULL, &removed);
	_cleanup_free_ char *out = serialise(ak, &out_len);
	authkeys_free(ak);
	fuzz_check(fuzz_mem_eq(out, out_len, alone, alone_len),
		   "add then remove_managed(NULL) leaves what remove_managed(NULL) alone leaves");
	fuzz_check(removed.n == alone_removed->n + adds,
		   "remove_managed(NULL) hands back every added key");
	for (size_t i = 0, j = alone_removed->n; i < n_ops; i++)
		if (op_is_add(&ops[i]))
			fuzz_check(pubkey_equal(&removed.v[j++], &keys[ops[i].key]),
				   "added keys come back in the order they were added");

	/* The same after a trip through the file: the only difference allowed
	 * is the newline add put after an unterminated last line. */
	ak = parse(with, with_len);
	_cleanup_(removed_free) struct removed again = { 0 };
	remove_managed(ak, NULL, &again);
	_cleanup_free_ char *reread = NULL;
	size_t reread_len;
	reread = serialise(ak, &reread_len);
	authkeys_free(ak);
	bool unterminated = len > 0 && text[len - 1] != '\n';
	fuzz_check(fuzz_mem_eq(reread, reread_len, alone, alone_len) ||
			   (adds > 0 && unterminated && reread_len == alone_len + 1 &&
			    memcmp(reread, alone, alone_len) == 0 && reread[alone_len] == '\n'),
		   "add, write, read, remove_managed(NULL) gives back the input (a newline aside)");
}

static void do_remove_key(struct authkeys *ak, const struct op *op)
{
	const struct pubkey *k = &keys[op->key];
	bool had = authkeys_has_key(ak, k);
	int r = authkeys_remove_key(ak, k);
	fuzz_check(r >= 0, "authkeys_remove_key succeeds");
	fuzz_check(had == (r > 0), "remove_key removes a line exactly when has_key was true");
	fuzz_check(!authkeys_has_key(ak, k), "has_key is false after remove_key");
}

static void do_remove_managed(struct authkeys *ak, const struct op *op)
{
	_cleanup_strv_ struct strv sel = { 0 };
	const struct strv *names_arg = NULL;
	if (!op->all) {
		fuzz_check(strv_push(&sel, names[op->name]) == 0, "out of memory");
		names_arg = &sel;
	}
	_cleanup_(removed_free) struct removed first = { 0 };
	_cleanup_(removed_free) struct removed second = { 0 };
	size_t a_len, b_len;
	remove_managed(ak, names_arg, &first);
	_cleanup_free_ char *a = serialise(ak, &a_len);
	remove_managed(ak, names_arg, &second);
	_cleanup_free_ char *b = serialise(ak, &b_len);
	fuzz_check(second.n == 0 && fuzz_mem_eq(a, a_len, b, b_len),
		   "remove_managed a second time changes nothing");
}

/* The whole script, mixed edits and all. */
static void check_script(const char *text, size_t len, const struct op *ops, size_t n_ops)
{
	struct authkeys *ak = parse(text, len);
	for (size_t i = 0; i < n_ops; i++) {
		if (op_is_add(&ops[i]))
			do_add(ak, &ops[i]);
		else if (ops[i].kind == OP_REMOVE_KEY)
			do_remove_key(ak, &ops[i]);
		else
			do_remove_managed(ak, &ops[i]);
		size_t s_len, again_len;
		_cleanup_free_ char *s = serialise(ak, &s_len);
		struct authkeys *re = parse(s, s_len);
		_cleanup_free_ char *again = serialise(re, &again_len);
		authkeys_free(re);
		fuzz_check(fuzz_mem_eq(s, s_len, again, again_len),
			   "an edited text reads back as itself");
	}
	authkeys_free(ak);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const uint8_t *nul = size > 0 ? memrchr(data, '\0', size) : NULL;
	size_t len = nul ? (size_t)(nul - data) : size;
	const uint8_t *script = nul ? nul + 1 : default_script;
	size_t script_len = nul ? size - len - 1 : sizeof(default_script);
	struct op ops[SCRIPT_MAX];
	size_t n_ops = 0;

	keys_load();
	for (size_t i = 0; i < script_len && n_ops < SCRIPT_MAX; i++)
		ops[n_ops++] = op_decode(script[i]);

	struct authkeys *ak = parse(text, len);
	size_t out_len;
	_cleanup_free_ char *out = serialise(ak, &out_len);
	authkeys_free(ak);
	fuzz_check(fuzz_mem_eq(out, out_len, text, len), "serialise(parse(x)) == x");

	_cleanup_(removed_free) struct removed removed = { 0 };
	size_t alone_len;
	_cleanup_free_ char *alone = check_remove_alone(text, len, &alone_len, &removed);
	check_add_then_remove(text, len, ops, n_ops, alone, alone_len, &removed);
	check_script(text, len, ops, n_ops);
	return 0;
}
