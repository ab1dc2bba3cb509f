/* proof-check: drives proof.c against a real sshd and prints one PASS or
 * FAIL line per check; exits 1 when any check failed, 2 on bad usage.
 *
 *   proof-check --port 2222 --user kpstest --hostkey /etc/ssh/ssh_host_ed25519_key \
 *       --key good1 [--key good2] --wrong-key other [--encrypted-key enc] \
 *       [--password-state offered|withheld] [--impostor-port N] [--closed-port N] \
 *       [--address 127.0.0.1] [--timeout-ms 5000] [--bench 20]
 *
 * --key files (PRIV with PRIV.pub beside it) must be authorized for the user,
 * --wrong-key ones not; --encrypted-key ones carry a passphrase (a high
 * ssh-keygen -a makes a KDF that ran show in the time). The password comes
 * from $PROOF_PASSWORD (not argv: ps shows argv). The impostor port runs an
 * sshd with other host keys; nothing may listen on the closed port (without
 * one, a port bound here and never listened on stands in). A port that
 * completes the TCP handshake and never speaks is always made here.
 * --bench N times N credential proofs and N probes (1 accepted key, 1
 * refused, the password state) and prints their medians.
 *
 * Build: cc -std=gnu11 -D_GNU_SOURCE -Iagent tests/integration/proof-check.c
 *        agent/proof.c agent/proofctx.c agent/proofkey.c agent/util.c -lssh */
#include <getopt.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "proof.h"

#define MAX_FILES 16
#define FAST_MS 100

struct options {
	const char *address;
	int port;
	const char *user;
	struct strv hostkeys;
	const char *keys[MAX_FILES];
	size_t n_keys;
	const char *wrong[MAX_FILES];
	size_t n_wrong;
	const char *encrypted[MAX_FILES];
	size_t n_encrypted;
	const char *password;
	int password_state;
	int impostor_port;
	int closed_port;
	int timeout_ms;
	int bench;
};

static int failures;

static void check(bool ok, const char *what, const char *detail)
{
	printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail && *detail ? ": " : "",
	       detail ? detail : "");
	fflush(stdout);
	if (!ok)
		failures++;
}

static const char *status_name(enum proof_status st)
{
	static const char *const names[] = { "OK", "REFUSED", "UNREACHABLE", "HOSTKEY", "BAD_CREDENTIAL",
					     "ERROR" };
	return (size_t)st < ELEMENTSOF(names) ? names[st] : "?";
}

static void check_status(enum proof_status got, enum proof_status want, const char *what,
			 const char *msg)
{
	char detail[512];
	snprintf(detail, sizeof(detail), "%s (want %s) - %s", status_name(got), status_name(want), msg);
	check(got == want, what, detail);
}

static int read_file(const char *path, struct secret *out)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char buf[32768];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	int r = secret_set(out, buf, n);
	explicit_bzero(buf, sizeof(buf));
	return r;
}

static void pubkey_clear(struct pubkey *k)
{
	free(k->type);
	free(k->base64);
	free(k->comment);
	free(k->fingerprint);
	*k = (struct pubkey){ 0 };
}

/* ssh-keygen's own word on the fingerprint, to check ours against. */
static char *keygen_fingerprint(const char *pubpath)
{
	int fds[2];
	if (pipe(fds) < 0)
		return NULL;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		execlp("ssh-keygen", "ssh-keygen", "-l", "-E", "sha256", "-f", pubpath, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char out[1024] = { 0 };
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	waitpid(pid, NULL, 0);
	char *save = NULL;
	strtok_r(out, " ", &save);
	char *fp = strtok_r(NULL, " ", &save);
	return fp ? strdup(fp) : NULL;
}

/* PRIV.pub as a struct pubkey: "type base64 [comment]". */
static int load_pub(const char *priv, struct pubkey *k)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s.pub", priv);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[16384];
	if (!fgets(line, sizeof(line), f))
		return -EINVAL;
	line[strcspn(line, "\r\n")] = '\0';
	char *save = NULL;
	char *type = strtok_r(line, " ", &save);
	char *b64 = strtok_r(NULL, " ", &save);
	if (!type || !b64)
		return -EINVAL;
	*k = (struct pubkey){ .type = strdup(type), .base64 = strdup(b64),
			      .fingerprint = keygen_fingerprint(path) };
	return k->type && k->base64 && k->fingerprint ? 0 : -ENOMEM;
}

