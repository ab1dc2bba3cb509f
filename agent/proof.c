/* libssh against the local sshd: proves a credential before a change and
 * probes the live sshd after it; also the plain TCP check that something
 * listens on a port. The session itself is proofctx.c's, the keys
 * proofkey.c's. */
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "proof.h"
#include "proofctx.h"
#include "proofkey.h"

/* OpenSSH hangs up when refusals reach MaxAuthTries (6 by default); a key
 * it accepts (PK_OK) and a first "none" do not count. */
#define PROOF_DENIALS_PER_SESSION 4
#define PROOF_KBDINT_ROUNDS 4
#define PROOF_BACKOFF_FIRST_MS 10
#define PROOF_BACKOFF_MAX_MS 200
#define PROOF_PASS_MIN_TIMEOUT_MS 1000
/* How long a password answer may take once sshd has answered the request
 * for its methods (so it is alive and speaking): a refusal comes only after
 * PAM's failure delay (pam_unix 2 s, pam_faildelay 3 s on Debian), and on a
 * loaded or emulated VM well past a 5 s connect_timeout. */
#define PROOF_PASSWORD_ANSWER_MS 20000

struct proof_query {
	ssh_key key;
	const char *fingerprint;
	bool accept;
};

struct proof_queries {
	struct proof_query *v;
	size_t n;
};

static void proof_queries_free(struct proof_queries *q)
{
	for (size_t i = 0; i < q->n; i++)
		ssh_key_free(q->v[i].key);
	free(q->v);
	*q = (struct proof_queries){ 0 };
}

/* ---- credential ---- */

static enum proof_status proof_keypair(struct proof_ctx *c, const struct secret *cred,
				       struct pubkey *pub)
{
	_cleanup_key_ ssh_key key = NULL;
	int r = proofkey_import(cred, &key);
	if (r == -EKEYREJECTED)
		return proofctx_fail(c, PROOF_BAD_CREDENTIAL,
				     "the private key is encrypted or malformed; an unencrypted key is needed");
	if (r < 0)
		return proofctx_fail(c, PROOF_BAD_CREDENTIAL,
				     "the private key does not parse (OpenSSH or PEM RSA, ECDSA, Ed25519)");
	_cleanup_(proofkey_pubkey_clear) struct pubkey found = { 0 };
	if (proofkey_export_pubkey(key, &found) < 0)
		return proofctx_fail(c, PROOF_ERROR, "out of memory exporting the public key");

	_cleanup_session_ ssh_session s = NULL;
	enum proof_status st = proofctx_open(c, &s);
	if (st != PROOF_OK)
		return st;
	r = proofctx_answer(s, proofctx_auth(c, s, PROOF_METHOD_SIGN, key, NULL));
	if (r == SSH_AUTH_DENIED)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s refused the private key %s for user %s",
				     c->ep, found.fingerprint, c->t->user);
	if (r != SSH_AUTH_SUCCESS)
		return proofctx_unanswered(c, s, "the key authentication");
	proofctx_fail(c, PROOF_OK, "sshd at %s accepted the private key %s for user %s", c->ep,
		      found.fingerprint, c->t->user);
	if (pub) {
		*pub = found;
		found = (struct pubkey){ 0 };
	}
	return PROOF_OK;
}

/* Answers every hidden prompt with the password and every echoed one
 * (a user name, a banner question) with nothing. */
static int proof_kbdint(const struct proof_ctx *c, ssh_session s, const char *password)
{
	int r = proofctx_auth(c, s, PROOF_METHOD_KBDINT, NULL, NULL);
	for (int round = 0; r == SSH_AUTH_INFO && round < PROOF_KBDINT_ROUNDS; round++) {
		int n = ssh_userauth_kbdint_getnprompts(s);
		for (int i = 0; i < n; i++) {
			char echo = 0;
			if (!ssh_userauth_kbdint_getprompt(s, (unsigned int)i, &echo))
				return SSH_AUTH_ERROR;
			if (ssh_userauth_kbdint_setanswer(s, (unsigned int)i, echo ? "" : password) < 0)
				return SSH_AUTH_ERROR;
		}
		r = proofctx_auth(c, s, PROOF_METHOD_KBDINT, NULL, NULL);
	}
	return r == SSH_AUTH_INFO ? SSH_AUTH_DENIED : r;
}

static enum proof_status proof_password(struct proof_ctx *c, const struct secret *cred)
{
	_cleanup_session_ ssh_session s = NULL;
	enum proof_status st = proofctx_open(c, &s);
	if (st != PROOF_OK)
		return st;
	int methods = 0;
	st = proofctx_methods(c, s, &methods);
	if (st != PROOF_OK)
		return st;

