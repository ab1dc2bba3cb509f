/* libssh against the local sshd: proves a credential before a change and
 * probes the live sshd after it. Every session reads no ssh_config and no
 * known_hosts, sends nothing after the key exchange until the server's host
 * key matched one of this VM's own, and bounds every exchange by a timeout. */
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>

#include <libssh/libssh.h>

#include "proof.h"

/* Fastest first; the tail only matters for an sshd hardened (FIPS) so
 * that it lacks curve25519 or chacha20. */
#define PROOF_KEX                                                              \
	"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"   \
	"ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group16-sha512," \
	"diffie-hellman-group14-sha256"
#define PROOF_CIPHERS                                                          \
	"chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes128-ctr,"     \
	"aes256-gcm@openssh.com,aes256-ctr"
/* Wider than libssh's default: libssh answers DENIED by itself for a key
 * type it will not use, and a probe must hear sshd's answer, not libssh's. */
#define PROOF_PUBKEY_TYPES                                                     \
	"ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,"                 \
	"ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,"                      \
	"sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256,ssh-rsa"

/* OpenSSH hangs up when refusals reach MaxAuthTries (6 by default); a key
 * it accepts (PK_OK) and a first "none" do not count. */
#define PROOF_DENIALS_PER_SESSION 4
#define PROOF_TOO_MANY_FAILURES "Too many authentication failures"
#define PROOF_KBDINT_ROUNDS 4
#define PROOF_BACKOFF_FIRST_MS 10
#define PROOF_BACKOFF_MAX_MS 200
#define PROOF_PASS_MIN_TIMEOUT_MS 1000
#define PROOF_SLICE_MS 20
/* How long a password answer may take once sshd has answered the request
 * for its methods (so it is alive and speaking): a refusal comes only after
 * PAM's failure delay (pam_unix 2 s, pam_faildelay 3 s on Debian), and on a
 * loaded or emulated VM well past a 5 s connect_timeout. */
#define PROOF_PASSWORD_ANSWER_MS 20000

#define OPENSSH_KEY_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define OPENSSH_KEY_MAGIC "openssh-key-v1"

/* The public halves of sshd's host keys, and the host key algorithms that
 * can be checked against them, most preferred first. */
struct proof_pins {
	ssh_key *keys;
	size_t n;
	char algorithms[256];
};

/* One call: where to connect, what to pin, where the message goes. */
struct proof_ctx {
	const struct proof_target *t;
	struct proof_pins pins;
	char ep[128];		/* "127.0.0.1:22", "[::1]:22" */
	int timeout_ms;		/* per exchange; the probe shortens it near its deadline */
	char *msg;
	size_t msglen;
};

struct proof_query {
	ssh_key key;
	const char *fingerprint;
	bool accept;
};

struct proof_queries {
	struct proof_query *v;
	size_t n;
};

enum proof_method {
	PROOF_METHOD_NONE,
	PROOF_METHOD_OFFER,	/* would sshd accept this public key: PK_OK or refusal */
	PROOF_METHOD_SIGN,	/* authenticate with the private key */
	PROOF_METHOD_PASSWORD,
	PROOF_METHOD_KBDINT,
};

static void proof_session_freep(ssh_session *s)
{
	if (!*s)
		return;
	ssh_disconnect(*s);
	ssh_free(*s);
	*s = NULL;
}

static void proof_key_freep(ssh_key *k)
{
	ssh_key_free(*k);
	*k = NULL;
}

/* Frees what proof_export_pubkey filled in (pubkey_free's fields), so that
 * a failure never hands the caller half a key. */
static void proof_pubkey_clear(struct pubkey *k)
{
	free(k->type);
	free(k->base64);
	free(k->comment);
	free(k->fingerprint);
	*k = (struct pubkey){ 0 };
}

static void proof_ctx_done(struct proof_ctx *c)
{
	for (size_t i = 0; i < c->pins.n; i++)
		ssh_key_free(c->pins.keys[i]);
	free(c->pins.keys);
	c->pins = (struct proof_pins){ 0 };
}

static void proof_queries_free(struct proof_queries *q)
{
	for (size_t i = 0; i < q->n; i++)
		ssh_key_free(q->v[i].key);
	free(q->v);
	*q = (struct proof_queries){ 0 };
}