static struct proof_target target_at(const struct options *o, int port)
{
	return (struct proof_target){ .address = o->address, .port = port, .user = o->user,
				      .hostkeys = &o->hostkeys, .timeout_ms = o->timeout_ms };
}

static enum proof_status credential_file(const struct proof_target *t, const char *path,
					 struct pubkey *pub, char *msg, size_t msglen)
{
	_cleanup_secret_ struct secret key = { 0 };
	if (read_file(path, &key) < 0) {
		snprintf(msg, msglen, "cannot read %s", path);
		return PROOF_ERROR;
	}
	return proof_credential(t, AUTH_KEYPAIR, &key, pub, msg, msglen);
}

static enum proof_status credential_text(const struct proof_target *t, enum auth_type type,
					 const char *text, char *msg, size_t msglen)
{
	_cleanup_secret_ struct secret s = { 0 };
	if (secret_set(&s, text, strlen(text)) < 0)
		return PROOF_ERROR;
	return proof_credential(t, type, &s, NULL, msg, msglen);
}

static void check_port(const struct options *o)
{
	check(proof_port_open(o->address, o->port, 1000), "port_open on the sshd port", NULL);
	check(proof_port_open("localhost", o->port, 1000) || !streq(o->address, "127.0.0.1"),
	      "port_open on localhost", NULL);
	check(!proof_port_open("not-an-address", o->port, 1000), "port_open refuses a host name", NULL);
	if (!o->closed_port)
		return;
	int64_t t0 = now_ms();
	bool open = proof_port_open(o->address, o->closed_port, 1000);
	char detail[64];
	snprintf(detail, sizeof(detail), "%lld ms", (long long)(now_ms() - t0));
	check(!open && now_ms() - t0 < FAST_MS, "port_open on a closed port is false, fast", detail);
}

static void check_good_key(const struct options *o, const char *path)
{
	struct proof_target t = target_at(o, o->port);
	char msg[256], what[512];
	_cleanup_(pubkey_clear) struct pubkey got = { 0 }, want = { 0 };
	snprintf(what, sizeof(what), "credential: authorized key %s", path);
	check_status(credential_file(&t, path, &got, msg, sizeof(msg)), PROOF_OK, what, msg);
	if (load_pub(path, &want) < 0) {
		check(false, what, "cannot read the .pub file");
		return;
	}
	snprintf(what, sizeof(what), "credential: public half of %s matches its .pub", path);
	check(got.type && got.base64 && streq(got.type, want.type) && streq(got.base64, want.base64) &&
		      got.comment == NULL,
	      what, got.type);
	snprintf(what, sizeof(what), "credential: fingerprint of %s matches ssh-keygen", path);
	check(got.fingerprint && streq(got.fingerprint, want.fingerprint), what, got.fingerprint);
}

static void check_credentials(const struct options *o)
{
	struct proof_target t = target_at(o, o->port);
	char msg[256], what[512];
	for (size_t i = 0; i < o->n_keys; i++)
		check_good_key(o, o->keys[i]);
	for (size_t i = 0; i < o->n_wrong; i++) {
		struct pubkey pub = { 0 };
		snprintf(what, sizeof(what), "credential: unauthorized key %s", o->wrong[i]);
		check_status(credential_file(&t, o->wrong[i], &pub, msg, sizeof(msg)), PROOF_REFUSED,
			     what, msg);
		check(!pub.type && !pub.base64, "credential: no public half returned on refusal", NULL);
	}
	for (size_t i = 0; i < o->n_encrypted; i++) {
		int64_t t0 = now_ms();
		enum proof_status st = credential_file(&t, o->encrypted[i], NULL, msg, sizeof(msg));
		int64_t ms = now_ms() - t0;
		snprintf(what, sizeof(what), "credential: encrypted key %s refused", o->encrypted[i]);
		check_status(st, PROOF_BAD_CREDENTIAL, what, msg);
		snprintf(what, sizeof(what), "credential: encrypted key refused in %lld ms (no KDF)",
			 (long long)ms);
		check(ms < FAST_MS, what, NULL);
	}
	check_status(credential_text(&t, AUTH_KEYPAIR, "not a key", msg, sizeof(msg)),
		     PROOF_BAD_CREDENTIAL, "credential: garbage key text", msg);
	check_status(credential_text(&t, AUTH_KEYPAIR,
				     "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
				     "-----END OPENSSH PRIVATE KEY-----\n",
				     msg, sizeof(msg)),
		     PROOF_BAD_CREDENTIAL, "credential: truncated OpenSSH key", msg);
	check_status(credential_text(&t, AUTH_PASSWORD, "", msg, sizeof(msg)), PROOF_BAD_CREDENTIAL,
		     "credential: empty password", msg);
	if (!o->password)
		return;
	/* An sshd that withholds password login refuses even the right one. */
	enum proof_status want = o->password_state == 0 ? PROOF_REFUSED : PROOF_OK;
	check_status(credential_text(&t, AUTH_PASSWORD, o->password, msg, sizeof(msg)), want,
		     "credential: right password", msg);
	check(!strstr(msg, o->password), "credential: message holds no password", msg);
	check_status(credential_text(&t, AUTH_PASSWORD, "Wrong-Password-0", msg, sizeof(msg)),
		     PROOF_REFUSED, "credential: wrong password", msg);
}