	int r;
	if (c->timeout_ms < PROOF_PASSWORD_ANSWER_MS)
		c->timeout_ms = PROOF_PASSWORD_ANSWER_MS;
	if (methods & SSH_AUTH_METHOD_PASSWORD)
		r = proofctx_auth(c, s, PROOF_METHOD_PASSWORD, NULL, cred->data);
	else if (methods & SSH_AUTH_METHOD_INTERACTIVE)
		r = proof_kbdint(c, s, cred->data);
	else
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s offers no password login for user %s",
				     c->ep, c->t->user);
	r = proofctx_answer(s, r);
	if (r == SSH_AUTH_DENIED)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s refused the password for user %s", c->ep,
				     c->t->user);
	if (r != SSH_AUTH_SUCCESS)
		return proofctx_unanswered(c, s, "the password authentication");
	return proofctx_fail(c, PROOF_OK, "sshd at %s accepted the password for user %s", c->ep,
			     c->t->user);
}

enum proof_status proof_credential(const struct proof_target *target, enum auth_type type,
				   const struct secret *credential, struct pubkey *pub, char *msg,
				   size_t msglen)
{
	if (pub)
		*pub = (struct pubkey){ 0 };
	_cleanup_(proofctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proofctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	if (!credential || !credential->data || credential->len == 0 ||
	    strlen(credential->data) != credential->len)
		return proofctx_fail(&c, PROOF_BAD_CREDENTIAL, "the credential is empty or holds a NUL byte");
	switch (type) {
	case AUTH_KEYPAIR:
		return proof_keypair(&c, credential, pub);
	case AUTH_PASSWORD:
		return proof_password(&c, credential);
	case AUTH_NONE:
		break;
	}
	return proofctx_fail(&c, PROOF_ERROR, "no credential type to prove");
}

/* ---- probe ---- */

/* For a key type outside PROOF_PUBKEY_TYPES libssh answers DENIED without
 * asking, and a check that sshd refuses it would pass unasked. */
static bool proof_type_askable(const char *type)
{
	static const char types[] = PROOF_PUBKEY_TYPES;
	size_t n = strlen(type);
	for (const char *p = types; (p = strstr(p, type)); p += n)
		if ((p == types || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* The keys to ask about, the ones to accept first. */
static enum proof_status proof_queries_build(struct proof_ctx *c, const struct proof_expect *e,
					     struct proof_queries *q)
{
	size_t n = e->n_accept + e->n_refuse;
	q->v = calloc(n ? n : 1, sizeof(*q->v));
	if (!q->v)
		return proofctx_fail(c, PROOF_ERROR, "out of memory preparing the probe");
	q->n = n;
	for (size_t i = 0; i < n; i++) {
		bool accept = i < e->n_accept;
		const struct pubkey *pub = accept ? &e->accept[i] : &e->refuse[i - e->n_accept];
		enum ssh_keytypes_e type = pub->type ? ssh_key_type_from_name(pub->type) : SSH_KEYTYPE_UNKNOWN;
		if (type == SSH_KEYTYPE_UNKNOWN || !pub->base64 || !proof_type_askable(pub->type) ||
		    ssh_pki_import_pubkey_base64(pub->base64, type, &q->v[i].key) != SSH_OK)
			return proofctx_fail(c, PROOF_ERROR, "cannot ask sshd about the %s key %s",
					     pub->type ? pub->type : "untyped",
					  pub->fingerprint ? pub->fingerprint : "to probe");
		q->v[i].fingerprint = pub->fingerprint ? pub->fingerprint : pub->base64;
		q->v[i].accept = accept;
	}
	return PROOF_OK;
}

static enum proof_status proof_check_password(struct proof_ctx *c, ssh_session s, int want)
{
	int methods = 0;
	enum proof_status st = proofctx_methods(c, s, &methods);
	if (st != PROOF_OK)
		return st;
	bool password = methods & SSH_AUTH_METHOD_PASSWORD;
	bool kbdint = methods & SSH_AUTH_METHOD_INTERACTIVE;
	if (want && !password)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s does not offer password login for user %s",
				     c->ep, c->t->user);
	if (!want && (password || kbdint))
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s still offers %s login for user %s", c->ep,
				     password ? "password" : "keyboard-interactive", c->t->user);
	return PROOF_OK;
}

/* Asks about one key. When sshd hangs up for too many failures, that was
 * its refusal, and its MaxAuthTries is below ours: later sessions stay
 * under it (a limit of 1 leaves one refusal per session). */
static enum proof_status proof_check_key(struct proof_ctx *c, ssh_session *s,
					 const struct proof_query *q, unsigned int *denials,
					 unsigned int *budget)
{
	int r = proofctx_auth(c, *s, PROOF_METHOD_OFFER, q->key, NULL);
	if (proofctx_hung_up(*s, r)) {
		*budget = *denials ? *denials : 1;
		proofctx_session_freep(s);
		r = SSH_AUTH_DENIED;
	}
	if (r == SSH_AUTH_DENIED)
		(*denials)++;
	else if (r != SSH_AUTH_SUCCESS)
		return proofctx_unanswered(c, *s, "the key query");
	if (q->accept && r != SSH_AUTH_SUCCESS)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s does not accept new key %s for user %s",
				     c->ep, q->fingerprint, c->t->user);
	if (!q->accept && r == SSH_AUTH_SUCCESS)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s still accepts removed key %s for user %s",
				     c->ep, q->fingerprint, c->t->user);
	return PROOF_OK;
}