#define _cleanup_session_ _cleanup_(proof_session_freep)
#define _cleanup_key_ _cleanup_(proof_key_freep)

static enum proof_status proof_fail(struct proof_ctx *c, enum proof_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum proof_status proof_fail(struct proof_ctx *c, enum proof_status st, const char *fmt, ...)
{
	if (!c->msg || c->msglen == 0)
		return st;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, c->msglen, fmt, ap);
	va_end(ap);
	return st;
}

static enum proof_status proof_ctx_init(struct proof_ctx *c, const struct proof_target *t,
					char *msg, size_t msglen)
{
	*c = (struct proof_ctx){ .t = t, .msg = msg, .msglen = msglen };
	ssh_set_log_level(SSH_LOG_NOLOG);
	if (msg && msglen)
		msg[0] = '\0';
	if (!t || !t->address || !t->address[0] || !t->user || !t->user[0] || t->port < 1 ||
	    t->port > 65535 || t->timeout_ms <= 0)
		return proof_fail(c, PROOF_ERROR, "no sshd address, port, user or timeout");
	c->timeout_ms = t->timeout_ms;
	bool v6 = strchr(t->address, ':') != NULL;
	snprintf(c->ep, sizeof(c->ep), v6 ? "[%s]:%d" : "%s:%d", t->address, t->port);
	return PROOF_OK;
}

/* libssh asks for a passphrase only for an encrypted key; refusing it keeps
 * any KDF from running and any terminal from being prompted. */
/* NOLINTNEXTLINE(readability-non-const-parameter): libssh's ssh_auth_callback type */
static int proof_refuse_passphrase(const char *prompt, char *buf, size_t len, int echo,
				   int verify, void *userdata)
{
	(void)prompt;
	(void)buf;
	(void)len;
	(void)echo;
	(void)verify;
	(void)userdata;
	return -1;
}

static char *proof_fingerprint(ssh_key key)
{
	unsigned char *hash = NULL;
	size_t hlen = 0;
	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) < 0)
		return NULL;
	char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	ssh_clean_pubkey_hash(&hash);
	if (!fp)
		return NULL;
	char *ret = strdup(fp);
	ssh_string_free_char(fp);
	return ret;
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
	if (ssh_pki_import_privkey_file(path, NULL, proof_refuse_passphrase, NULL, &priv) != SSH_OK)
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
		return proof_fail(c, PROOF_ERROR, "out of memory loading host keys");
	for (size_t i = 0; i < n; i++) {
		ssh_key key = proof_load_hostkey(c->t->hostkeys->v[i]);
		if (key)
			c->pins.keys[c->pins.n++] = key;
	}
	proof_pins_algorithms(&c->pins);
	if (c->pins.algorithms[0] == '\0')
		return proof_fail(c, PROOF_ERROR, "none of sshd's %zu host key(s) is readable here", n);
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
		return proof_fail(c, PROOF_UNREACHABLE, "sshd at %s sent no host key", c->ep);
	for (size_t i = 0; i < c->pins.n; i++)
		if (ssh_key_cmp(server, c->pins.keys[i], SSH_KEY_CMP_PUBLIC) == 0)
			return PROOF_OK;
	_cleanup_free_ char *fp = proof_fingerprint(server);
	return proof_fail(c, PROOF_HOSTKEY, "the server at %s presented host key %s, none of this VM's",
			  c->ep, fp ? fp : "(unknown)");
}

/* Connects and pins the host key: on success nothing was sent yet but the
 * key exchange. */