/* The probe that should pass: every --key accepted, every --wrong-key
 * refused (three times over, to need more than one session), password as
 * ordered. */
static void check_probe(const struct options *o, struct pubkey *good, struct pubkey *bad)
{
	struct proof_target t = target_at(o, o->port);
	char msg[256];
	struct pubkey refuse[3 * MAX_FILES];
	size_t n_refuse = 0;
	for (int rep = 0; rep < 3; rep++)
		for (size_t i = 0; i < o->n_wrong; i++)
			refuse[n_refuse++] = bad[i];
	struct proof_expect e = { .accept = good, .n_accept = o->n_keys, .refuse = refuse,
				  .n_refuse = n_refuse, .password = o->password_state };
	int64_t t0 = now_ms();
	enum proof_status st = proof_probe(&t, &e, now_ms() + 2000, msg, sizeof(msg));
	char what[128];
	snprintf(what, sizeof(what), "probe: %zu accepted, %zu refused, password %d (%lld ms)",
		 o->n_keys, n_refuse, o->password_state, (long long)(now_ms() - t0));
	check_status(st, PROOF_OK, what, msg);
}

static void check_probe_fails(const struct options *o, const struct proof_expect *e,
			      const char *what, const char *needle)
{
	struct proof_target t = target_at(o, o->port);
	char msg[256], name[256];
	int64_t t0 = now_ms();
	enum proof_status st = proof_probe(&t, e, now_ms() + 300, msg, sizeof(msg));
	int64_t ms = now_ms() - t0;
	snprintf(name, sizeof(name), "probe: %s (retried %lld ms)", what, (long long)ms);
	check_status(st, PROOF_REFUSED, name, msg);
	check(strstr(msg, needle) != NULL, "probe: message names the failed check", msg);
	check(ms >= 300 && ms < 300 + 2 * o->timeout_ms, "probe: retried until the deadline", NULL);
}

static void check_probe_negatives(const struct options *o, struct pubkey *good, struct pubkey *bad)
{
	if (o->n_wrong) {
		struct proof_expect e = { .accept = bad, .n_accept = 1, .password = -1 };
		check_probe_fails(o, &e, "unauthorized key must be accepted", "does not accept new key");
	}
	if (o->n_keys) {
		struct proof_expect e = { .refuse = good, .n_refuse = 1, .password = -1 };
		check_probe_fails(o, &e, "authorized key must be refused", "still accepts removed key");
	}
	if (o->password_state != -1) {
		struct proof_expect e = { .password = !o->password_state };
		check_probe_fails(o, &e, "password state inverted", "password");
	}
}

static void check_impostor(const struct options *o, struct pubkey *good)
{
	struct proof_target t = target_at(o, o->impostor_port);
	char msg[256];
	if (o->n_keys)
		check_status(credential_file(&t, o->keys[0], NULL, msg, sizeof(msg)), PROOF_HOSTKEY,
			     "impostor: private key never offered", msg);
	if (o->password)
		check_status(credential_text(&t, AUTH_PASSWORD, o->password, msg, sizeof(msg)),
			     PROOF_HOSTKEY, "impostor: password never sent", msg);
	check(!o->password || !strstr(msg, o->password), "impostor: message holds no password", NULL);
	struct proof_expect e = { .accept = good, .n_accept = o->n_keys, .password = -1 };
	int64_t t0 = now_ms();
	enum proof_status st = proof_probe(&t, &e, now_ms() + 2000, msg, sizeof(msg));
	check_status(st, PROOF_HOSTKEY, "impostor: probe", msg);
	check(now_ms() - t0 < 1000, "impostor: probe not retried", NULL);
}