static enum proof_status proof_probe_pass(struct proof_ctx *c, const struct proof_expect *e,
					  const struct proof_queries *q)
{
	_cleanup_session_ ssh_session s = NULL;
	enum proof_status st = proofctx_open(c, &s);
	if (st != PROOF_OK)
		return st;
	if (e->password != -1) {
		st = proof_check_password(c, s, e->password);
		if (st != PROOF_OK)
			return st;
	}
	unsigned int denials = 0, budget = PROOF_DENIALS_PER_SESSION;
	for (size_t i = 0; i < q->n; i++) {
		if (!s || denials >= budget) {
			proofctx_session_freep(&s);
			denials = 0;
			st = proofctx_open(c, &s);
			if (st != PROOF_OK)
				return st;
		}
		st = proof_check_key(c, &s, &q->v[i], &denials, &budget);
		if (st != PROOF_OK)
			return st;
	}
	return proofctx_fail(c, PROOF_OK, "sshd at %s answers as expected for user %s", c->ep,
			     c->t->user);
}

static void proof_sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Near the deadline a pass gets less time, but never less than a loaded
 * loopback handshake needs: a timeout there would hide sshd's real answer. */
static int proof_pass_timeout(const struct proof_target *t, int64_t deadline_ms)
{
	int64_t left = deadline_ms - now_ms();
	int least = t->timeout_ms < PROOF_PASS_MIN_TIMEOUT_MS ? t->timeout_ms : PROOF_PASS_MIN_TIMEOUT_MS;
	if (left < least)
		return least;
	return left < t->timeout_ms ? (int)left : t->timeout_ms;
}

enum proof_status proof_probe(const struct proof_target *target, const struct proof_expect *expect,
			      int64_t deadline_ms, char *msg, size_t msglen)
{
	_cleanup_(proofctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proofctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	if (!expect)
		return proofctx_fail(&c, PROOF_ERROR, "nothing to probe");
	_cleanup_(proof_queries_free) struct proof_queries q = { 0 };
	st = proof_queries_build(&c, expect, &q);
	if (st != PROOF_OK)
		return st;

	int64_t backoff = PROOF_BACKOFF_FIRST_MS;
	for (;;) {
		c.timeout_ms = proof_pass_timeout(target, deadline_ms);
		st = proof_probe_pass(&c, expect, &q);
		if (st == PROOF_OK || st == PROOF_HOSTKEY || st == PROOF_ERROR)
			return st;
		int64_t left = deadline_ms - now_ms();
		if (left <= 0)
			return st;
		proof_sleep_ms(backoff < left ? backoff : left);
		backoff = backoff * 2 > PROOF_BACKOFF_MAX_MS ? PROOF_BACKOFF_MAX_MS : backoff * 2;
	}
}

/* ---- port ---- */

static bool proof_connect_addr(const struct addrinfo *ai, int64_t deadline_ms)
{
	_cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return true;
	if (errno != EINPROGRESS)
		return false;
	for (;;) {
		int64_t left = deadline_ms - now_ms();
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r = poll(&p, 1, (int)left);
		if (r > 0)
			break;
		if (r == 0 || errno != EINTR)
			return false;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return false;
	return err == 0;
}

static bool proof_connect_literal(const char *address, int port, int64_t deadline_ms)
{
	char service[8];
	snprintf(service, sizeof(service), "%d", port);
	const struct addrinfo hints = {
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res = NULL;
	if (getaddrinfo(address, service, &hints, &res) != 0)
		return false;
	bool open = false;
	for (const struct addrinfo *ai = res; ai && !open; ai = ai->ai_next)
		open = proof_connect_addr(ai, deadline_ms);
	freeaddrinfo(res);
	return open;
}

bool proof_port_open(const char *address, int port, int timeout_ms)
{
	if (!address || port < 1 || port > 65535 || timeout_ms < 0)
		return false;
	int64_t deadline = now_ms() + timeout_ms;
	/* Spelled out so that no resolver (NSS, DNS) is asked. */
	if (streq(address, "localhost"))
		return proof_connect_literal("127.0.0.1", port, deadline) ||
		       proof_connect_literal("::1", port, deadline);
	return proof_connect_literal(address, port, deadline);
}

/* ---- handshake ---- */

enum proof_status proof_handshake(const struct proof_target *target, char *msg, size_t msglen)
{
	_cleanup_(proofctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proofctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	_cleanup_session_ ssh_session s = NULL;
	return proofctx_open(&c, &s);
}
