/* One call against the local sshd (proof.c): the context that carries the
 * target, the pinned host keys and the message, and the libssh session it
 * opens. Every session reads no ssh_config and no known_hosts, sends
 * nothing after the key exchange until the server's host key matched one
 * of this VM's own, and bounds every exchange by a timeout. */
#include <stdarg.h>

#include "proofctx.h"
#include "proofkey.h"

/* Fastest first; the tail only matters for an sshd hardened (FIPS) so
 * that it lacks curve25519 or chacha20. */
#define PROOF_KEX                                                              \
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"   \
	"ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group16-sha512," \
	"diffie-hellman-group14-sha256"
#define PROOF_CIPHERS                                                          \
	"chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes128-ctr,"     \
	"aes256-gcm@openssh.com,aes256-ctr"
/* What sshd says as it hangs up at MaxAuthTries. */
#define PROOF_TOO_MANY_FAILURES "Too many authentication failures"
#define PROOF_SLICE_MS 20

void proofctx_session_freep(ssh_session *s)
{
	if (!*s)
		return;
	ssh_disconnect(*s);
	ssh_free(*s);
	*s = NULL;
}

void proofctx_done(struct proof_ctx *c)
{
	for (size_t i = 0; i < c->pins.n; i++)
		ssh_key_free(c->pins.keys[i]);
	free(c->pins.keys);
	c->pins = (struct proof_pins){ 0 };
}

enum proof_status proofctx_fail(struct proof_ctx *c, enum proof_status st, const char *fmt, ...)
{
	if (!c->msg || c->msglen == 0)
		return st;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, c->msglen, fmt, ap);
	va_end(ap);
	return st;
}

enum proof_status proofctx_init(struct proof_ctx *c, const struct proof_target *t,
					char *msg, size_t msglen)
{
	*c = (struct proof_ctx){ .t = t, .msg = msg, .msglen = msglen };
	ssh_set_log_level(SSH_LOG_NOLOG);
	if (msg && msglen)
		msg[0] = '\0';
	if (!t || !t->address || !t->address[0] || !t->user || !t->user[0] || t->port < 1 ||
	    t->port > 65535 || t->timeout_ms <= 0)
		return proofctx_fail(c, PROOF_ERROR, "no sshd address, port, user or timeout");
	c->timeout_ms = t->timeout_ms;
	bool v6 = strchr(t->address, ':') != NULL;
	snprintf(c->ep, sizeof(c->ep), v6 ? "[%s]:%d" : "%s:%d", t->address, t->port);
	return PROOF_OK;
}

/* ---- host keys ---- */

/* Whether the public key file names a key type libssh knows. A type it
 * does not (OpenSSH 10's ssh-mldsa44-ed25519) is skipped unread: libssh
 * would only fail on it, and 0.10 leaks on the way. true when there is no
 * readable .pub: the private key is tried then. */
static bool proof_pubfile_type_known(const char *pubpath)
{
	_cleanup_fclose_ FILE *f = fopen(pubpath, "re");
	char type[128];
	if (!f || fscanf(f, "%127s", type) != 1)
		return true;
	return ssh_key_type_from_name(type) != SSH_KEYTYPE_UNKNOWN;
}

static ssh_key proof_load_hostkey(const char *path)
{
	size_t len = strlen(path) + sizeof(".pub");
	_cleanup_free_ char *pubpath = malloc(len);
	if (!pubpath)
		return NULL;
	snprintf(pubpath, len, "%s.pub", path);
	if (!proof_pubfile_type_known(pubpath))
		return NULL;

	ssh_key key = NULL;
	if (ssh_pki_import_pubkey_file(pubpath, &key) == SSH_OK)
		return key;
	_cleanup_key_ ssh_key priv = NULL;
	if (ssh_pki_import_privkey_file(path, NULL, proofkey_refuse_passphrase, NULL, &priv) != SSH_OK)
		return NULL;
	if (ssh_pki_export_privkey_to_pubkey(priv, &key) != SSH_OK)
		return NULL;
	return key;
}

static bool proof_pins_have(const struct proof_pins *p, enum ssh_keytypes_e type)
{
	for (size_t i = 0; i < p->n; i++)
		if (ssh_key_type(p->keys[i]) == type)
			return true;
	return false;
}

/* Offers sshd only algorithms whose key we hold, so that the key exchange
 * lands on a key that can be compared. */