static enum proof_status proof_open(struct proof_ctx *c, ssh_session *ret)
{
	enum proof_status st = proof_pins_load(c);
	if (st != PROOF_OK)
		return st;
	_cleanup_session_ ssh_session s = ssh_new();
	if (!s)
		return proof_fail(c, PROOF_ERROR, "out of memory opening an SSH session");
	if (proof_set_options(s, c) < 0)
		return proof_fail(c, PROOF_ERROR, "libssh refused the session options for %s", c->ep);
	if (ssh_connect(s) != SSH_OK)
		return proof_fail(c, PROOF_UNREACHABLE, "nothing answers on %s: %s", c->ep,
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
static int proof_auth(const struct proof_ctx *c, ssh_session s, enum proof_method m, ssh_key key,
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
static bool proof_hung_up(ssh_session s, int r)
{
	return r != SSH_AUTH_SUCCESS && strstr(ssh_get_error(s), PROOF_TOO_MANY_FAILURES);
}

/* Folds an answer into SUCCESS, DENIED, or anything else for no answer. */
static int proof_answer(ssh_session s, int r)
{
	return r == SSH_AUTH_PARTIAL || proof_hung_up(s, r) ? SSH_AUTH_DENIED : r;
}

static enum proof_status proof_unanswered(struct proof_ctx *c, ssh_session s, const char *what)
{
	return proof_fail(c, PROOF_UNREACHABLE, "sshd at %s did not answer %s: %s", c->ep, what,
			  ssh_get_error(s));
}

/* "none" is answered with the methods sshd offers the user; as the first
 * request of a session it costs no try. */
static enum proof_status proof_methods(struct proof_ctx *c, ssh_session s, int *methods)
{
	int r = proof_auth(c, s, PROOF_METHOD_NONE, NULL, NULL);
	if (r == SSH_AUTH_SUCCESS)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s lets user %s in without any credential",
				  c->ep, c->t->user);
	if (r != SSH_AUTH_DENIED && r != SSH_AUTH_PARTIAL)
		return proof_unanswered(c, s, "the request for its methods");
	*methods = ssh_userauth_list(s, NULL);
	return PROOF_OK;
}

/* ---- private key ---- */

static int proof_base64_value(char c)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(alphabet, c) : NULL;
	return p ? (int)(p - alphabet) : -1;
}

/* Decodes at most max bytes from the start of a base64 body, skipping
 * white space; stops at the first character that is not base64. */
static size_t proof_base64_prefix(const char *s, unsigned char *out, size_t max)
{
	unsigned int acc = 0;
	int bits = 0;
	size_t n = 0;
	for (; *s && n < max; s++) {
		if (*s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')
			continue;
		int v = proof_base64_value(*s);
		if (v < 0)
			break;
		acc = ((acc << 6) | (unsigned int)v) & 0xffffU;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)((acc >> bits) & 0xffU);
		}
	}
	return n;
}

/* Whether the SSH string (uint32 length, bytes) at *off is want. */
static bool proof_sshstr_is(const unsigned char *buf, size_t len, size_t *off, const char *want)
{
	if (len - *off < 4)
		return false;
	const unsigned char *p = buf + *off;
	size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | (size_t)p[3];
	if (n > len - *off - 4)
		return false;
	*off += 4 + n;
	return n == strlen(want) && memcmp(p + 4, want, n) == 0;
}

/* An OpenSSH key needs no passphrase when its cipher and KDF are "none".
 * Anything else is refused here, before libssh sees it: the bcrypt round
 * count comes from the task, so running it is the sender's choice of CPU. */
static bool proof_openssh_plain(const char *text)
{
	const char *body = strstr(text, OPENSSH_KEY_BEGIN);
	if (!body)
		return false;
	unsigned char buf[192];
	size_t len = proof_base64_prefix(body + strlen(OPENSSH_KEY_BEGIN), buf, sizeof(buf));
	size_t off = strlen(OPENSSH_KEY_MAGIC) + 1;
	if (len < off || memcmp(buf, OPENSSH_KEY_MAGIC, off) != 0)
		return false;
	/* ciphername, then kdfname */
	bool cipher_none = proof_sshstr_is(buf, len, &off, "none");
	return cipher_none && proof_sshstr_is(buf, len, &off, "none");
}

/* PEM encryption shows in the armour: the legacy Proc-Type/DEK-Info
 * headers, or PKCS#8's own label (PBKDF2 with a count from the file). */
static bool proof_pem_encrypted(const char *text)
{
	return strstr(text, "Proc-Type:") || strstr(text, "DEK-Info:") ||
	       strstr(text, "ENCRYPTED PRIVATE KEY");
}

static enum proof_status proof_import_privkey(struct proof_ctx *c, const struct secret *cred,
					      ssh_key *ret)
{
	const char *text = cred->data + strspn(cred->data, " \t\r\n");
	bool openssh = strstr(text, OPENSSH_KEY_BEGIN) != NULL;
	if (openssh ? !proof_openssh_plain(text) : proof_pem_encrypted(text))
		return proof_fail(c, PROOF_BAD_CREDENTIAL,
				  "the private key is encrypted or malformed; an unencrypted key is needed");
	if (ssh_pki_import_privkey_base64(text, NULL, proof_refuse_passphrase, NULL, ret) != SSH_OK)
		return proof_fail(c, PROOF_BAD_CREDENTIAL,
				  "the private key does not parse (OpenSSH or PEM RSA, ECDSA, Ed25519)");
	return PROOF_OK;
}