static void check_closed(const struct options *o, struct pubkey *good)
{
	struct proof_target t = target_at(o, o->closed_port);
	char msg[256], what[128];
	if (o->n_keys) {
		int64_t t0 = now_ms();
		enum proof_status st = credential_file(&t, o->keys[0], NULL, msg, sizeof(msg));
		snprintf(what, sizeof(what), "closed port: credential (%lld ms)",
			 (long long)(now_ms() - t0));
		check_status(st, PROOF_UNREACHABLE, what, msg);
	}
	struct proof_expect e = { .accept = good, .n_accept = o->n_keys, .password = -1 };
	int64_t t0 = now_ms();
	enum proof_status st = proof_probe(&t, &e, now_ms() + 300, msg, sizeof(msg));
	snprintf(what, sizeof(what), "closed port: probe retried to its deadline (%lld ms)",
		 (long long)(now_ms() - t0));
	check_status(st, PROOF_UNREACHABLE, what, msg);
}

static void check_no_hostkey(const struct options *o)
{
	_cleanup_strv_ struct strv none = { 0 };
	strv_push(&none, "/nonexistent/ssh_host_ed25519_key");
	struct proof_target t = target_at(o, o->port);
	t.hostkeys = &none;
	char msg[256];
	check_status(credential_text(&t, AUTH_PASSWORD, "x", msg, sizeof(msg)), PROOF_ERROR,
		     "no readable host key", msg);
}

/* A socket bound on the address; with listen, the kernel completes every
 * TCP handshake from the backlog while nobody ever accepts or speaks. */
static int bound_socket(const char *address, bool listening, int *port)
{
	const struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	if (getaddrinfo(address, "0", &hints, &ai) != 0)
		return -EINVAL;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	bool ok = fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		  (!listening || listen(fd, 16) == 0) &&
		  getsockname(fd, (struct sockaddr *)&ss, &len) == 0;
	freeaddrinfo(ai);
	if (!ok) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	char host[64], service[16];
	getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), service, sizeof(service),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	*port = atoi(service);
	return fd;
}