static void proof_pins_algorithms(struct proof_pins *p)
{
	static const struct {
		enum ssh_keytypes_e type;
		const char *names;
	} pref[] = {
		{ SSH_KEYTYPE_ED25519, "ssh-ed25519" },
		{ SSH_KEYTYPE_ECDSA_P256, "ecdsa-sha2-nistp256" },
		{ SSH_KEYTYPE_ECDSA_P384, "ecdsa-sha2-nistp384" },
		{ SSH_KEYTYPE_ECDSA_P521, "ecdsa-sha2-nistp521" },
		{ SSH_KEYTYPE_RSA, "rsa-sha2-512,rsa-sha2-256" },
	};
	size_t len = 0;
	p->algorithms[0] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(pref); i++)
		if (proof_pins_have(p, pref[i].type))
			len += (size_t)snprintf(p->algorithms + len, sizeof(p->algorithms) - len,
						"%s%s", len ? "," : "", pref[i].names);
}

static enum proof_status proof_pins_load(struct proof_ctx *c)
{
	if (c->pins.n)
		return PROOF_OK;
	size_t n = c->t->hostkeys ? c->t->hostkeys->n : 0;
	c->pins.keys = calloc(n ? n : 1, sizeof(ssh_key));
	if (!c->pins.keys)
		return proofctx_fail(c, PROOF_ERROR, "out of memory loading host keys");
	for (size_t i = 0; i < n; i++) {
		ssh_key key = proof_load_hostkey(c->t->hostkeys->v[i]);
		if (key)
			c->pins.keys[c->pins.n++] = key;
	}
	proof_pins_algorithms(&c->pins);
	if (c->pins.algorithms[0] == '\0')
		return proofctx_fail(c, PROOF_ERROR, "none of sshd's %zu host key(s) is readable here", n);
	return PROOF_OK;
}

/* ---- sessions ---- */