static int proof_export_pubkey(ssh_key priv, struct pubkey *out)
{
	_cleanup_key_ ssh_key pub = NULL;
	if (ssh_pki_export_privkey_to_pubkey(priv, &pub) != SSH_OK)
		return -ENOMEM;
	char *b64 = NULL;
	if (ssh_pki_export_pubkey_base64(pub, &b64) != SSH_OK)
		return -ENOMEM;
	out->base64 = strdup(b64);
	ssh_string_free_char(b64);
	const char *type = ssh_key_type_to_char(ssh_key_type(pub));
	out->type = type ? strdup(type) : NULL;
	out->comment = NULL;
	out->fingerprint = proof_fingerprint(pub);
	if (!out->base64 || !out->type || !out->fingerprint)
		return -ENOMEM;
	return 0;
}

/* ---- credential ---- */

static enum proof_status proof_keypair(struct proof_ctx *c, const struct secret *cred,
				       struct pubkey *pub)
{
	_cleanup_key_ ssh_key key = NULL;
	enum proof_status st = proof_import_privkey(c, cred, &key);
	if (st != PROOF_OK)
		return st;
	_cleanup_(proof_pubkey_clear) struct pubkey found = { 0 };
	if (proof_export_pubkey(key, &found) < 0)
		return proof_fail(c, PROOF_ERROR, "out of memory exporting the public key");

	_cleanup_session_ ssh_session s = NULL;
	st = proof_open(c, &s);
	if (st != PROOF_OK)
		return st;
	int r = proof_answer(s, proof_auth(c, s, PROOF_METHOD_SIGN, key, NULL));
	if (r == SSH_AUTH_DENIED)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s refused the private key %s for user %s",
				  c->ep, found.fingerprint, c->t->user);
	if (r != SSH_AUTH_SUCCESS)
		return proof_unanswered(c, s, "the key authentication");
	proof_fail(c, PROOF_OK, "sshd at %s accepted the private key %s for user %s", c->ep,
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
	int r = proof_auth(c, s, PROOF_METHOD_KBDINT, NULL, NULL);
	for (int round = 0; r == SSH_AUTH_INFO && round < PROOF_KBDINT_ROUNDS; round++) {
		int n = ssh_userauth_kbdint_getnprompts(s);
		for (int i = 0; i < n; i++) {
			char echo = 0;
			if (!ssh_userauth_kbdint_getprompt(s, (unsigned int)i, &echo))
				return SSH_AUTH_ERROR;
			if (ssh_userauth_kbdint_setanswer(s, (unsigned int)i, echo ? "" : password) < 0)
				return SSH_AUTH_ERROR;
		}
		r = proof_auth(c, s, PROOF_METHOD_KBDINT, NULL, NULL);
	}
	return r == SSH_AUTH_INFO ? SSH_AUTH_DENIED : r;
}

static enum proof_status proof_password(struct proof_ctx *c, const struct secret *cred)
{
	_cleanup_session_ ssh_session s = NULL;
	enum proof_status st = proof_open(c, &s);
	if (st != PROOF_OK)
		return st;
	int methods = 0;
	st = proof_methods(c, s, &methods);
	if (st != PROOF_OK)
		return st;

	int r;
	if (c->timeout_ms < PROOF_PASSWORD_ANSWER_MS)
		c->timeout_ms = PROOF_PASSWORD_ANSWER_MS;
	if (methods & SSH_AUTH_METHOD_PASSWORD)
		r = proof_auth(c, s, PROOF_METHOD_PASSWORD, NULL, cred->data);
	else if (methods & SSH_AUTH_METHOD_INTERACTIVE)
		r = proof_kbdint(c, s, cred->data);
	else
		return proof_fail(c, PROOF_REFUSED, "sshd at %s offers no password login for user %s",
				  c->ep, c->t->user);
	r = proof_answer(s, r);
	if (r == SSH_AUTH_DENIED)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s refused the password for user %s", c->ep,
				  c->t->user);
	if (r != SSH_AUTH_SUCCESS)
		return proof_unanswered(c, s, "the password authentication");
	return proof_fail(c, PROOF_OK, "sshd at %s accepted the password for user %s", c->ep,
			  c->t->user);
}