static void check_silent(const struct options *o, struct pubkey *good)
{
	int port = 0;
	_cleanup_close_ int fd = bound_socket(o->address, true, &port);
	if (fd < 0) {
		check(false, "silent port: set up", strerror(-fd));
		return;
	}
	struct proof_target t = target_at(o, port);
	t.timeout_ms = 500;
	char msg[256], what[128];
	int64_t t0 = now_ms();
	enum proof_status st = credential_text(&t, AUTH_PASSWORD, "x", msg, sizeof(msg));
	int64_t ms = now_ms() - t0;
	snprintf(what, sizeof(what), "silent port: credential gives up after its timeout (%lld ms)",
		 (long long)ms);
	check_status(st, PROOF_UNREACHABLE, what, msg);
	check(ms >= 450 && ms < 1000, what, NULL);

	struct proof_expect e = { .accept = good, .n_accept = o->n_keys, .password = 1 };
	t0 = now_ms();
	st = proof_probe(&t, &e, now_ms() + 800, msg, sizeof(msg));
	ms = now_ms() - t0;
	snprintf(what, sizeof(what), "silent port: probe gives up near its deadline (%lld ms)",
		 (long long)ms);
	check_status(st, PROOF_UNREACHABLE, what, msg);
	check(ms >= 800 && ms < 800 + 2 * t.timeout_ms, what, NULL);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void bench(const struct options *o, struct pubkey *good, struct pubkey *bad)
{
	if (!o->bench || !o->n_keys || !o->n_wrong)
		return;
	struct proof_target t = target_at(o, o->port);
	_cleanup_secret_ struct secret key = { 0 };
	if (read_file(o->keys[0], &key) < 0)
		return;
	_cleanup_free_ int64_t *cred = calloc((size_t)o->bench, sizeof(int64_t));
	_cleanup_free_ int64_t *probe = calloc((size_t)o->bench, sizeof(int64_t));
	if (!cred || !probe)
		return;
	struct proof_expect e = { .accept = good, .n_accept = 1, .refuse = bad, .n_refuse = 1,
				  .password = o->password_state };
	char msg[256];
	bool ok = true;
	for (int i = 0; i < o->bench; i++) {
		int64_t t0 = now_ms();
		ok &= proof_credential(&t, AUTH_KEYPAIR, &key, NULL, msg, sizeof(msg)) == PROOF_OK;
		cred[i] = now_ms() - t0;
		t0 = now_ms();
		ok &= proof_probe(&t, &e, now_ms() + 2000, msg, sizeof(msg)) == PROOF_OK;
		probe[i] = now_ms() - t0;
	}
	qsort(cred, (size_t)o->bench, sizeof(int64_t), cmp_i64);
	qsort(probe, (size_t)o->bench, sizeof(int64_t), cmp_i64);
	char detail[256];
	snprintf(detail, sizeof(detail),
		 "%d runs: credential median %lld ms (min %lld, max %lld); probe median %lld ms (min %lld, max %lld)",
		 o->bench, (long long)cred[o->bench / 2], (long long)cred[0],
		 (long long)cred[o->bench - 1], (long long)probe[o->bench / 2], (long long)probe[0],
		 (long long)probe[o->bench - 1]);
	check(ok, "bench", detail);
}

static int password_state(const char *s)
{
	if (streq(s, "offered"))
		return 1;
	return streq(s, "withheld") ? 0 : -1;
}

static void options_free(struct options *o)
{
	strv_free(&o->hostkeys);
}

static int add_file(const char **v, size_t *n, const char *path)
{
	if (*n >= MAX_FILES)
		return -E2BIG;
	v[(*n)++] = path;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "address", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },
		{ "hostkey", required_argument, NULL, 'H' },
		{ "key", required_argument, NULL, 'k' },
		{ "wrong-key", required_argument, NULL, 'w' },
		{ "encrypted-key", required_argument, NULL, 'e' },
		{ "password-state", required_argument, NULL, 's' },
		{ "impostor-port", required_argument, NULL, 'i' },
		{ "closed-port", required_argument, NULL, 'c' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "bench", required_argument, NULL, 'b' },
		{ 0 },
	};
	*o = (struct options){ .address = "127.0.0.1", .password_state = -1, .timeout_ms = 5000,
			       .password = getenv("PROOF_PASSWORD") };
	int c, r = 0;
	while (r == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o->address = optarg; break;
		case 'p': o->port = atoi(optarg); break;
		case 'u': o->user = optarg; break;
		case 'H': r = strv_push(&o->hostkeys, optarg); break;
		case 'k': r = add_file(o->keys, &o->n_keys, optarg); break;
		case 'w': r = add_file(o->wrong, &o->n_wrong, optarg); break;
		case 'e': r = add_file(o->encrypted, &o->n_encrypted, optarg); break;
		case 's': o->password_state = password_state(optarg); break;
		case 'i': o->impostor_port = atoi(optarg); break;
		case 'c': o->closed_port = atoi(optarg); break;
		case 't': o->timeout_ms = atoi(optarg); break;
		case 'b': o->bench = atoi(optarg); break;
		default: r = -EINVAL;
		}
	}
	if (r == 0 && (!o->port || !o->user || !o->hostkeys.n))
		r = -EINVAL;
	return r;
}

int main(int argc, char **argv)
{
	_cleanup_(options_free) struct options o = { 0 };
	if (parse_options(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: proof-check --port N --user U --hostkey PATH... [--key PRIV...] "
				"[--wrong-key PRIV...] [--encrypted-key PRIV...] "
				"[--password-state offered|withheld] [--impostor-port N] "
				"[--closed-port N] [--address A] [--timeout-ms N] [--bench N]\n");
		return 2;
	}
	struct pubkey good[MAX_FILES] = { 0 }, bad[MAX_FILES] = { 0 };
	for (size_t i = 0; i < o.n_keys; i++)
		if (load_pub(o.keys[i], &good[i]) < 0)
			return 2;
	for (size_t i = 0; i < o.n_wrong; i++)
		if (load_pub(o.wrong[i], &bad[i]) < 0)
			return 2;

	_cleanup_close_ int closed_fd = -1;
	if (!o.closed_port)
		closed_fd = bound_socket(o.address, false, &o.closed_port);

	check_port(&o);
	check_no_hostkey(&o);
	check_credentials(&o);
	check_probe(&o, good, bad);
	check_probe_negatives(&o, good, bad);
	if (o.impostor_port)
		check_impostor(&o, good);
	if (o.closed_port)
		check_closed(&o, good);
	check_silent(&o, good);
	bench(&o, good, bad);

	for (size_t i = 0; i < MAX_FILES; i++) {
		pubkey_clear(&good[i]);
		pubkey_clear(&bad[i]);
	}
	printf("%s: %d check(s) failed\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