static int proof_set_options(ssh_session s, const struct proof_ctx *c)
{
	int verbosity = SSH_LOG_NOLOG;
	bool process_config = false;
	unsigned int port = (unsigned int)c->t->port;
	long sec = c->timeout_ms / 1000;
	long usec = (long)(c->timeout_ms % 1000) * 1000;
	int nodelay = 1;
	const struct {
		enum ssh_options_e opt;
		const void *value;
	} opts[] = {
		{ SSH_OPTIONS_LOG_VERBOSITY, &verbosity },
		/* A Host block's HostName or ProxyCommand would send the credential elsewhere. */
		{ SSH_OPTIONS_PROCESS_CONFIG, &process_config },
		{ SSH_OPTIONS_HOST, c->t->address },
		{ SSH_OPTIONS_PORT, &port },
		{ SSH_OPTIONS_USER, c->t->user },
		{ SSH_OPTIONS_KNOWNHOSTS, "/dev/null" },
		{ SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null" },
		{ SSH_OPTIONS_TIMEOUT, &sec },
		{ SSH_OPTIONS_TIMEOUT_USEC, &usec },
		{ SSH_OPTIONS_KEY_EXCHANGE, PROOF_KEX },
		{ SSH_OPTIONS_HOSTKEYS, c->pins.algorithms },
		{ SSH_OPTIONS_CIPHERS_C_S, PROOF_CIPHERS },
		{ SSH_OPTIONS_CIPHERS_S_C, PROOF_CIPHERS },
		{ SSH_OPTIONS_COMPRESSION, "no" },
		{ SSH_OPTIONS_PUBLICKEY_ACCEPTED_TYPES, PROOF_PUBKEY_TYPES },
		{ SSH_OPTIONS_NODELAY, &nodelay },
	};
	for (size_t i = 0; i < ELEMENTSOF(opts); i++)
		if (ssh_options_set(s, opts[i].opt, opts[i].value) < 0)
			return -EINVAL;
	/* From a loopback address, connect from that same address: the kernel
	 * would pick 127.0.0.1 for any 127.x, while `sshd -T -C addr=` (Match
									 * Address) and PerSourcePenaltyExemptList judge [sshd] address. */
	if ((strncmp(c->t->address, "127.", 4) == 0 || streq(c->t->address, "::1")) &&
	    ssh_options_set(s, SSH_OPTIONS_BINDADDR, c->t->address) < 0)
		return -EINVAL;
	return 0;
}

static enum proof_status proof_check_hostkey(struct proof_ctx *c, ssh_session s)
{
	_cleanup_key_ ssh_key server = NULL;
	if (ssh_get_server_publickey(s, &server) != SSH_OK)
		return proofctx_fail(c, PROOF_UNREACHABLE, "sshd at %s sent no host key", c->ep);
	for (size_t i = 0; i < c->pins.n; i++)
		if (ssh_key_cmp(server, c->pins.keys[i], SSH_KEY_CMP_PUBLIC) == 0)
			return PROOF_OK;
	_cleanup_free_ char *fp = proofkey_fingerprint(server);
	return proofctx_fail(c, PROOF_HOSTKEY, "the server at %s presented host key %s, none of this VM's",
			     c->ep, fp ? fp : "(unknown)");
}

/* Connects and pins the host key: on success nothing was sent yet but the
 * key exchange. */
enum proof_status proofctx_open(struct proof_ctx *c, ssh_session *ret)
{
	enum proof_status st = proof_pins_load(c);
	if (st != PROOF_OK)
		return st;
	_cleanup_session_ ssh_session s = ssh_new();
	if (!s)
		return proofctx_fail(c, PROOF_ERROR, "out of memory opening an SSH session");
	if (proof_set_options(s, c) < 0)
		return proofctx_fail(c, PROOF_ERROR, "libssh refused the session options for %s", c->ep);
	if (ssh_connect(s) != SSH_OK)
		return proofctx_fail(c, PROOF_UNREACHABLE, "nothing answers on %s: %s", c->ep,
				     ssh_get_error(s));
	st = proof_check_hostkey(c, s);
	if (st != PROOF_OK)
		return st;
	*ret = TAKE_PTR(s);
	return PROOF_OK;
}

static int proof_auth_once(ssh_session s, enum proof_method m, ssh_key key, const char *password)
{
	switch (m) {
	case PROOF_METHOD_NONE:
		return ssh_userauth_none(s, NULL);
	case PROOF_METHOD_OFFER:
		return ssh_userauth_try_publickey(s, NULL, key);
	case PROOF_METHOD_SIGN:
		return ssh_userauth_publickey(s, NULL, key);
	case PROOF_METHOD_PASSWORD:
		return ssh_userauth_password(s, NULL, password);
	case PROOF_METHOD_KBDINT:
		return ssh_userauth_kbdint(s, NULL, NULL);
	}
	return SSH_AUTH_ERROR;
}

/* One authentication request, answered within the timeout. It runs in
 * short slices because libssh 0.10, once sshd hangs up mid-request (as it
 * does at MaxAuthTries), polls the closed socket until the whole timeout is
 * gone; an unanswered slice returns SSH_AUTH_AGAIN and calling again
 * resumes the same request. */
int proofctx_auth(const struct proof_ctx *c, ssh_session s, enum proof_method m, ssh_key key,
		  const char *password)
{
	int64_t deadline = now_ms() + c->timeout_ms;
	long zero = 0;
	ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &zero);
	for (;;) {
		int64_t left = deadline - now_ms();
		long slice = left < 1 ? 1 : left < PROOF_SLICE_MS ? (long)left : PROOF_SLICE_MS;
		long usec = slice * 1000;
		ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usec);
		int r = proof_auth_once(s, m, key, password);
		if (r != SSH_AUTH_AGAIN || !ssh_is_connected(s) || now_ms() >= deadline)
			return r;
	}
}

/* sshd hangs up instead of answering the refusal that reaches MaxAuthTries. */
bool proofctx_hung_up(ssh_session s, int r)
{
	return r != SSH_AUTH_SUCCESS && strstr(ssh_get_error(s), PROOF_TOO_MANY_FAILURES);
}

/* Folds an answer into SUCCESS, DENIED, or anything else for no answer. */
int proofctx_answer(ssh_session s, int r)
{
	return r == SSH_AUTH_PARTIAL || proofctx_hung_up(s, r) ? SSH_AUTH_DENIED : r;
}

enum proof_status proofctx_unanswered(struct proof_ctx *c, ssh_session s, const char *what)
{
	return proofctx_fail(c, PROOF_UNREACHABLE, "sshd at %s did not answer %s: %s", c->ep, what,
			     ssh_get_error(s));
}

/* "none" is answered with the methods sshd offers the user; as the first
 * request of a session it costs no try. */
enum proof_status proofctx_methods(struct proof_ctx *c, ssh_session s, int *methods)
{
	int r = proofctx_auth(c, s, PROOF_METHOD_NONE, NULL, NULL);
	if (r == SSH_AUTH_SUCCESS)
		return proofctx_fail(c, PROOF_REFUSED, "sshd at %s lets user %s in without any credential",
				     c->ep, c->t->user);
	if (r != SSH_AUTH_DENIED && r != SSH_AUTH_PARTIAL)
		return proofctx_unanswered(c, s, "the request for its methods");
	*methods = ssh_userauth_list(s, NULL);
	return PROOF_OK;
}