enum proof_status proof_credential(const struct proof_target *target, enum auth_type type,
				   const struct secret *credential, struct pubkey *pub, char *msg,
				   size_t msglen)
{
	if (pub)
		*pub = (struct pubkey){ 0 };
	_cleanup_(proof_ctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proof_ctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	if (!credential || !credential->data || credential->len == 0 ||
	    strlen(credential->data) != credential->len)
		return proof_fail(&c, PROOF_BAD_CREDENTIAL, "the credential is empty or holds a NUL byte");
	switch (type) {
	case AUTH_KEYPAIR:
		return proof_keypair(&c, credential, pub);
	case AUTH_PASSWORD:
		return proof_password(&c, credential);
	case AUTH_NONE:
		break;
	}
	return proof_fail(&c, PROOF_ERROR, "no credential type to prove");
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
		return proof_fail(c, PROOF_ERROR, "out of memory preparing the probe");
	q->n = n;
	for (size_t i = 0; i < n; i++) {
		bool accept = i < e->n_accept;
		const struct pubkey *pub = accept ? &e->accept[i] : &e->refuse[i - e->n_accept];
		enum ssh_keytypes_e type = pub->type ? ssh_key_type_from_name(pub->type) : SSH_KEYTYPE_UNKNOWN;
		if (type == SSH_KEYTYPE_UNKNOWN || !pub->base64 || !proof_type_askable(pub->type) ||
		    ssh_pki_import_pubkey_base64(pub->base64, type, &q->v[i].key) != SSH_OK)
			return proof_fail(c, PROOF_ERROR, "cannot ask sshd about the %s key %s",
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
	enum proof_status st = proof_methods(c, s, &methods);
	if (st != PROOF_OK)
		return st;
	bool password = methods & SSH_AUTH_METHOD_PASSWORD;
	bool kbdint = methods & SSH_AUTH_METHOD_INTERACTIVE;
	if (want && !password)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s does not offer password login for user %s",
				  c->ep, c->t->user);
	if (!want && (password || kbdint))
		return proof_fail(c, PROOF_REFUSED, "sshd at %s still offers %s login for user %s", c->ep,
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
	int r = proof_auth(c, *s, PROOF_METHOD_OFFER, q->key, NULL);
	if (proof_hung_up(*s, r)) {
		*budget = *denials ? *denials : 1;
		proof_session_freep(s);
		r = SSH_AUTH_DENIED;
	}
	if (r == SSH_AUTH_DENIED)
		(*denials)++;
	else if (r != SSH_AUTH_SUCCESS)
		return proof_unanswered(c, *s, "the key query");
	if (q->accept && r != SSH_AUTH_SUCCESS)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s does not accept new key %s for user %s",
				  c->ep, q->fingerprint, c->t->user);
	if (!q->accept && r == SSH_AUTH_SUCCESS)
		return proof_fail(c, PROOF_REFUSED, "sshd at %s still accepts removed key %s for user %s",
				  c->ep, q->fingerprint, c->t->user);
	return PROOF_OK;
}

static enum proof_status proof_probe_pass(struct proof_ctx *c, const struct proof_expect *e,
					  const struct proof_queries *q)
{
	_cleanup_session_ ssh_session s = NULL;
	enum proof_status st = proof_open(c, &s);
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
			proof_session_freep(&s);
			denials = 0;
			st = proof_open(c, &s);
			if (st != PROOF_OK)
				return st;
		}
		st = proof_check_key(c, &s, &q->v[i], &denials, &budget);
		if (st != PROOF_OK)
			return st;
	}
	return proof_fail(c, PROOF_OK, "sshd at %s answers as expected for user %s", c->ep,
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
	_cleanup_(proof_ctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proof_ctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	if (!expect)
		return proof_fail(&c, PROOF_ERROR, "nothing to probe");
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
	_cleanup_(proof_ctx_done) struct proof_ctx c = { 0 };
	enum proof_status st = proof_ctx_init(&c, target, msg, msglen);
	if (st != PROOF_OK)
		return st;
	_cleanup_session_ ssh_session s = NULL;
	return proof_open(&c, &s);
}
